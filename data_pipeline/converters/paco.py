"""PACO-LVIS instances: ``object:part`` category names become "part of object" (raw name kept)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import Counts
from .coco import convert_instances, name_text
from .lvis import add_definition_and_synonyms

SOURCES = ("paco",)


def paco_category(category: dict) -> dict[str, Any]:
    name = category["name"]
    out: dict[str, Any] = {"extra": {"raw_category": name}}
    if ":" in name:
        obj, part = name.split(":", 1)
        out["category"] = f"{name_text(part)} of {name_text(obj)}"
        out["extra"].update(object=name_text(obj), part=name_text(part))
    else:
        out["category"] = name_text(name)
    return add_definition_and_synonyms(out, category)


def convert(annotations: str, images: str | None, counts: Counts, *, include_crowd: bool = False, source: str | None = None) -> Iterator[Record]:
    return convert_instances(annotations, images, counts, source=source or "paco", category_text=paco_category, include_crowd=include_crowd)
