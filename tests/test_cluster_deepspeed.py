"""DeepSpeed parity with DDP: a NaN step is skipped without touching weights, optimiser moments or
schedule and is counted; the ZeRO shards are listed and checksummed in the manifest; a damaged shard
sends the resume to the previous checkpoint, naming the file. One ZeRO-2 process on CPU (gloo)."""

from __future__ import annotations

import hashlib
import json
import logging
import math

import pytest

from pam.train.state import latest_checkpoint, list_step_checkpoints

from .helpers.cluster_launch import assert_same_state, launch, load_state, losses, make_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("ds") / "data")


@pytest.mark.parametrize("zero", ["zero2", pytest.param("zero3", marks=pytest.mark.soak)])
def test_nonfinite_step_is_skipped_and_shards_are_checksummed(tmp_path, data, caplog, zero):
    pytest.importorskip("deepspeed")
    out, run = tmp_path / "out", tmp_path / "run"
    proc = launch(
        out,
        run,
        data,
        zero,
        1,
        "stage.max_steps=3",
        "trainer.checkpoint.every=1",
        "trainer.checkpoint.keep_last=3",
        env={"PAM_TEST_NAN": "2"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "skipped step 2: non-finite loss nan (1 in a row, 1 in all)" in proc.stderr

    # attempt 2 (NaN) left weights, Adam moments, learning rate and schedule as attempt 1 made them
    assert_same_state(load_state(out, "attempt2"), load_state(out, "attempt3"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["train/loss"]) for r in rows)
    assert [r.get("train/nonfinite_skipped", 0) for r in rows] == [0, 1, 1]
    assert len({r["lr"] for r in rows}) == 3  # the schedule moved once per applied step

    # every shard is in the manifest with its sha256; the manifest was written after them
    step3 = run / "checkpoints" / "step-000003"
    manifest = json.loads((step3 / "manifest.json").read_text())["files"]
    shards = sorted(p.relative_to(step3).as_posix() for p in (step3 / "deepspeed").rglob("*") if p.is_file())
    assert any(s.endswith("optim_states.pt") for s in shards) and set(shards) <= set(manifest)
    for rel in shards:
        assert manifest[rel]["sha256"] == hashlib.sha256((step3 / rel).read_bytes()).hexdigest()
    assert (step3 / "manifest.json").stat().st_mtime_ns >= max((step3 / s).stat().st_mtime_ns for s in shards)

    # a damaged optimiser shard: the resume takes step 2 instead and says which file was wrong
    optim = next(s for s in shards if s.endswith("optim_states.pt"))
    blob = bytearray((step3 / optim).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (step3 / optim).write_bytes(bytes(blob))
    with caplog.at_level(logging.WARNING, logger="pam.train"):
        assert latest_checkpoint(run).name == "step-000002"
    assert f"step-000003: file {optim} does not match its sha256 checksum" in caplog.text
    assert [p.name for p in list_step_checkpoints(run / "checkpoints")][-1] == "step-000003"


@pytest.mark.soak
def test_resume_from_the_checkpoint_before_a_damaged_shard(tmp_path, data):
    """The run above, damaged at step 3, restarted: it resumes from step 2 with DeepSpeed's state and
    its step 3 equals the first run's step 3 (same state, same batches)."""
    pytest.importorskip("deepspeed")
    out, run = tmp_path / "out", tmp_path / "run"
    first = launch(
        out, run, data, "zero2", 1, "stage.max_steps=3", "trainer.checkpoint.every=1", "trainer.checkpoint.keep_last=3"
    )
    assert first.returncode == 0, first.stderr[-4000:]
    reference = losses(run)
    step3 = run / "checkpoints" / "step-000003"
    optim = next(p for p in (step3 / "deepspeed").rglob("*optim_states.pt"))
    optim.write_bytes(optim.read_bytes()[:-10])
    again = launch(
        tmp_path / "out2",
        run,
        data,
        "zero2",
        1,
        "stage.max_steps=3",
        "trainer.checkpoint.every=1",
        "trainer.checkpoint.keep_last=3",
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert "skipping damaged checkpoint" in again.stderr and optim.name in again.stderr
    assert "step-000002 at step 2" in again.stderr
    assert losses(run)[3] == pytest.approx(reference[3], rel=1e-6)
