"""The released upstream PAM-data JSONL (``type``, ``image`` or ``image_root`` + ``frames``, ``bbox``,
``points``, ``labels``, ``conversations``, ...), read by :func:`pam.data.readers.upstream_record` (the
reader the training configs use) and written in the region schema. An invalid line stops the run
with its file, line and field, or is skipped and counted under ``--skip-bad``; relative media paths
are put under ``--images``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from pam.data.readers import upstream_record
from pam.data.schema import Record

from ..records import ConvertError, Counts

SOURCES = ("pam-release",)


def convert(
    annotations: str, images: str | None, counts: Counts, *, language: str | None = None, source: str | None = None
) -> Iterator[Record]:
    if not os.path.isfile(annotations):
        raise FileNotFoundError(f"annotation file not found: {annotations}")
    stem = os.path.splitext(os.path.basename(annotations))[0]
    with open(annotations, encoding="utf-8") as f:
        if annotations.endswith(".json"):
            items = list(enumerate(json.load(f), start=1))
        else:
            items = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
    for lineno, item in items:
        where = f"{annotations}:{lineno}"
        with counts.entry(where):
            try:
                obj = json.loads(item) if isinstance(item, str) else item
            except json.JSONDecodeError as err:
                raise ConvertError(f"{where}: invalid JSON: {err.msg} at column {err.colno}") from None
            record = upstream_record(obj, where, f"{stem}:{lineno}", language)
            record.source = source or stem
            if images:
                if record.image is not None and not os.path.isabs(record.image):
                    record.image = os.path.join(images, record.image)
                if record.frames is not None:
                    root = record.frames_root or ""
                    record.frames_root = root if os.path.isabs(root) else os.path.join(images, root)
            yield record
