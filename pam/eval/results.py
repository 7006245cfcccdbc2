"""Results files (JSON + markdown) and the paper-style table that merges runs.

A run folder holds ``results.json``: benchmark, scores, the paper's PAM-3B figures (from the
benchmark's registration), the model and the SHA-256 of its checkpoint's weight files, and the
benchmark's settings (generation included).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .registry import paper_figures

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def checkpoint_hash(folder: str | Path) -> dict[str, Any]:
    """SHA-256 over the checkpoint's weight files (relative path and bytes, in path order)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"checkpoint {folder} has no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return {"sha256": digest.hexdigest(), "weight_files": [p.relative_to(folder).as_posix() for p in files]}


def model_info(checkpoint: str | Path | None) -> dict[str, Any]:
    if checkpoint is None:
        return {"checkpoint": None}
    folder = Path(checkpoint)
    info: dict[str, Any] = {"checkpoint": str(folder), **checkpoint_hash(folder)}
    config = folder / "pam_config.json"
    if config.is_file():
        llm = json.loads(config.read_text()).get("llm", {})
        info["llm"] = llm.get("name_or_path") or (llm.get("config") or {}).get("model_type")
    return info


def _fmt(value: Any) -> str:
    """A score as printed in results.md and eval-table: 4 significant digits (0.975 stays 0.975,
    0.91918 prints 0.9192), whole numbers up to 1e15 in full, no trailing zeros."""
    if isinstance(value, float) and math.isfinite(value):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.1f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"
    return "" if value is None else str(value)


def results_markdown(result: dict) -> str:
    paper = result.get("paper") or {}
    lines = [
        f"# {result['benchmark']}",
        "",
        f"model: `{result['model'].get('checkpoint')}` (sha256 {str(result['model'].get('sha256'))[:12]})"
        if result["model"].get("checkpoint")
        else "model: none (scored from a predictions file)",
        f"data: `{result.get('data')}`, items: {result.get('num_items')}",
        "",
        "| metric | ours | PAM-3B (paper) |",
        "|---|---|---|",
    ]
    for key, value in result["scores"].items():
        lines.append(f"| {key} | {_fmt(value)} | {_fmt(paper.get(key))} |")
    lines += ["", "settings:", "", "```json", json.dumps(result["settings"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def write_results(
    out_dir: str | Path,
    *,
    benchmark: str,
    scores: dict,
    settings: dict,
    checkpoint: str | Path | None,
    data: Any,
    num_items: int,
) -> dict:
    """Write ``results.json`` and ``results.md`` into ``out_dir``; returns the result dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": benchmark,
        "scores": scores,
        "paper": paper_figures().get(benchmark, {}),
        "model": model_info(checkpoint),
        "settings": settings,
        "data": None if data is None else str(data),
        "num_items": int(num_items) if isinstance(num_items, float) and num_items.is_integer() else num_items,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / RESULTS_JSON).write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    (out_dir / RESULTS_MD).write_text(results_markdown(result))
    return result


def _load_run(path: str | Path) -> dict:
    path = Path(path)
    file = path / RESULTS_JSON if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {RESULTS_JSON}")
    try:
        result = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(result, dict):
        raise ValueError(f"{file}: expected a JSON object; not a pam eval results file")
    for key in ("benchmark", "scores", "model"):
        if key not in result:
            raise ValueError(f"{file}: missing {key!r}; not a pam eval results file")
    for key, kind in (("scores", dict), ("model", dict)):
        if not isinstance(result[key], kind):
            raise ValueError(f"{file}: {key!r} must be a JSON object, got {type(result[key]).__name__}")
    result["_folder"] = file.parent if file.name == RESULTS_JSON else file
    return result


def _run_labels(folders: Sequence[Path]) -> list[str]:
    """The shortest trailing parts of each run folder's path that tell the runs apart."""
    parts = [f.resolve().parts for f in folders]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise AssertionError("distinct folders always have distinct paths")


def _checkpoint_label(res: dict) -> str:
    sha = str(res["model"].get("sha256") or "")[:8]
    return f"{Path(str(res['model'].get('checkpoint') or 'predictions')).name} ({sha})" if sha else "predictions only"


def eval_table(runs: Sequence[str | Path], *, by: str = "run") -> str:
    """One markdown table: a row per (benchmark, metric), the paper's PAM-3B figure, then a column per
    run folder (``by="run"``: two runs of one checkpoint, e.g. decoding ablations, side by side), or
    per checkpoint (``by="checkpoint"``: a model's runs of different benchmarks share a column). Under
    the table, one line per column names its run folder(s) and checkpoint."""
    if by not in ("run", "checkpoint"):
        raise ValueError(f"eval-table: by must be 'run' or 'checkpoint', got {by!r}")
    if not runs:
        raise ValueError("eval-table needs at least one run folder or results.json")
    results = [_load_run(r) for r in runs]
    folders = [res["_folder"].resolve() for res in results]
    for i, folder in enumerate(folders):
        if folder in folders[:i]:
            raise ValueError(f"eval-table: run {runs[i]} is given twice")
    labels = _run_labels(folders) if by == "run" else [_checkpoint_label(res) for res in results]
    columns: list[str] = []
    legend: dict[str, list[str]] = {}
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for res, label, run in zip(results, labels, runs):
        if label not in columns:
            columns.append(label)
        legend.setdefault(label, []).append(f"`{run}` ({res['benchmark']}): checkpoint {_checkpoint_label(res)}")
        for metric, value in res["scores"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not metric.startswith("num_"):
                key = (res["benchmark"], metric)
                if label in cells.get(key, {}):
                    raise ValueError(
                        f"two runs of {label} both score {res['benchmark']}/{metric}; "
                        "put them in separate columns with --by run"
                    )
                cells.setdefault(key, {})[label] = value
    figures = paper_figures()
    order = list(figures)
    keys = sorted(
        cells,
        key=lambda k: (
            order.index(k[0]) if k[0] in order else len(order),
            k[0],
            list(figures.get(k[0], {})).index(k[1]) if k[1] in figures.get(k[0], {}) else 99,
            k[1],
        ),
    )
    lines = [
        "| benchmark | metric | PAM-3B (paper) | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for bench, metric in keys:
        paper = figures.get(bench, {}).get(metric)
        row = [bench, metric, _fmt(paper)] + [_fmt(cells[(bench, metric)].get(c)) for c in columns]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for label in columns:
        lines.append(f"- {label}: " + "; ".join(legend[label]))
    return "\n".join(lines) + "\n"
