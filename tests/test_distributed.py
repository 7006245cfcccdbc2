"""Engines against one another: torchrun DDP (2 gloo processes) and DeepSpeed ZeRO-2/3 on CPU
follow the loss trajectory of one plain process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

COMMON = [
    "experiment=quickstart",
    "model.sam2.checkpoint=null",  # a random debug SAM 2: no teaching step
    "~sam2_teach",
    "data=quickstart",  # images only: the counts below make whole epochs
    "data.generate.num_train_videos=0",
    "data.generate.num_test_videos=0",
    "stage=stage2",
    "~next_stage",
    "stage.max_steps=3",
    "stage.lr=1e-3",
    "stage.warmup_ratio=0",
    "data.tasks=[category,short_caption]",
    "data.generate.num_train=12",
    "data.generate.num_val=2",
    "data.generate.num_test=2",
    "trainer.global_batch_size=4",
    "trainer.micro_batch_size=2",
    "trainer.logging.every=1",
    "trainer.validation.max_batches=1",
    "trainer.evaluation.enabled=false",
    "trainer.feature_cache=null",
    "trainer.logging.progress_bar=false",
    "trainer.logging.wandb.mode=disabled",
    "trainer.checkpoint.resume=never",
]


def _env(**extra) -> dict:
    env = dict(
        os.environ,
        WANDB_MODE="disabled",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        DS_ACCELERATOR="cpu",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in rows if "train/loss" in r]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist") / "data"
    from pam.data.synthetic import SyntheticConfig, generate_quickstart

    generate_quickstart(
        str(root),
        SyntheticConfig(num_train=12, num_val=2, num_test=2, num_train_videos=0, num_val_videos=0, num_test_videos=0),
    )
    return root


def _train(
    out: Path, data_root: Path, *extra: str, launcher: list[str] | None = None, env: dict | None = None
) -> list[float]:
    cmd = (launcher or [sys.executable]) + [
        str(ROOT / "scripts" / "train.py"),
        *COMMON,
        f"trainer.output_dir={out}",
        f"data.root={data_root}",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return _losses(out)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, data_root) -> list[float]:
    return _train(tmp_path_factory.mktemp("single") / "run", data_root)


def test_two_process_ddp_matches_one_process(tmp_path, data_root, single_process):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    ddp = _train(tmp_path / "ddp", data_root, launcher=torchrun)
    assert len(ddp) == len(single_process) == 3
    for a, b in zip(ddp, single_process):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    assert single_process[-1] < single_process[0]


# zero2_offload runs with `-m soak` only (suite time): zero2 and zero3_offload cover its two parts
@pytest.mark.parametrize(
    "zero", ["zero2", "zero3", pytest.param("zero2_offload", marks=pytest.mark.soak), "zero3_offload"]
)
def test_deepspeed_zero_matches_one_process(tmp_path, data_root, single_process, zero):
    pytest.importorskip("deepspeed")
    env = _env(
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(29544 + ["zero2", "zero3", "zero2_offload", "zero3_offload"].index(zero)),
    )
    losses = _train(
        tmp_path / zero,
        data_root,
        "trainer.engine=deepspeed",
        f"trainer.deepspeed_config={ROOT}/configs/deepspeed/{zero}.json",
        env=env,
    )
    assert len(losses) == 3
    for a, b in zip(losses, single_process):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)
    assert (tmp_path / zero / "checkpoints" / "final-stage2" / "model.safetensors").is_file()
    shutil.rmtree(tmp_path / zero, ignore_errors=True)
