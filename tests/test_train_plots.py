"""plot_curves: the PNG is written and the series drawn are the ones in the file."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from pam.train.plots import plot_curves


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_curves_reads_train_val_and_lr(tmp_path):
    rows = [
        {"step": 0, "train/loss": 4.0, "lr": 0.0},
        {"step": 10, "train/loss": 3.0, "lr": 1e-4, "grad_norm": 1.5},
        {"step": 10, "val/loss": 3.5},
        {"step": 20, "train/loss": 2.5, "lr": 5e-5},
        {"step": 20, "val/loss": 2.75, "val/accuracy": 0.4},
        {"step": 30, "train/loss": 2},
    ]
    path = _write(tmp_path / "metrics.jsonl", rows)
    with path.open("a") as f:
        f.write("\n")  # a trailing blank line is fine
    out = tmp_path / "plots" / "curves.png"
    series = plot_curves(path, out)
    assert series == {
        "train/loss": ([0, 10, 20, 30], [4.0, 3.0, 2.5, 2.0]),
        "val/loss": ([10, 20], [3.5, 2.75]),
        "lr": ([0, 10, 20], [0.0, 1e-4, 5e-5]),
    }
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (600, 800)  # 8x6 inches at 100 dpi
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_curves_without_val(tmp_path):
    path = _write(tmp_path / "m.jsonl", [{"step": 1, "train/loss": 1.0, "lr": 0.1}])
    series = plot_curves(path, tmp_path / "c.png")
    assert set(series) == {"train/loss", "lr"}
    assert (tmp_path / "c.png").stat().st_size > 0


def test_plot_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="no record has 'train/loss'"):
        plot_curves(_write(tmp_path / "a.jsonl", [{"step": 1, "val/loss": 1.0}]), tmp_path / "a.png")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"step": 1, "train/loss": 1.0}\n{"step": 2, "train/loss": \n')
    with pytest.raises(ValueError, match=r"b.jsonl:2: invalid JSON"):
        plot_curves(bad, tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"c.jsonl:1: 'step' must be an integer"):
        plot_curves(_write(tmp_path / "c.jsonl", [{"train/loss": 1.0}]), tmp_path / "c.png")
    assert not (tmp_path / "a.png").exists()
