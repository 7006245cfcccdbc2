"""Results files (JSON + markdown) and the paper-style table that merges runs.

A run folder holds ``results.json``: benchmark, scores, the paper's PAM-3B figures (from the
benchmark's registration), the model and the SHA-256 of its checkpoint's weight files, and the
benchmark's settings (generation included).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
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
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 1e6 else f"{value:.3g}"
    return "" if value is None else str(value)


def results_markdown(result: dict) -> str:
    paper = result.get("paper") or {}
    lines = [
        f"# {result['benchmark']}",
        "",
        f"model: `{result['model'].get('checkpoint')}` (sha256 {str(result['model'].get('sha256'))[:12]})",
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
        "num_items": num_items,
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
    result = json.loads(file.read_text())
    for key in ("benchmark", "scores", "model"):
        if key not in result:
            raise ValueError(f"{file}: missing {key!r}; not a pam eval results file")
    return result


def eval_table(runs: Sequence[str | Path]) -> str:
    """One markdown table: a row per (benchmark, metric), the paper's PAM-3B figure, then each
    model (runs of the same checkpoint share a column)."""
    if not runs:
        raise ValueError("eval-table needs at least one run folder or results.json")
    results = [_load_run(r) for r in runs]
    columns: list[str] = []
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for res in results:
        sha = str(res["model"].get("sha256") or "")[:8]
        label = (
            f"{Path(str(res['model'].get('checkpoint') or 'predictions')).name} ({sha})" if sha else "predictions only"
        )
        if label not in columns:
            columns.append(label)
        for metric, value in res["scores"].items():
            if isinstance(value, (int, float)) and not metric.startswith("num_"):
                key = (res["benchmark"], metric)
                if label in cells.get(key, {}):
                    raise ValueError(f"two runs of {label} both score {res['benchmark']}/{metric}")
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
    return "\n".join(lines) + "\n"
