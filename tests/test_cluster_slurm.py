"""scripts/slurm_train.sbatch under a stand-in SLURM: the warning signal (USR1 to the batch script)
reaches the training processes while torchrun ignores it, the stopped run is requeued, and a run
that ends on its own is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# torchrun stand-in: records whether USR1 is ignored in it, starts one "worker" (a Python process with
# pam's stop handler, which exits with EXIT_STOPPED once signalled) and fails as torchrun does when a
# worker fails. Every pid goes to PIDS so the scancel stand-in can signal the whole job step.
TORCHRUN = r"""
import os, signal, subprocess, sys
out = os.environ["PAM_TEST_OUT"]
with open(os.path.join(out, "torchrun.txt"), "w") as f:
    f.write("ignored" if signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN else "default")
worker = subprocess.Popen([sys.executable, "-c", os.environ["PAM_TEST_WORKER"]])
with open(os.environ["PAM_TEST_PIDS"], "a") as f:
    f.write(f"{os.getpid()}\n{worker.pid}\n")
sys.exit(1 if worker.wait() else 0)
"""

WORKER = r"""
import os, sys, time
from pam.utils.stop import EXIT_STOPPED, StopSignal
out = os.environ["PAM_TEST_OUT"]
with StopSignal() as stop:
    open(os.path.join(out, "worker_ready"), "w").close()
    deadline = time.time() + float(os.environ.get("PAM_TEST_WORK_S", "60"))
    while not stop.requested and time.time() < deadline:
        time.sleep(0.05)
with open(os.path.join(out, "worker.txt"), "w") as f:
    f.write(",".join(stop.received))
sys.exit(EXIT_STOPPED if stop.requested else 0)
"""


def _fake_slurm(tmp_path: Path, work_s: float) -> tuple[dict, Path]:
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir(parents=True)
    out.mkdir()
    calls = out / "calls.txt"
    fakes = {
        "scontrol": f'if [[ "$1" == show ]]; then printf "node-1\\n"; else echo "scontrol $*" >> {calls}; fi',
        "srun": 'while [[ "$1" == --* ]]; do shift; done; exec "$@"',
        "scancel": f'echo "scancel $*" >> {calls}; sig="${{1#--signal=}}"; '
        'while read -r pid; do kill -s "$sig" "$pid" 2>/dev/null || true; '
        f"done < {out}/pids",
        "torchrun": f'exec "{sys.executable}" -c "$PAM_TEST_TORCHRUN" "$@"',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "SLURM_JOB_NODELIST": "node-1",
        "SLURM_NNODES": "1",
        "SLURM_JOB_ID": "77",
        "SLURM_GPUS_ON_NODE": "1",
        "PAM_TEST_OUT": str(out),
        "PAM_TEST_PIDS": str(out / "pids"),
        "PAM_TEST_TORCHRUN": TORCHRUN,
        "PAM_TEST_WORKER": WORKER,
        "PAM_TEST_WORK_S": str(work_s),
    }
    env.pop("SLURM_RESTART_COUNT", None)
    return env, out


def _start(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "slurm_train.sbatch"), "experiment=debug"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_warning_signal_stops_the_workers_and_requeues(tmp_path):
    env, out = _fake_slurm(tmp_path, work_s=60)
    job = _start(env)
    try:
        deadline = time.time() + 60
        while not (out / "worker_ready").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (out / "worker_ready").exists(), job.stderr.read() if job.poll() is not None else "worker did not start"
        job.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=B:USR1@300` sends the batch script
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, err
    assert (out / "torchrun.txt").read_text() == "ignored"  # torchrun survives USR1
    assert (out / "worker.txt").read_text() == "SIGUSR1"
    calls = (out / "calls.txt").read_text().splitlines()
    assert calls == ["scancel --signal=USR1 77", "scontrol requeue 77"]
    assert "requeueing job 77 (restart 1)" in err


def test_no_requeue_past_the_limit_or_after_a_normal_end(tmp_path):
    env, out = _fake_slurm(tmp_path, work_s=0)
    job = _start(env)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 0, err
    assert not (out / "calls.txt").exists()  # a run that ended on its own is not requeued

    env, out = _fake_slurm(tmp_path / "again", work_s=60)
    env["SLURM_RESTART_COUNT"] = "20"
    job = _start(env)
    deadline = time.time() + 60
    while not (out / "worker_ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGUSR1)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 1  # torchrun's status: the worker stopped with 75
    assert (out / "calls.txt").read_text().splitlines() == ["scancel --signal=USR1 77"]
    assert "PAM_MAX_REQUEUES=20 requeues are used up" in err
