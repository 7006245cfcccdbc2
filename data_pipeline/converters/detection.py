"""Box-only detection JSON in the COCO layout: Objects365 (v1/v2) and V3Det.

Objects365's ``file_name`` is relative (``images/v1/patch8/objects365_v1_00420917.jpg``); V3Det's
too (``Images/a00000066/xxx.jpg``). Only boxes are read; regions get the category name.
"""

from __future__ import annotations

from collections.abc import Iterator

from pam.data.schema import Record

from ..records import Counts
from .coco import convert_instances

SOURCES = ("objects365", "v3det")


def convert(annotations: str, images: str | None, counts: Counts, *, source: str = "objects365", include_crowd: bool = False) -> Iterator[Record]:
    if source not in SOURCES:
        raise ValueError(f"detection source must be one of {SOURCES}, got {source!r}")
    return convert_instances(annotations, images, counts, source=source, include_crowd=include_crowd, boxes_only=True)
