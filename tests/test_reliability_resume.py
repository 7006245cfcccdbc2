"""Kill at any point: a run SIGKILLed at a step, inside a checkpoint save, or half-way through a
weights file, then restarted with ``trainer.resume=auto``, logs the same per-step losses as an
uninterrupted run; half-written checkpoints are never picked; a damaged one is named and passed over.

The killed runs are subprocesses (``tests/helpers/kill_run.py``); the reference runs in this process.
The long variant (``-m slow``) kills at several random points of one run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pam.train.state import latest_checkpoint, list_step_checkpoints
from pam.train.trainer import Trainer

from .test_train import ONE_STAGE, TINY, data_root, losses_by_step, one_torch_thread, tiny_cfg  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6
EXTRA = (ONE_STAGE, f"stage.max_steps={STEPS}", "trainer.save_every=2", "trainer.keep_last=2", "trainer.resume=auto")


def run_killed(out: Path, data: Path, kill: str | None, *extra: str) -> subprocess.CompletedProcess:
    overrides = [*TINY, f"trainer.output_dir={out}", f"data.root={data}", "trainer.feature_cache=null", *EXTRA, *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("PAM_TEST_KILL", None)
    if kill:
        env["PAM_TEST_KILL"] = kill
    return subprocess.run([sys.executable, "-m", "tests.helpers.kill_run", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, f"expected SIGKILL, got {proc.returncode}\n{proc.stderr[-3000:]}"


def assert_complete(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0 and f"RUN COMPLETE {STEPS}" in proc.stdout, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def reference_losses(tmp_path_factory, data_root):  # noqa: F811
    out = tmp_path_factory.mktemp("uninterrupted")
    Trainer(tiny_cfg(out, data_root, *EXTRA)).train()
    losses = losses_by_step(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


def assert_same_losses(run_dir: Path, reference: dict[int, float]) -> None:
    losses = losses_by_step(run_dir)  # each step logged once
    assert sorted(losses) == sorted(reference)
    for step, loss in reference.items():
        assert losses[step] == pytest.approx(loss, abs=1e-6, rel=0), f"step {step}"


def test_killed_in_save_and_after_a_step_with_a_damaged_checkpoint(tmp_path, data_root, reference_losses):  # noqa: F811
    out = tmp_path / "run"
    ckpts = out / "checkpoints"
    # 1. killed inside the atomic save of step 4 (model, trainer state, info.json written; no manifest, no rename)
    assert_killed(run_killed(out, data_root, "save:4"))
    assert [p.name for p in list_step_checkpoints(ckpts)] == ["step-000002"]
    leftovers = [p.name for p in ckpts.iterdir() if p.name.startswith(".step-000004.tmp-")]
    assert leftovers, "the half-written folder stays under its temporary name"
    assert latest_checkpoint(out).name == "step-000002"

    # 2. restarted, killed after step 5 is done (step-000004 was written this time)
    assert_killed(run_killed(out, data_root, "step:5"))
    assert [p.name for p in list_step_checkpoints(ckpts)] == ["step-000002", "step-000004"]
    assert sorted(losses_by_step(out)) == [1, 2, 3, 4, 5]

    # 3. step-000004's weights are damaged on disk: the restart names it, resumes from step 2
    weights = ckpts / "step-000004" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    proc = run_killed(out, data_root, None)
    assert_complete(proc)
    assert "skipping damaged checkpoint" in proc.stderr and "step-000004" in proc.stderr
    assert "model.safetensors does not match its sha256 checksum" in proc.stderr
    assert "resumed from" in proc.stderr and "step-000002 at step 2" in proc.stderr
    assert_same_losses(out, reference_losses)


def test_killed_half_way_through_a_weights_file(tmp_path, data_root, reference_losses):  # noqa: F811
    out = tmp_path / "run"
    assert_killed(run_killed(out, data_root, "weights:2"))
    assert list_step_checkpoints(out / "checkpoints") == [] and latest_checkpoint(out) is None
    assert_complete(run_killed(out, data_root, None))
    assert_same_losses(out, reference_losses)


@pytest.mark.slow
def test_many_random_kill_points(tmp_path, data_root, reference_losses):  # noqa: F811
    """Seeded random kill points over one run: after steps, inside saves, inside weight files."""
    rng = random.Random(13)
    out = tmp_path / "run"
    points = sorted({(rng.choice(["step", "save", "weights"]), rng.randint(1, STEPS)) for _ in range(6)}, key=lambda p: p[1])
    killed = []
    for kind, at in points:
        if kind != "step" and at % 2:  # saves happen on even steps only
            at += 1
        done = max(losses_by_step(out)) if (out / "metrics.jsonl").is_file() else 0
        if at <= done:
            continue
        assert_killed(run_killed(out, data_root, f"{kind}:{at}"))
        killed.append(f"{kind}:{at}")
    assert len(killed) >= 3, killed
    assert_complete(run_killed(out, data_root, None))
    assert_same_losses(out, reference_losses)
    print(f"kill points: {killed}")
