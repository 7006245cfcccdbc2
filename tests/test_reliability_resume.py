"""Kill at any point: a run SIGKILLed at a step, inside a checkpoint save, or half-way through a
weights file, then restarted with ``trainer.checkpoint.resume=auto``, logs the same per-step losses as an
uninterrupted run; half-written checkpoints are never picked; a damaged one is named and passed over.
A run sent SIGTERM in the middle of a step finishes that step, saves and exits with EXIT_STOPPED.

The killed runs are subprocesses (``tests/helpers/kill_run.py``); the reference runs in this process.
The long variant (``-m soak``) kills at several random points of one run.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pam.train.state import latest_checkpoint, list_step_checkpoints
from pam.train.trainer import Trainer
from pam.utils.stop import EXIT_STOPPED

from .test_train import ONE_STAGE, TINY, data_root, losses_by_step, one_torch_thread, tiny_cfg  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4


@pytest.fixture(scope="module")
def sam2_pt(tmp_path_factory) -> Path:
    """The debug SAM 2 as an official .pt, so checkpoints refer to it instead of carrying it (small saves)."""
    from pam.api import build_sam2
    from pam.checkpoints.sam2 import save_sam2_checkpoint

    from .helpers import debug_config

    path = tmp_path_factory.mktemp("sam2") / "sam2_debug.pt"
    save_sam2_checkpoint(build_sam2(debug_config().sam2).model, path)
    return path


@pytest.fixture(scope="module")
def extra(sam2_pt) -> tuple[str, ...]:
    return (
        ONE_STAGE,
        f"stage.max_steps={STEPS}",
        "trainer.checkpoint.every=1",
        "trainer.checkpoint.keep_last=2",
        "trainer.checkpoint.resume=auto",
        "data.val=null",
        f"model.sam2.checkpoint={sam2_pt}",
    )


def run_killed(out: Path, data: Path, extra: tuple, kill: str | None) -> subprocess.CompletedProcess:
    overrides = [*TINY, f"trainer.output_dir={out}", f"data.root={data}", "trainer.feature_cache=null", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("PAM_TEST_KILL", None)
    if kill:
        env["PAM_TEST_KILL"] = kill
    return subprocess.run(
        [sys.executable, "-m", "tests.helpers.kill_run", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, f"expected SIGKILL, got {proc.returncode}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory, data_root, extra):  # noqa: F811
    out = tmp_path_factory.mktemp("uninterrupted")
    Trainer(tiny_cfg(out, data_root, *extra)).train()
    losses = losses_by_step(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


def assert_same_losses(run_dir: Path, reference: dict[int, float]) -> None:
    losses = losses_by_step(run_dir)  # each step logged once
    assert sorted(losses) == sorted(reference)
    for step, loss in reference.items():
        assert losses[step] == pytest.approx(loss, abs=1e-6, rel=0), f"step {step}"


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def resume_in_process(out: Path, data: Path, extra: tuple, caplog) -> Trainer:
    with caplog.at_level(logging.INFO, logger="pam.train"):
        trainer = Trainer(tiny_cfg(out, data, *extra))
        trainer.train()
    assert trainer.global_step == STEPS
    return trainer


def test_killed_after_a_step_then_inside_a_save_with_a_damaged_checkpoint(
    tmp_path,
    data_root,  # noqa: F811 (the fixture imported above)
    extra,
    reference_losses,
    caplog,
):
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    # 1. SIGKILL after step 3 is done: checkpoints 2 and 3 (keep_last=2), steps 1-3 logged
    assert_killed(run_killed(out, data_root, extra, "step:3"))
    assert [p.name for p in list_step_checkpoints(ckpts)] == ["step-000002", "step-000003"]
    assert sorted(losses_by_step(out)) == [1, 2, 3]

    # 2. step-000003's weights are damaged on disk; the restart names it, resumes from step 2, and
    #    is killed inside the atomic save of step 3 (files written, no manifest, no rename)
    damage(ckpts / "step-000003" / "model" / "model.safetensors")
    proc = run_killed(out, data_root, extra, "save:3")
    assert_killed(proc)
    assert "skipping damaged checkpoint" in proc.stderr and "step-000003" in proc.stderr, proc.stderr[-3000:]
    assert "step-000003/model: file model.safetensors does not match its sha256 checksum" in proc.stderr
    assert "step-000002 at step 2" in proc.stderr
    assert any(p.name.startswith(".step-000003.tmp-") for p in ckpts.iterdir()), (
        "the half-written folder keeps its temporary name"
    )

    # 3. neither the damaged step-000003 nor the half-written one is picked: step 2 again, to the end
    assert latest_checkpoint(out).name == "step-000002"
    resume_in_process(out, data_root, extra, caplog)
    logged = caplog.text
    assert "skipping damaged checkpoint" in logged and "resumed from" in logged and "step-000002 at step 2" in logged
    assert_same_losses(out, reference_losses)
    assert latest_checkpoint(out).name == "step-000004"


def test_sigterm_mid_stage_stops_after_that_step_and_the_resume_loses_no_step(
    tmp_path,
    data_root,  # noqa: F811 (the fixture imported above)
    extra,
    reference_losses,
    caplog,
):
    """SIGTERM arrives during step 2 of 4 (no periodic checkpoints), and again inside the save it causes:
    step 2 is finished, saved once, the process exits with EXIT_STOPPED; the resume runs steps 3-4 and
    every step's loss equals the uninterrupted run's."""
    out = tmp_path / "run"
    extra = (*extra, "trainer.checkpoint.every=0")
    proc = run_killed(out, data_root, extra, "term2:2")
    assert proc.returncode == EXIT_STOPPED, proc.stderr[-3000:]
    assert "SIGTERM: training stops after the current step" in proc.stderr
    assert "SIGTERM again" in proc.stderr and "RUN STOPPED 2" in proc.stdout
    assert [p.name for p in list_step_checkpoints(out / "checkpoints")] == ["step-000002"]
    assert latest_checkpoint(out).name == "step-000002"  # the save under the second signal completed and verifies
    assert sorted(losses_by_step(out)) == [1, 2]
    resume_in_process(out, data_root, extra, caplog)
    assert "step-000002 at step 2" in caplog.text
    assert_same_losses(out, reference_losses)


@pytest.mark.soak
def test_many_random_kill_points(tmp_path, data_root, extra, caplog):  # noqa: F811
    """An 8-step run killed at 4 seeded random points (after a step, inside a save, half-way through a
    weights file), each later than the one before, then finished: the losses equal an uninterrupted run's."""
    steps = 8
    extra = (*extra, f"stage.max_steps={steps}")
    Trainer(tiny_cfg(tmp_path / "reference", data_root, *extra)).train()
    reference = losses_by_step(tmp_path / "reference")
    rng = random.Random(13)
    points = [(rng.choice(["step", "save", "weights"]), at) for at in sorted(rng.sample(range(1, steps), 4))]
    out = tmp_path / "run"
    for kind, at in points:
        assert_killed(run_killed(out, data_root, extra, f"{kind}:{at}"))
        names = [p.name for p in list_step_checkpoints(out / "checkpoints")]
        if kind == "step":
            assert names[-1] == f"step-{at:06d}"
        else:  # killed inside step at's save: the newest checkpoint is the one before
            assert f"step-{at:06d}" not in names and latest_checkpoint(out).name == f"step-{at - 1:06d}"
    with caplog.at_level(logging.INFO, logger="pam.train"):
        trainer = Trainer(tiny_cfg(out, data_root, *extra))
        trainer.train()
    assert trainer.global_step == steps
    assert_same_losses(out, reference)
    print(f"kill points: {[f'{k}:{a}' for k, a in points]}")
