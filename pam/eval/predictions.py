"""Prediction files: JSON lines keyed by ``"id"``, appended one item at a time so a run resumes.

A killed run leaves a file whose last line may be cut short; :class:`PredictionWriter` detects
that line (no trailing newline, or not valid JSON), drops it and carries on. A bad line anywhere
else is an error naming the file and line. Shards of a multi-process run live beside the final
file as ``<name>.rank<R>.jsonl`` and are merged once, in item order, by :func:`merge_predictions`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..utils.quiet import log_once

log = logging.getLogger("pam.eval")

ID_KEY = "id"
_MAX_LISTED = 10


def list_ids(ids: Sequence[Any]) -> str:
    """Up to 10 ids for an error message, then how many more."""
    shown = ", ".join(repr(i) for i in ids[:_MAX_LISTED])
    more = f" and {len(ids) - _MAX_LISTED} more" if len(ids) > _MAX_LISTED else ""
    return f"[{shown}]{more}"


def _check_id(row: Any, where: str) -> Any:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if ID_KEY not in row:
        raise ValueError(f"{where}: missing {ID_KEY!r}")
    row_id = row[ID_KEY]
    if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
        raise ValueError(f"{where}: {ID_KEY!r} must be a string or an integer, got {row_id!r}")
    return row_id


def _parse_lines(path: Path, *, allow_truncated_tail: bool) -> tuple[list[dict], int]:
    """Rows of ``path`` and the byte length of its good prefix (a cut-off last line excluded)."""
    data = path.read_bytes()
    rows: list[dict] = []
    good_end = 0
    pos = 0
    line_no = 0
    while pos < len(data):
        line_no += 1
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        raw = data[pos:end]
        last = end == len(data)
        pos = end
        if not raw.strip():
            good_end = end
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
            if nl < 0:
                raise ValueError("no newline at the end")
        except (ValueError, UnicodeDecodeError) as err:
            if last and allow_truncated_tail:
                # the runner reads one file more than once (done ids, then the writer): say it once
                log_once(
                    log,
                    logging.WARNING,
                    "%s:%d: dropping a cut-off last line (%s)",
                    path,
                    line_no,
                    err,
                    key=(str(path.resolve()), len(data), line_no),
                )
                break
            raise ValueError(f"{path}:{line_no}: invalid JSON ({err})") from err
        _check_id(row, f"{path}:{line_no}")
        rows.append(row)
        good_end = end
    return rows, good_end


def read_predictions(path: str | Path, *, allow_truncated_tail: bool = False) -> list[dict]:
    """Rows of a predictions file; a repeated id or a bad line raises naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such predictions file")
    rows, _ = _parse_lines(path, allow_truncated_tail=allow_truncated_tail)
    seen: dict[Any, int] = {}
    for n, row in enumerate(rows):
        if row[ID_KEY] in seen:
            raise ValueError(f"{path}: duplicate {ID_KEY} {row[ID_KEY]!r} (rows {seen[row[ID_KEY]] + 1} and {n + 1})")
        seen[row[ID_KEY]] = n
    return rows


def write_predictions(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON lines atomically (a temporary file beside ``path``, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for index, row in enumerate(rows):
                if not isinstance(row, dict) or ID_KEY not in row:
                    raise ValueError(f"{path}: row {index} must be a dict with an {ID_KEY!r}")
                try:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                except TypeError as err:
                    raise TypeError(f"{path}: row {index} ({ID_KEY}={row[ID_KEY]!r}): {err}") from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


class PredictionWriter:
    """Append-only prediction file that resumes: ``done`` holds the ids already written.

    Opening cuts off a truncated last line (left by a kill) before appending. Every ``write``
    is flushed and fsynced, so a kill loses at most the item being written.
    """

    def __init__(self, path: str | Path, *, also_done: Iterable[Any] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[Any] = set(also_done)
        if self.path.is_file():
            rows, good_end = _parse_lines(self.path, allow_truncated_tail=True)
            if good_end < self.path.stat().st_size:
                with self.path.open("r+b") as f:
                    f.truncate(good_end)
            self.done.update(row[ID_KEY] for row in rows)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, row: dict) -> None:
        row_id = _check_id(row, f"{self.path}: new row")
        if row_id in self.done:
            raise ValueError(f"{self.path}: item {row_id!r} is already written")
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done.add(row_id)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shard_path(path: str | Path, rank: int) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def shard_paths(path: str | Path) -> list[Path]:
    """Existing shard files of ``path`` (from any earlier world size)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}"))


def done_ids(path: str | Path) -> set[Any]:
    """Ids already predicted in the final file or any shard (a cut-off last line ignored)."""
    ids: set[Any] = set()
    for p in [Path(path), *shard_paths(path)]:
        if p.is_file():
            ids.update(row[ID_KEY] for row in _parse_lines(p, allow_truncated_tail=True)[0])
    return ids


def merge_predictions(path: str | Path, item_ids: Sequence[Any]) -> Path:
    """Merge the final file and every shard into ``path`` in ``item_ids`` order, then drop the shards.

    Raises naming the missing ids (nothing is deleted then) or unknown ones; an id written twice
    (a resumed shard) keeps its first row.
    """
    path = Path(path)
    by_id: dict[Any, dict] = {}
    sources = [p for p in [path, *shard_paths(path)] if p.is_file()]
    for p in sources:
        for row in _parse_lines(p, allow_truncated_tail=True)[0]:
            by_id.setdefault(row[ID_KEY], row)
    wanted = set(item_ids)
    missing = [i for i in item_ids if i not in by_id]
    extra = [i for i in by_id if i not in wanted]
    if missing:
        raise ValueError(f"{path}: {len(missing)} items have no prediction after the merge: {list_ids(missing)}")
    if extra:
        raise ValueError(f"{path}: {len(extra)} predictions are not items of this benchmark: {list_ids(extra)}")
    write_predictions(path, (by_id[i] for i in item_ids))
    for p in sources:
        if p != path:
            p.unlink()
    return path


def match_predictions(predictions: Sequence[dict], item_ids: Sequence[Any], what: str = "predictions") -> list[dict]:
    """The prediction row of each item, in item order; missing, unknown or repeated ids raise, listed."""
    by_id: dict[Any, dict] = {}
    repeated = []
    for row in predictions:
        if row[ID_KEY] in by_id:
            repeated.append(row[ID_KEY])
        by_id[row[ID_KEY]] = row
    known = set(item_ids)
    missing = [i for i in item_ids if i not in by_id]
    extra = [i for i in by_id if i not in known]
    problems = []
    if missing:
        problems.append(f"{len(missing)} items have no prediction: {list_ids(missing)}")
    if extra:
        problems.append(f"{len(extra)} prediction ids are not items: {list_ids(extra)}")
    if repeated:
        problems.append(f"{len(repeated)} prediction ids repeat: {list_ids(repeated)}")
    if problems:
        raise ValueError(f"{what} do not match the benchmark's items: " + "; ".join(problems))
    return [by_id[i] for i in item_ids]
