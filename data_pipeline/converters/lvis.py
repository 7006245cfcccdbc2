"""LVIS v1 and v0.5 instances: the category ``def`` becomes the definition, ``synonyms`` go to the
region's extra. The image is located from ``coco_url`` (``val2017/000000000139.jpg``) as lvis-api
and detectron2 do: v1 has no ``file_name``, and v0.5's names a COCO 2014 file
(``COCO_val2014_*.jpg``) that a COCO 2017 image folder does not hold. Point ``--images`` at the COCO
folder holding ``train2017/`` and ``val2017/``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import Counts
from .coco import Flavour, coco_url_file, convert_instances, name_text

SOURCES = ("lvis",)


def lvis_category(category: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"category": name_text(category["name"]), "extra": {"raw_category": category["name"]}}
    return add_definition_and_synonyms(out, category)


def add_definition_and_synonyms(out: dict[str, Any], category: dict) -> dict[str, Any]:
    """LVIS-style ``def`` -> ``definition`` and ``synonyms`` -> ``extra.synonyms`` (PACO uses the same fields)."""
    definition = category.get("def")
    if isinstance(definition, str) and definition.strip():
        out["definition"] = definition.strip()
    if category.get("synonyms"):
        out["extra"]["synonyms"] = list(category["synonyms"])
    return out


def convert(
    annotations: str, images: str | None, counts: Counts, *, include_crowd: bool = False, source: str | None = None
) -> Iterator[Record]:
    flavour = Flavour(category_text=lvis_category, image_path=coco_url_file)
    return convert_instances(
        annotations, images, counts, source=source or "lvis", flavour=flavour, include_crowd=include_crowd
    )
