"""Checkpoint integrity and the output folder: checksums, half-written folders, disk full, read-only.

Unit-level on CheckpointManager with small stand-in model files (fast); the Trainer-level checks
build no model: the output folder is checked before it."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest
import torch

import pam.train.state as state_module
from pam.checkpoints.integrity import CheckpointCorruptError, verify_manifest, write_manifest
from pam.train.config import CheckpointConfig
from pam.train.preflight import OutputDirError, check_output_dir
from pam.train.state import CheckpointManager, CheckpointSaveError, latest_checkpoint, list_step_checkpoints


def write_model(folder: Path, value: float = 1.0) -> None:
    """A stand-in for the PAM model folder, with its own nested manifest as save_pam writes it."""
    folder.mkdir(parents=True)
    torch.save({"w": torch.full((64,), value)}, folder / "weights.pt")
    (folder / "meta.json").write_text("{}")
    write_manifest(folder)


class Counter:
    """A stand-in stateful part: what the manager saves of it is its state_dict."""

    def __init__(self, step: int):
        self.step = step

    def state_dict(self) -> dict:
        return {"global_step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["global_step"]


def save(manager: CheckpointManager, step: int) -> Path:
    manager.states, manager.write_model = {"train": Counter(step)}, lambda f: write_model(f, float(step))
    return manager.save(step, {"train/loss": 1.0 / step})


@pytest.fixture
def run(tmp_path):
    manager = CheckpointManager(CheckpointConfig(keep_last=5), tmp_path)
    for step in (1, 2, 3):
        save(manager, step)
    return tmp_path


def test_manifest_lists_every_file_and_nested_manifests(run):
    manifest = json.loads((run / "checkpoints" / "step-000003" / "manifest.json").read_text())
    # the nested model folder is covered through its own manifest (its big files hashed once)
    assert sorted(manifest["files"]) == ["info.json", "model/manifest.json", "trainer_state.pt"]
    nested = json.loads((run / "checkpoints" / "step-000003" / "model" / "manifest.json").read_text())
    assert sorted(nested["files"]) == ["meta.json", "weights.pt"]
    import hashlib

    expected = hashlib.sha256((run / "checkpoints" / "step-000003" / "info.json").read_bytes()).hexdigest()
    assert manifest["files"]["info.json"]["sha256"] == expected
    verify_manifest(run / "checkpoints" / "step-000003")


@pytest.mark.parametrize(
    "damage,message",
    [
        ("flip_nested", r"step-000003/model: file weights.pt does not match its sha256 checksum"),
        ("truncate", r"step-000003: file trainer_state.pt has \d+ bytes, the manifest says \d+"),
        ("delete", r"step-000003/model: file weights.pt is missing"),
        ("no_manifest", r"step-000003: no manifest.json \(the checkpoint was not written to the end\)"),
        ("bad_manifest", r"step-000003/manifest.json: unreadable manifest"),
    ],
)
def test_damaged_checkpoint_is_named_and_the_previous_good_one_used(run, damage, message, caplog):
    ckpt = run / "checkpoints" / "step-000003"
    if damage == "flip_nested":
        data = bytearray((ckpt / "model" / "weights.pt").read_bytes())
        data[-20] ^= 0x01
        (ckpt / "model" / "weights.pt").write_bytes(bytes(data))
    elif damage == "truncate":
        data = (ckpt / "trainer_state.pt").read_bytes()
        (ckpt / "trainer_state.pt").write_bytes(data[:-7])
    elif damage == "delete":
        (ckpt / "model" / "weights.pt").unlink()
    elif damage == "no_manifest":
        (ckpt / "manifest.json").unlink()
    else:
        (ckpt / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointCorruptError, match=message):
        verify_manifest(ckpt)
    with caplog.at_level(logging.WARNING, logger="pam.train"):
        assert latest_checkpoint(run) == run / "checkpoints" / "step-000002"
    assert "skipping damaged checkpoint" in caplog.text and "step-000003" in caplog.text
    assert latest_checkpoint(run, verify=False).name == "step-000003"


def test_half_written_folders_are_never_picked(run):
    ckpts = run / "checkpoints"
    # a save killed before the rename leaves a temporary folder: not a step checkpoint
    half = ckpts / ".step-000004.tmp-abc123"
    write_model(half / "model")
    assert latest_checkpoint(run).name == "step-000003"
    # a step folder without info.json is not listed; one with info.json but no manifest is refused
    (ckpts / "step-000005").mkdir()
    (ckpts / "step-000006").mkdir()
    (ckpts / "step-000006" / "info.json").write_text("{}")
    assert [p.name for p in list_step_checkpoints(ckpts)][-1] == "step-000006"
    assert latest_checkpoint(run).name == "step-000003"


def test_every_checkpoint_damaged_means_no_resume(run):
    for p in list_step_checkpoints(run / "checkpoints"):
        (p / "manifest.json").unlink()
    assert latest_checkpoint(run) is None


def test_disk_full_at_save_keeps_the_last_good_checkpoint(run, monkeypatch):
    before = {p.name: (p / "manifest.json").read_text() for p in list_step_checkpoints(run / "checkpoints")}
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        if str(f).endswith("trainer_state.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(state_module.torch, "save", full_disk)
    manager = CheckpointManager(CheckpointConfig(keep_last=5), run)
    with pytest.raises(
        CheckpointSaveError,
        match=r"could not write checkpoint .*step-000004: No space left on device; "
        r"nothing was replaced and the last good checkpoint .*step-000003 is kept",
    ) as info:
        save(manager, 4)
    assert info.value.errno == errno.ENOSPC
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-000001", "step-000002", "step-000003"]  # no temporary left
    assert {p.name: (p / "manifest.json").read_text() for p in list_step_checkpoints(ckpts)} == before
    assert latest_checkpoint(run).name == "step-000003"


def test_disk_full_while_writing_the_model_of_a_real_pam_checkpoint(tmp_path, debug_bundle, monkeypatch):
    """The PAM writer itself (save_pam inside the step save) raising ENOSPC half-way."""
    import pam.checkpoints.pam_checkpoint as pc

    manager = CheckpointManager(CheckpointConfig(keep_last=2), tmp_path)
    manager.write_model = lambda f: pc.save_pam(debug_bundle.model, debug_bundle.tokenizer, f)
    manager.save(1, {})
    real = pc.save_tensors

    def full(tensors, path, metadata=None):
        if Path(path).name == "sam2.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, metadata)

    monkeypatch.setattr(pc, "save_tensors", full)
    with pytest.raises(CheckpointSaveError, match=r"step-000002: No space left on device.*step-000001 is kept"):
        manager.save(2, {})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-000001"]
    verify_manifest(tmp_path / "checkpoints" / "step-000001")


# ------------------------------------------------------------------------------ the output folder
def test_output_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputDirError, match=rf"trainer.output_dir {tmp_path}/a_file/run cannot be created"):
        check_output_dir(tmp_path / "a_file" / "run")


def test_read_only_output_folder(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes through permission bits: make the write itself fail as EROFS would
            import pam.train.preflight as preflight

            def refuse(*a, **k):
                raise OSError(errno.EROFS, "Read-only file system")

            monkeypatch.setattr(preflight.tempfile, "mkstemp", refuse)
        with pytest.raises(OutputDirError, match=rf"trainer.output_dir {ro} is not writable"):
            check_output_dir(ro)
    finally:
        ro.chmod(0o755)


def test_too_little_free_space(tmp_path):
    with pytest.raises(OutputDirError, match=r"GB free, less than trainer.checkpoint.min_free_disk_gb=1e\+09") as info:
        check_output_dir(tmp_path, min_free_gb=1e9)
    assert info.value.errno == errno.ENOSPC
    check_output_dir(tmp_path, min_free_gb=0.001)


def test_trainer_checks_the_output_folder_before_building_the_model(tmp_path, monkeypatch):
    """Through the Trainer: the error names the folder and comes before build_pam."""
    import pam.train.trainer as trainer_module

    from .test_train import compose_train

    def no_model(*a, **k):
        raise AssertionError("the model was built before the output folder was checked")

    monkeypatch.setattr(trainer_module, "build_pam", no_model)
    (tmp_path / "a_file").write_text("x")
    cfg = compose_train(
        [
            "experiment=quickstart",
            f"trainer.output_dir={tmp_path / 'a_file' / 'run'}",
            "trainer.logging.wandb.mode=disabled",
        ]
    )
    with pytest.raises(OutputDirError, match=r"a_file/run cannot be created"):
        trainer_module.Trainer(cfg)
    cfg = compose_train(
        [
            "experiment=quickstart",
            f"trainer.output_dir={tmp_path / 'run'}",
            "++trainer.checkpoint.min_free_disk_gb=1e9",
            "trainer.logging.wandb.mode=disabled",
        ]
    )
    with pytest.raises(OutputDirError, match=r"trainer.checkpoint.min_free_disk_gb"):
        trainer_module.Trainer(cfg)
    assert not (tmp_path / "run" / "config.yaml").exists()
