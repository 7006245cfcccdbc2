"""Collect a Hydra multirun sweep into one table of what differs between runs and how they ended.

A sweep folder, as Hydra's multirun writes it, holds one folder per job::

    <sweep_dir>/<job>/.hydra/config.yaml      the composed config of the run
    <sweep_dir>/<job>/.hydra/overrides.yaml   its command-line overrides
    <sweep_dir>/<job>/metrics.json            final metrics, written by the run when it finishes
    <sweep_dir>/<job>/metrics.jsonl           the training log: its last train/loss and val/loss join them

``collect_sweep`` resolves each config (an interpolation that cannot be resolved outside the run,
such as ``${hydra:runtime.output_dir}``, is kept as written), flattens it to dotted keys, and keeps
the keys whose values differ between runs. Each row then gets the run's final metrics (nested dicts
flattened the same way); a run without ``metrics.json`` has status "incomplete".
``write_sweep_tables`` writes the table as ``sweep.md`` and ``sweep.csv``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

METRICS_FILENAME = "metrics.json"
METRICS_LOG = "metrics.jsonl"  # the training log; its last losses join the final metrics
LOSS_KEYS = ("train/loss", "val/loss")
COMPLETE = "complete"
INCOMPLETE = "incomplete"


@dataclass
class SweepRun:
    name: str  # the job folder's name, e.g. "3"
    path: Path
    overrides: list[str]  # from .hydra/overrides.yaml
    config: dict[str, Any]  # resolved config, flattened to dotted keys
    metrics: dict[str, Any] | None  # flattened metrics.json; None while the run is incomplete

    @property
    def status(self) -> str:
        return INCOMPLETE if self.metrics is None else COMPLETE


@dataclass
class SweepTable:
    columns: list[str]
    rows: list[dict[str, Any]]
    config_keys: list[str] = field(default_factory=list)  # the config columns: keys that differ
    metric_keys: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        def cell(value: Any) -> str:
            return _format(value, float_format="{:.6g}").replace("|", "\\|").replace("\n", " ")

        lines = [
            "| " + " | ".join(cell(c) for c in self.columns) + " |",
            "| " + " | ".join("---" for _ in self.columns) + " |",
        ]
        for row in self.rows:
            lines.append("| " + " | ".join(cell(row.get(c)) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"

    def write_csv(self, path: str | Path) -> None:
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(self.columns)
            for row in self.rows:
                writer.writerow([_format(row.get(c), float_format="{!r}") for c in self.columns])


def _format(value: Any, float_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return float_format.format(value) if math.isfinite(value) else str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def flatten_config(cfg: DictConfig, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to resolved plain values; lists stay whole values. Values that cannot be
    resolved here (``${hydra:...}``, a missing ``???``) are kept as written."""
    out: dict[str, Any] = {}
    raw = OmegaConf.to_container(cfg, resolve=False)
    for key in cfg.keys():
        name = f"{prefix}{key}"
        try:
            value = cfg[key]
            if isinstance(value, ListConfig):
                value = OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException:
            out[name] = raw[key]
            continue
        if isinstance(value, DictConfig):
            nested = flatten_config(value, f"{name}.")
            out.update(nested if nested else {name: {}})
        else:
            out[name] = value
    return out


def flatten_dict(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_dict(value, f"{name}."))
        else:
            out[name] = value
    return out


def final_losses(log_path: Path) -> dict[str, float]:
    """The last ``train/loss`` and ``val/loss`` the run logged in ``metrics.jsonl`` (its
    ``metrics.json`` holds only the test scores when the run evaluated at the end)."""
    last: dict[str, float] = {}
    if not log_path.is_file():
        return last
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by a kill: the rows before it still count
            continue
        if isinstance(row, dict):
            last.update({k: row[k] for k in LOSS_KEYS if isinstance(row.get(k), (int, float))})
    return last


def _sort_key(path: Path) -> tuple[int, int, str]:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def load_sweep_runs(sweep_dir: str | Path) -> list[SweepRun]:
    """Every job folder of ``sweep_dir`` (one with ``.hydra/config.yaml``), in job order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep folder")
    job_dirs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()), key=_sort_key)
    if not job_dirs:
        raise ValueError(f"{sweep_dir}: no runs found (expected <job>/.hydra/config.yaml)")
    runs = []
    for job in job_dirs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        if not isinstance(config, DictConfig):
            raise ValueError(f"{job / '.hydra' / 'config.yaml'}: expected a mapping")
        overrides_path = job / ".hydra" / "overrides.yaml"
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_path)) if overrides_path.is_file() else []
        if not isinstance(overrides, list):
            raise ValueError(f"{overrides_path}: expected a list of overrides")
        metrics = None
        metrics_path = job / METRICS_FILENAME
        if metrics_path.is_file():
            try:
                loaded = json.loads(metrics_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{metrics_path}: invalid JSON ({err.msg})") from err
            if not isinstance(loaded, dict):
                raise ValueError(f"{metrics_path}: expected a JSON object of metrics")
            metrics = {**final_losses(job / METRICS_LOG), **flatten_dict(loaded)}
        runs.append(SweepRun(job.name, job, [str(o) for o in overrides], flatten_config(config), metrics))
    return runs


def _differing_keys(dicts: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    missing = object()
    return [
        key for key in keys if len({json.dumps(d.get(key, missing), sort_keys=True, default=repr) for d in dicts}) > 1
    ]


def collect_sweep(sweep_dir: str | Path) -> SweepTable:
    """One row per run: run, status, the overrides not shared by every run, the config values
    that differ between runs, and the final metrics."""
    runs = load_sweep_runs(sweep_dir)
    config_keys = _differing_keys([r.config for r in runs])
    metric_names = list(dict.fromkeys(k for r in runs if r.metrics for k in r.metrics))
    taken = {"run", "status", "overrides"}.union(*(r.config for r in runs))
    # A metric named like a config key (or "status") gets a "metrics." prefix.
    metric_keys = [f"metrics.{k}" if k in taken else k for k in metric_names]
    shared = set.intersection(*(set(r.overrides) for r in runs))
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "run": run.name,
            "status": run.status,
            "overrides": " ".join(o for o in run.overrides if o not in shared),
        }
        row.update({key: run.config.get(key) for key in config_keys})
        metrics = run.metrics or {}
        row.update({column: metrics.get(name) for column, name in zip(metric_keys, metric_names)})
        rows.append(row)
    columns = ["run", "status", "overrides", *config_keys, *metric_keys]
    return SweepTable(columns=columns, rows=rows, config_keys=config_keys, metric_keys=metric_keys)


def write_sweep_tables(table: SweepTable, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``sweep.md`` and ``sweep.csv`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / "sweep.md", out_dir / "sweep.csv"
    md_path.write_text(table.to_markdown(), encoding="utf-8")
    table.write_csv(csv_path)
    return md_path, csv_path
