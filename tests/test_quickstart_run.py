"""The whole quick-start (`python scripts/train.py experiment=quickstart`), as a new user runs it: its
figures held above floors (about 5 minutes on 2 CPU cores, so `soak`: `pytest -m soak tests/test_quickstart_run.py`).
The floors sit below the figures measured on the release (docs/quickstart.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLOORS = {  # metric: (bound, "min" = must exceed, "max" = must stay below)
    "category_accuracy": (0.7, "min"),
    "caption_meteor": (0.3, "min"),
    "mask_iou": (0.8, "min"),
    "video_mask_iou": (0.6, "min"),
    "track_iou": (0.6, "min"),
    "video_caption_meteor": (0.03, "min"),  # measured 0.06: the event captions are not learnt yet
    "event_boundary_error": (1.0, "max"),
    "event_boundary_f1": (0.6, "min"),
}


@pytest.mark.soak
def test_full_quickstart_figures_above_floors(tmp_path):
    out = tmp_path / "qs"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "train.py"),
            "experiment=quickstart",
            f"trainer.output_dir={out}",
            "trainer.logging.progress_bar=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    low = {
        k: metrics.get(k)
        for k, (bound, kind) in FLOORS.items()
        if metrics.get(k) is None or (metrics[k] <= bound if kind == "min" else metrics[k] >= bound)
    }
    assert not low, f"figures past their floors: {low} (all: {metrics})"
    report = (out / "report.md").read_text()
    assert all(k in report for k in FLOORS)
    assert (out / "sam2_taught.pt").is_file()
