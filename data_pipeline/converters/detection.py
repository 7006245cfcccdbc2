"""Box-only detection JSON in the COCO layout: Objects365 (v1/v2) and V3Det.

Objects365: ``file_name`` is written as ``images/v1/patch8/objects365_v1_00420917.jpg``, while the
released image folders are ``train/patchN/`` and ``val/patchN/``. As mmdetection's
``Objects365V2Dataset`` does, the name is cut to its last folder and file (``patch8/...jpg``) and
put under ``--images`` (the split folder), and the three images mmdetection lists as absent from
the release are skipped (counted as ``image_ignored``).

V3Det: ``file_name`` (``images/a00000066/...jpg``) is used as written under ``--images`` (the
dataset root). Besides the English ``name``, a category's ``name_zh`` becomes the Chinese category,
its expert description ``cat_info`` the definition, and ``cat_info_gpt`` is kept in the extra.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import Counts
from .coco import Flavour, convert_instances, image_file, name_text

SOURCES = ("objects365", "v3det")
# mmdetection's objv2_ignore_list: images listed in the annotations but absent from the release
OBJECTS365_ABSENT = frozenset(
    {"patch16/objects365_v2_00908726.jpg", "patch6/objects365_v1_00320532.jpg", "patch6/objects365_v1_00320534.jpg"}
)


def objects365_file(img: dict, where: str) -> str | None:
    name = image_file(img, where).replace("\\", "/")
    short = posixpath.join(posixpath.basename(posixpath.dirname(name)), posixpath.basename(name))
    return None if short in OBJECTS365_ABSENT else short


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def v3det_category(category: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"category": {"en": name_text(category["name"])}, "extra": {"raw_category": category["name"]}}
    if _text(category.get("name_zh")):
        out["category"]["zh"] = _text(category["name_zh"])
    if _text(category.get("cat_info")):
        out["definition"] = {"en": _text(category["cat_info"])}
    if _text(category.get("cat_info_gpt")):
        out["extra"]["cat_info_gpt"] = _text(category["cat_info_gpt"])
    return out


def convert(
    annotations: str, images: str | None, counts: Counts, *, source: str = "objects365", include_crowd: bool = False
) -> Iterator[Record]:
    if source not in SOURCES:
        raise ValueError(f"detection source must be one of {SOURCES}, got {source!r}")
    flavour = (
        Flavour(boxes_only=True, image_path=objects365_file)
        if source == "objects365"
        else Flavour(boxes_only=True, category_text=v3det_category)
    )
    return convert_instances(annotations, images, counts, source=source, flavour=flavour, include_crowd=include_crowd)
