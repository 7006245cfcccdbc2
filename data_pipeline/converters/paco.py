"""PACO-LVIS (and PACO-Ego4D) instances: ``object:part`` category names become "part of object"
(raw name kept). As PACO's own loader and evaluation API do, an annotation with an empty
``segmentation`` (a part that was not segmented) is skipped and counted (``empty_segmentation``).
``attribute_ids`` are kept in the region's extra with their names from the file's ``attributes``.
Images are located from ``file_name`` under ``--images`` (the COCO folder for PACO-LVIS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, require
from .coco import Flavour, convert_instances, name_text
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


def attribute_reader(data: Any, path: str) -> Any:
    """annotation -> ``{"attribute_ids", "attributes"}`` (names from the file's ``attributes`` list)."""
    attributes = data.get("attributes", []) if isinstance(data, dict) else []
    if not isinstance(attributes, list):
        raise ConvertError(
            f"{path}: field `attributes` must be a list of {{'id', 'name'}}, got {type(attributes).__name__}"
        )
    names = {}
    for k, a in enumerate(attributes):
        at = f"{path}: attributes[{k}]"
        names[require(a, "id", int, at)] = require(a, "name", str, at)

    def read(ann: dict, at: str) -> dict[str, Any]:
        ids = ann.get("attribute_ids")
        if ids is None:
            return {}
        if not (isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
            raise ConvertError(f"{at}: field `attribute_ids` must be a list of integers, got {ids!r}")
        unknown = [i for i in ids if i not in names]
        if unknown:
            raise ConvertError(
                f"{at}: field `attribute_ids` has ids {unknown} that are not among the file's `attributes`"
            )
        return {"attribute_ids": list(ids), "attributes": [names[i] for i in ids]}

    return read


def convert(
    annotations: str, images: str | None, counts: Counts, *, include_crowd: bool = False, source: str | None = None
) -> Iterator[Record]:
    data = load_json(annotations)
    flavour = Flavour(
        category_text=paco_category, annotation_extra=attribute_reader(data, annotations), empty_segmentation_skips=True
    )
    return convert_instances(
        annotations, images, counts, source=source or "paco", flavour=flavour, include_crowd=include_crowd, data=data
    )
