"""Reading and writing region-schema JSONL, and the counts every step reports."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pam.data.schema import Record, SchemaError
from pam.utils.jsonl import iter_jsonl_objects


class ConvertError(SchemaError):
    """An input file is not in the expected official format; the message names file and field."""


@dataclass
class Counts:
    """Records and regions written, what was skipped by reason, and the malformed entries skipped
    under ``skip_bad`` (each with its one-line message)."""

    records: int = 0
    regions: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> number of regions/records skipped
    skip_bad: int = 0  # malformed entries that may be skipped before the run stops (0: stop on the first)
    bad: list[str] = field(default_factory=list)  # messages of the malformed entries skipped

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    @contextmanager
    def entry(self, where: str) -> Iterator[None]:
        """Guard the conversion of one entry (an annotation, image, ref, video ...) named ``where``.

        A malformed entry raises :class:`ConvertError` naming file, entry and field; any other
        error of the entry's data (a wrong type deep inside it) is turned into one naming ``where``.
        Within the ``skip_bad`` limit the entry is skipped and counted (``malformed``); past it,
        or with no limit, the error stops the run."""
        try:
            yield
        except SchemaError as err:
            self._malformed(str(err))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as err:
            self._malformed(f"{where}: unexpected value ({type(err).__name__}: {err})")

    def _malformed(self, message: str) -> None:
        message = " ".join(message.split())
        if len(self.bad) >= self.skip_bad:
            hint = f" (more than --skip-bad {self.skip_bad} malformed entries)" if self.skip_bad else ""
            raise ConvertError(message + hint)
        self.bad.append(message)
        self.skipped["malformed"] += 1

    def as_dict(self) -> dict[str, Any]:
        out = {"records": self.records, "regions": self.regions, "skipped": dict(sorted(self.skipped.items()))}
        if self.bad:  # the first few; the manifest's `problems` lists them all
            out["malformed"] = self.bad[:20] + ([f"... and {len(self.bad) - 20} more"] if len(self.bad) > 20 else [])
        return out


def record_from(data: dict, where: str) -> Record:
    """Validate ``data`` through the schema (raises SchemaError naming ``where`` and the field)."""
    return Record.from_dict(data, where)


def record_line(record: Record) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":"))


def write_records(path: str | os.PathLike, records: Iterable[Record], counts: Counts | None = None) -> Counts:
    """Write records as JSONL through ``Record.to_dict``; ids must be unique. Returns the counts."""
    counts = counts or Counts()
    seen: set[str] = set()
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for record in records:
                if record.id in seen:
                    raise ConvertError(f"{path}: record id {record.id!r} would be written twice; ids must be unique")
                seen.add(record.id)
                f.write(record_line(record) + "\n")
                counts.records += 1
                counts.regions += len(record.regions)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; the output gets the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return counts


def iter_records(path: str | os.PathLike) -> Iterator[Record]:
    """Records of a region-schema JSONL file, paths as written (not resolved)."""
    for lineno, data in iter_jsonl_objects(path):
        yield Record.from_dict(data, f"{path}:{lineno}")


def load_json(path: str | os.PathLike) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ConvertError(f"{path}: invalid JSON: {err.msg} at line {err.lineno}") from err


def media_path(images: str | None, name: str) -> str:
    """``name`` under the ``--images`` folder, or as given when there is none (the CLI passes the
    folder absolute, so the path written does not depend on where the output is read from)."""
    return os.path.join(images, name) if images else name


def number(value: Any) -> bool:
    """A JSON number (not a bool, not a numeric string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def size_int(value: Any) -> int | None:
    """A positive pixel size given as an int or an integral float (SA-V writes ``848.0``), else None."""
    if number(value) and value > 0 and float(value).is_integer():
        return int(value)
    return None


def xywh(value: Any, where: str, name: str = "bbox") -> list[float]:
    """``[x, y, w, h]`` of four JSON numbers, as floats; ConvertError naming the field otherwise."""
    if not (isinstance(value, list) and len(value) == 4 and all(number(c) for c in value)):
        raise ConvertError(f"{where}: field `{name}` must be [x, y, w, h] (4 numbers), got {value!r}")
    return [float(c) for c in value]


def require(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]``, checked to be a ``kind``; ConvertError naming ``where`` and ``key`` otherwise."""
    if not isinstance(obj, dict) or key not in obj:
        raise ConvertError(f"{where}: field `{key}` is missing")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConvertError(f"{where}: field `{key}` must be {names}, got {type(value).__name__}")
    return value


_ROLES = {"human": "user", "gpt": "assistant"}


def chat_turns(turns_in: list, where: str, clean: Callable[[str], str]) -> list[dict] | None:
    """LLaVA-style ``[{"from": "human"|"gpt", "value": str}]`` -> the schema's turns, each text passed
    through ``clean``; None when they do not run user first and assistant last (the caller skips)."""
    turns = []
    for j, turn in enumerate(turns_in):
        role = _ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
        if role is None or not isinstance(turn.get("value"), str):
            raise ConvertError(f"{where}: field `conversations[{j}]` must be {{'from': 'human'|'gpt', 'value': str}}")
        turns.append({"role": role, "content": clean(turn["value"])})
    if not turns or turns[0]["role"] != "user" or turns[-1]["role"] != "assistant":
        return None
    return turns
