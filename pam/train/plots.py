"""Training curves from a JSON-lines metrics file, drawn to a PNG.

Each line of the metrics file is one record such as ``{"step": 10, "train/loss": 2.3, "lr": 1e-4}``
or ``{"step": 50, "val/loss": 2.1}``. ``plot_curves`` draws the train loss (and the validation loss
when present) against the step on one panel and the learning rate on a second, and returns the
series it drew.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..utils.jsonl import iter_jsonl_objects

STEP_KEY = "step"
TRAIN_LOSS_KEY = "train/loss"
VAL_LOSS_KEY = "val/loss"
LR_KEY = "lr"

Series = tuple[list[int], list[float]]


def read_series(metrics_jsonl_path: str | Path, keys: tuple[str, ...]) -> dict[str, Series]:
    """``{key: (steps, values)}`` for each key, from the records that carry it, in file order."""
    path = Path(metrics_jsonl_path)
    series: dict[str, Series] = {key: ([], []) for key in keys}
    for line_no, record in iter_jsonl_objects(path):
        present = [key for key in keys if record.get(key) is not None]
        if not present:
            continue
        step = record.get(STEP_KEY)
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"{path}:{line_no}: {STEP_KEY!r} must be an integer, got {step!r}")
        for key in present:
            value = record[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{path}:{line_no}: {key!r} must be a number, got {value!r}")
            series[key][0].append(step)
            series[key][1].append(float(value))
    return series


def plot_curves(
    metrics_jsonl_path: str | Path,
    out_png: str | Path,
    *,
    train_key: str = TRAIN_LOSS_KEY,
    val_key: str = VAL_LOSS_KEY,
    lr_key: str = LR_KEY,
) -> dict[str, Series]:
    """Draw loss and learning-rate curves to ``out_png``; return the series drawn.

    The returned dict has ``train_key`` always, and ``val_key`` and ``lr_key`` when the file has
    them. A file without any ``train_key`` record is an error.
    """
    series = read_series(metrics_jsonl_path, (train_key, val_key, lr_key))
    if not series[train_key][0]:
        raise ValueError(f"{metrics_jsonl_path}: no record has {train_key!r}")
    drawn = {key: s for key, s in series.items() if s[0]}

    fig = Figure(figsize=(8, 6), constrained_layout=True)
    FigureCanvasAgg(fig)
    loss_ax, lr_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    loss_ax.plot(*drawn[train_key], label=train_key, linewidth=1.0)
    if val_key in drawn:
        loss_ax.plot(*drawn[val_key], label=val_key, marker="o", markersize=3)
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    loss_ax.grid(alpha=0.3)
    if lr_key in drawn:
        lr_ax.plot(*drawn[lr_key], color="tab:green", label=lr_key)
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        lr_ax.text(0.5, 0.5, f"no {lr_key!r} in the metrics file", ha="center", va="center", transform=lr_ax.transAxes)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel(STEP_KEY)
    lr_ax.grid(alpha=0.3)

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return drawn
