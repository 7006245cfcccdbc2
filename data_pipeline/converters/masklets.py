"""Helpers for video masklets given as per-frame COCO RLE."""

from __future__ import annotations

from typing import Any

from pycocotools import mask as mask_utils

from ..records import ConvertError


def rle_area_and_box(rle: Any, where: str) -> tuple[int, list[float]]:
    """Pixel area and [x, y, w, h] box of one RLE (compressed string or uncompressed list counts)."""
    if not (isinstance(rle, dict) and "size" in rle and "counts" in rle):
        raise ConvertError(f"{where}: a mask must be an RLE {{'size', 'counts'}}, got {type(rle).__name__}")
    h, w = rle["size"]
    coded = mask_utils.frPyObjects(rle, h, w) if isinstance(rle["counts"], list) else {"size": [h, w], "counts": rle["counts"].encode("ascii")}
    return int(mask_utils.area(coded)), [float(c) for c in mask_utils.toBbox(coded)]


def compact_rle(rle: dict) -> dict:
    """The schema's RLE: ``{"size": [h, w], "counts": str | list[int]}`` (extra keys dropped)."""
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}
