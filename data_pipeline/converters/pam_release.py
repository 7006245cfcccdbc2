"""The released upstream PAM-data JSONL (``type``, ``image`` or ``image_root`` + ``frames``, ``bbox``,
``points``, ``labels``, ``conversations``, ...), read by :func:`pam.data.readers.upstream_record` (the
reader the training configs use) and written in the region schema. Invalid lines are skipped and
counted; relative media paths are put under ``--images``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

from pam.data.readers import upstream_record
from pam.data.schema import Record, SchemaError

from ..records import Counts

SOURCES = ("pam-release",)
logger = logging.getLogger("data_pipeline")


def convert(annotations: str, images: str | None, counts: Counts, *, language: str | None = None, source: str | None = None) -> Iterator[Record]:
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
        try:
            obj = json.loads(item) if isinstance(item, str) else item
            record = upstream_record(obj, where, f"{stem}:{lineno}", language)
        except (json.JSONDecodeError, SchemaError) as err:
            counts.skip("invalid_line")
            logger.warning("skipping %s", err)
            continue
        record.source = source or stem
        if images:
            if record.image is not None and not os.path.isabs(record.image):
                record.image = os.path.join(images, record.image)
            if record.frames is not None:
                root = record.frames_root or ""
                record.frames_root = root if os.path.isabs(root) else os.path.join(images, root)
        yield record
