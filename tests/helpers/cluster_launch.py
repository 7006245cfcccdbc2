"""Shared by the cluster tests: a tiny training run launched as 1 process or as N gloo processes
through tests/helpers/cluster_run.py, and readers of what it records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]

# 16 train regions, 4 per optimiser step (2 per micro-batch): 4 steps are one epoch
RUN = [
    "experiment=quickstart",
    "model.sam2.checkpoint=null",  # a random debug SAM 2: no teaching step
    "~sam2_teach",
    "data=quickstart",  # images only: the counts below make whole epochs
    "data.generate.num_train_videos=0",
    "data.generate.num_test_videos=0",
    "stage=stage2",
    "~next_stage",
    "stage.lr=1e-3",
    "stage.warmup_ratio=0",
    "data.tasks=[category,short_caption]",
    "data.val=null",
    "trainer.global_batch_size=4",
    "trainer.micro_batch_size=2",
    "trainer.logging.every=1",
    "trainer.evaluation.enabled=false",
    "trainer.feature_cache=null",
    "trainer.logging.progress_bar=false",
    "trainer.logging.wandb.mode=disabled",
]
ENGINES = {
    "ddp": [],
    "zero2": ["trainer.engine=deepspeed", f"trainer.deepspeed_config={ROOT}/configs/deepspeed/zero2.json"],
    "zero3": ["trainer.engine=deepspeed", f"trainer.deepspeed_config={ROOT}/configs/deepspeed/zero3.json"],
}


def make_data(root: Path) -> Path:
    from pam.data.synthetic import SyntheticConfig, generate_quickstart

    generate_quickstart(
        str(root),
        SyntheticConfig(num_train=16, num_val=2, num_test=2, num_train_videos=0, num_val_videos=0, num_test_videos=0),
    )
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    out: Path,
    run_dir: Path,
    data: Path,
    engine: str,
    ranks: int,
    *extra: str,
    env: dict | None = None,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    """``ranks`` processes (torchrun for 2) of tests/helpers/cluster_run.py; records go to ``out``."""
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **(env or {}),
    }
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(key, None)
    if ranks == 1:
        launcher = [sys.executable]
        if engine != "ddp":  # DeepSpeed wants a process group even for one process
            full_env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    else:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(ranks),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
        ]
    cmd = [
        *launcher,
        "-m",
        "tests.helpers.cluster_run",
        str(out),
        *RUN,
        *ENGINES[engine],
        f"data.root={data}",
        f"trainer.output_dir={run_dir}",
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_here(out: Path, run_dir: Path, data: Path, *extra: str) -> None:
    """The run ``launch(out, run_dir, data, "ddp", 1, *extra)`` starts, in this process: one rank,
    no process group (the engine is the single-process one either way), without a new interpreter's
    ten-odd seconds of imports on a busy machine. Raises what the run raises."""
    from . import cluster_run

    threads = torch.get_num_threads()
    try:
        code = cluster_run.main(str(out), [*RUN, f"data.root={data}", f"trainer.output_dir={run_dir}", *extra])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, f"the run in {run_dir} exited {code}"


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def seen(out: Path) -> dict[int, list]:
    """Sample ids per global step, over every rank that recorded."""
    by_step: dict[int, list] = {}
    for path in sorted(out.glob("seen-rank*.json")):
        for step, ids in json.loads(path.read_text()):
            by_step.setdefault(step, []).extend(ids)
    return by_step


def load_state(out: Path, event: str) -> dict:
    return torch.load(out / f"state-{event}.pt", weights_only=True)


def assert_same_state(a: dict, b: dict, *, exact: bool = True) -> None:
    assert a["params"].keys() == b["params"].keys()
    for key in ("params", "exp_avg"):
        for name, x in a[key].items():
            y = b[key][name]
            assert (x is None) == (y is None), f"{key} {name}"
            if x is not None:
                assert torch.equal(x, y) if exact else torch.allclose(x, y, rtol=1e-5, atol=1e-7), (
                    f"{key} {name} differs"
                )
    assert a["lr"] == b["lr"] and a["schedule_step"] == b["schedule_step"]
