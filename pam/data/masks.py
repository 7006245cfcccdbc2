"""COCO mask encodings: compressed and uncompressed RLE, polygons, checked before pycocotools decodes.

pycocotools decodes some malformed RLE strings (the empty one included) into arbitrary masks without
an error, so the run lengths are parsed and checked here first.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def rle_string_to_runs(counts: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string.

    Each number is written in 5-bit groups, least significant first, one character per group
    (character code - 48); bit 0x20 marks that another group follows, and bit 0x10 of the last
    group is the sign. From the third number on, a number is stored as the difference to the
    number two places before it.
    """
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                raise ValueError("the string ends inside a number")
            c = ord(counts[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {counts[pos]!r} at {pos} is not a compressed-RLE character ('0'..'o')")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def decode_rle(size: list[int], counts: str | list[int]) -> np.ndarray:
    """Boolean (H, W) mask of an RLE; raises ValueError if its runs do not cover H x W pixels."""
    h, w = size
    runs = rle_string_to_runs(counts) if isinstance(counts, str) else list(counts)
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels, not {h}x{w}={h * w}")
    if isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    else:
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": list(counts)}, h, w)
    return mask_utils.decode(rle).astype(bool)


def decode_polygons(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Boolean (H, W) union of polygons ``[[x0, y0, x1, y1, ...], ...]``."""
    rles = mask_utils.frPyObjects([list(p) for p in polygons], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def encode_mask(mask: np.ndarray) -> dict:
    """``{"size": [h, w], "counts": str}``: the compressed RLE of a boolean (H, W) array."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}
