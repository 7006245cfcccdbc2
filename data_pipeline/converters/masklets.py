"""Per-frame masks of video sources (SA-V, YouTube-VIS, VideoRefer), checked before they are written.

A frame's segmentation may be a compressed RLE (``counts`` a string), an uncompressed RLE
(``counts`` a list of run lengths) or a list of polygons, as pycocotools' ``frPyObjects`` accepts
them; polygons need the frame size. Each becomes the schema's compressed RLE. An RLE whose runs do
not cover ``height x width`` pixels is refused (pycocotools would decode it into an arbitrary mask).
"""

from __future__ import annotations

from typing import Any

from pycocotools import mask as mask_utils

from pam.data.masks import decode_rle

from ..records import ConvertError, number


def _size(rle: dict, where: str, name: str) -> tuple[int, int]:
    size = rle.get("size")
    if not (
        isinstance(size, list) and len(size) == 2 and all(number(s) and s > 0 and float(s).is_integer() for s in size)
    ):
        raise ConvertError(f"{where}: field `{name}.size` must be [height, width] (2 positive integers), got {size!r}")
    return int(size[0]), int(size[1])


def frame_mask(
    seg: Any, where: str, name: str, height: int | None = None, width: int | None = None
) -> tuple[dict, int, list[float]]:
    """``(rle, area, [x, y, w, h])`` of one frame's segmentation; ``rle`` is ``{"size", "counts": str}``.

    ``where`` names the file and entry, ``name`` the field (``masklet[3][1]``)."""
    if isinstance(seg, list):
        polys = [
            p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(number(c) for c in p)
        ]
        if len(polys) != len(seg):
            raise ConvertError(
                f"{where}: field `{name}` must be polygons [[x0, y0, x1, y1, ...], ...] of at least 3 points"
            )
        if height is None or width is None:
            raise ConvertError(f"{where}: field `{name}` is a polygon, which needs the frame `height` and `width`")
        coded = mask_utils.merge(mask_utils.frPyObjects([[float(c) for c in p] for p in polys], height, width))
    elif isinstance(seg, dict):
        if "counts" not in seg:
            raise ConvertError(f"{where}: field `{name}.counts` is missing")
        h, w = _size(seg, where, name)
        counts = seg["counts"]
        if isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            if any(c < 0 for c in counts) or sum(counts) != h * w:
                raise ConvertError(f"{where}: field `{name}.counts` runs cover {sum(counts)} pixels, not {h}x{w}")
            coded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        elif isinstance(counts, str):
            try:
                decode_rle([h, w], counts)
            except ValueError as err:
                raise ConvertError(
                    f"{where}: field `{name}.counts` is not a valid RLE of {h}x{w} pixels ({err})"
                ) from None
            coded = {"size": [h, w], "counts": counts.encode("ascii")}
        else:
            raise ConvertError(
                f"{where}: field `{name}.counts` must be a compressed RLE string or a list of run lengths, "
                f"got {type(counts).__name__}"
            )
    else:
        raise ConvertError(
            f"{where}: field `{name}` must be an RLE {{'size', 'counts'}} or polygons, got {type(seg).__name__}"
        )
    counts_out = coded["counts"]
    rle = {
        "size": [int(coded["size"][0]), int(coded["size"][1])],
        "counts": counts_out.decode("ascii") if isinstance(counts_out, bytes) else counts_out,
    }
    return rle, int(mask_utils.area(coded)), [float(c) for c in mask_utils.toBbox(coded)]
