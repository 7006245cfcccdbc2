"""A Hydra multirun over two tiny configs, collected into one table."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_multirun_of_two_configs_gives_a_sweep_table(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "-m",
        "experiment=quickstart",
        "stage=stage2",
        "~next_stage",
        "stage.max_steps=2",
        "model.perceiver.num_semantic_tokens=4,8",
        f"hydra.sweep.dir={sweep}",
        "trainer.output_dir=${hydra:sweep.dir}/${hydra:sweep.subdir}",
        f"data.root={tmp_path}/data",
        "data.generate.num_train=8",
        "data.generate.num_val=2",
        "data.generate.num_test=2",
        "trainer.global_batch_size=2",
        "trainer.micro_batch_size=2",
        "trainer.validation.max_batches=1",
        "trainer.logging.every=1",
        "trainer.evaluation.enabled=false",
        "trainer.feature_cache=null",
        "trainer.logging.progress_bar=false",
        "trainer.logging.wandb.mode=disabled",
    ]
    env = dict(os.environ, WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = subprocess.run(
        [sys.executable, "-m", "pam.cli", "collect-sweep", str(sweep)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "sweep.csv").open()))
    assert len(rows) == 2
    key = next(k for k in rows[0] if k.endswith("perceiver.num_semantic_tokens"))
    assert sorted(r[key] for r in rows) == ["4", "8"]
    loss_key = next(k for k in rows[0] if k.endswith("train/loss"))
    assert all(float(r[loss_key]) > 0 for r in rows)
    assert "num_semantic_tokens" in (sweep / "sweep.md").read_text()
