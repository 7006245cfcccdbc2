"""JSON-lines files: one reader (errors name the file and line) and one writer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, dict | ValueError]]:
    """``(line_number, object)`` for each non-blank line; a line that is not a JSON object gives a
    ``ValueError("<file>:<line>: ...")`` in place of the object, so a caller may skip it."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, ValueError(f"{path}:{line_no}: invalid JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(row, dict):
                yield line_no, ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
                continue
            yield line_no, row


def iter_jsonl_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """``(line_number, object)`` for each non-blank line; a line that is not a JSON object raises
    ``ValueError("<file>:<line>: ...")``."""
    for line_no, row in iter_jsonl_lines(path):
        if isinstance(row, ValueError):
            raise row
        yield line_no, row


def write_jsonl_objects(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON lines (UTF-8, one compact line each, deterministic bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path
