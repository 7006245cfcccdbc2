"""Media and region helpers shared by the benchmark readers: images, frames, COCO masks, boxes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..data.video import count_video_frames, read_frame_files, read_image, read_video
from ..utils.layout import spread_frames

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno} ({err.msg})") from err


class DegenerateBoxError(ValueError):
    """A box of zero (or negative) width or height."""


def xywh_to_xyxy(box: Any, where: str) -> list[float]:
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        raise ValueError(f"{where}: a box must be 4 numbers [x, y, w, h], got {box!r}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise DegenerateBoxError(f"{where}: box {box!r} has no area")
    return [x, y, x + w, y + h]


def decode_segmentation(seg: Any, height: int, width: int, where: str, *, allow_empty: bool = False) -> np.ndarray:
    """A COCO segmentation (polygons, RLE with list or string counts) as a bool (H, W) mask; an
    empty mask is an error unless ``allow_empty``."""
    try:
        if isinstance(seg, list):
            if not seg or not all(isinstance(p, list) and len(p) >= 6 for p in seg):
                raise ValueError("polygons must be lists of at least 3 (x, y) pairs")
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            rle = mask_utils.frPyObjects(seg, *seg["size"]) if isinstance(seg["counts"], list) else dict(seg)
            if isinstance(rle.get("counts"), str):
                rle["counts"] = rle["counts"].encode("ascii")
        else:
            raise ValueError(f"expected polygons or an RLE with counts and size, got {type(seg).__name__}")
        mask = mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: bad segmentation ({err})") from err
    if mask.ndim == 3:
        mask = mask.any(axis=2)
    if not allow_empty and not mask.any():
        raise ValueError(f"{where}: the segmentation is empty")
    return mask


def region_prompt(*, box_xyxy: list[float] | None = None, mask: np.ndarray | None = None) -> dict:
    """A predictor region: the mask when given, else the box."""
    if mask is not None:
        return {"mask": mask}
    if box_xyxy is None:
        raise ValueError("a region needs a box or a mask")
    return {"box": box_xyxy}


def load_image(root: str | Path, name: str) -> np.ndarray:
    path = Path(root) / name
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    return read_image(str(path))


def frame_files(folder: str | Path) -> list[str]:
    folder = Path(folder)
    files = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"frame folder {folder} has no images")
    return files


def load_clip(video: str | Path | Sequence[str], start: int, end: int | None, track_frames: int) -> np.ndarray:
    """The frames SAM 2 tracks of frames ``start..end`` (inclusive; ``end`` None = the last) of a video
    file, a frame folder or a list of frame files: all of them (``track_frames`` 0), or
    ``track_frames`` spread evenly with ``start`` and ``end`` kept (:func:`spread_frames`). The
    predictor then gives the LLM the model's ``video_num_frames`` of them."""
    files: list[str] | None = None
    if isinstance(video, (list, tuple)):
        files = [str(f) for f in video]
    elif Path(video).is_dir():
        files = frame_files(video)
    elif not Path(video).is_file():
        raise FileNotFoundError(f"video {video} does not exist")
    total = len(files) if files is not None else count_video_frames(str(video))
    end = total - 1 if end is None else min(end, total - 1)
    if not 0 <= start <= end:
        raise ValueError(f"video {video}: frames {start}..{end} are not inside its {total} frames")
    indices = spread_frames(start, end, track_frames)
    if files is not None:
        return read_frame_files(files, indices)
    return read_video(str(video), indices)
