"""Typed inference inputs: regions (points, box, mask or a mix), images, tasks and languages.

Everything here is checked before any model work; each error names the region and carries the
field it is about (``InputError.field``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..processing.prompts import IMAGE_TASKS, LANGUAGES, Task


class InputError(ValueError):
    """Bad inference input. ``field`` names the offending field of the request (``box``,
    ``points[2]``, ``task``...), so a front-end can map it onto its own names (a JSON path)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class RegionError(InputError):
    """A region prompt is malformed or does not fit its image; the message names the region."""


class ImageInputError(ValueError):
    """An input image cannot be read or converted to RGB."""


class TaskError(InputError):
    """An unknown task or language."""


REGION_FIELDS = ("points", "labels", "box", "mask")


@dataclass
class Region:
    """One region prompt, in original-image pixels. Give any mix of points, a box and a mask.

    ``points`` (P, 2) xy with ``labels`` (P,) of 1 (positive) or 0 (negative; default all 1);
    ``box`` (4,) as x0, y0, x1, y1; ``mask`` (H, W) binary at the image's size. For a video the
    region is given on the first frame and SAM 2 tracks it.
    """

    points: Any = None
    labels: Any = None
    box: Any = None
    mask: Any = None

    @classmethod
    def from_any(cls, obj: Region | dict, name: str = "region") -> Region:
        """A Region from itself or a dict of ``points, labels (or point_labels), box, mask``."""
        if isinstance(obj, Region):
            return obj
        if not isinstance(obj, dict):
            raise RegionError(
                f"{name}: expected a Region or a dict with points/labels/box/mask, got {type(obj).__name__}"
            )
        unknown = sorted(set(obj) - {*REGION_FIELDS, "point_labels"})
        if unknown:
            raise RegionError(f"{name}: unknown fields {unknown}; use points, labels, box (xyxy) and mask", unknown[0])
        labels = obj.get("labels", obj.get("point_labels"))
        return cls(points=obj.get("points"), labels=labels, box=obj.get("box"), mask=obj.get("mask"))

    def checked(self, image_hw: tuple[int, int], name: str = "region", *, strict: bool = True) -> Region:
        """A validated copy with numpy arrays (float32 points/box, int64 labels, bool mask): the
        one region validator of every front-end. ``strict=False`` (benchmarks, whose boxes may
        leave the image and whose masks may be empty) keeps the format checks only."""
        h, w = image_hw
        if self.points is None and self.box is None and self.mask is None:
            raise RegionError(f"{name}: give points, a box or a mask (no region)")
        points = labels = box = mask = None
        if self.box is not None:
            box = _floats(self.box, name, "box").reshape(-1)
            if box.size != 4:
                raise RegionError(f"{name}: box must be [x0, y0, x1, y1] (4 numbers), got {box.size} values", "box")
            x0, y0, x1, y1 = box.tolist()
            if strict and (x1 <= x0 or y1 <= y0):
                raise RegionError(f"{name}: box {box.tolist()} needs x0 < x1 and y0 < y1", "box")
            if strict and (x0 < 0 or y0 < 0 or x1 > w or y1 > h):
                raise RegionError(f"{name}: box {box.tolist()} is outside the {w}x{h} image", "box")
        if self.points is not None:
            points = _floats(self.points, name, "points")
            if points.ndim == 1 and points.size == 2:
                points = points[None]
            if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
                raise RegionError(
                    f"{name}: points must be a non-empty list of x,y pairs, got shape {points.shape}", "points"
                )
            bad = [i for i, p in enumerate(points) if not (0 <= p[0] <= w and 0 <= p[1] <= h)]
            if strict and bad:
                raise RegionError(
                    f"{name}: point(s) {[points[i].tolist() for i in bad]} outside the {w}x{h} image",
                    f"points[{bad[0]}]",
                )
            labels = np.ones(len(points), np.int64) if self.labels is None else np.asarray(self.labels).reshape(-1)
            if labels.shape != (len(points),) or labels.dtype.kind not in "iuf" or not np.isin(labels, (0, 1)).all():
                raise RegionError(
                    f"{name}: labels must be {len(points)} values of 1 (positive) or 0 (negative), one per point, "
                    f"got {np.asarray(self.labels).tolist()}",
                    "labels",
                )
            labels = labels.astype(np.int64)
        elif self.labels is not None:
            raise RegionError(f"{name}: labels given without points", "labels")
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.shape != (h, w):
                raise RegionError(f"{name}: mask has shape {m.shape}, the image is {h}x{w} (H, W)", "mask")
            if m.dtype != bool and not np.isin(np.unique(m), (0, 1, 255)).all():
                raise RegionError(f"{name}: mask must be binary (bool, 0/1 or 0/255)", "mask")
            mask = m.astype(bool)
            if strict and not mask.any():
                raise RegionError(f"{name}: mask is empty (no pixel set)", "mask")
        return Region(points=points, labels=labels, box=box, mask=mask)

    def prompt_dict(self) -> dict:
        """The processor's prompt fields (``points``, ``point_labels``, ``box``, ``mask``)."""
        return {"points": self.points, "point_labels": self.labels, "box": self.box, "mask": self.mask}

    def to_json(self) -> dict:
        out = {}
        if self.points is not None:
            out["points"] = np.asarray(self.points).tolist()
            out["labels"] = np.asarray(self.labels).tolist()
        if self.box is not None:
            out["box"] = np.asarray(self.box).tolist()
        if self.mask is not None:
            out["mask_area"] = int(np.asarray(self.mask).sum())
        return out


def _floats(value, name: str, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise RegionError(f"{name}: {field} must be numbers ({e})", field) from None
    if arr.dtype.kind not in "iuf" or _holds_bool(value):  # not bools, strings or ragged lists
        raise RegionError(f"{name}: {field} must be numbers, got {np.asarray(value, dtype=object).tolist()!r}", field)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise RegionError(f"{name}: {field} has non-finite values", field)
    return arr


def _holds_bool(value) -> bool:
    """A (nested) list holding a bool, which numpy would read as 0/1 beside numbers."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_bool(v) for v in value)


def load_rgb(image, name: str = "image") -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from a path, a PIL image or an array (gray, RGB, RGBA)."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} not found")
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as e:
            raise ImageInputError(f"{name}: {path} is not a readable image ({e})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    try:
        arr = np.asarray(image)
    except Exception as e:  # noqa: BLE001  (any object numpy cannot take)
        raise ImageInputError(f"{name}: cannot convert {type(image).__name__} to an array ({e})") from None
    if arr.dtype == bool or arr.dtype.kind not in "ui" or arr.size == 0:
        raise ImageInputError(f"{name}: expected a uint8 image array, got dtype {arr.dtype} shape {arr.shape}")
    if arr.min() < 0 or arr.max() > 255:
        raise ImageInputError(f"{name}: pixel values must lie in 0..255")
    arr = arr.astype(np.uint8)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[..., :3])
    raise ImageInputError(f"{name}: expected (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")


def check_tasks(tasks, language: str, allowed: tuple[str, ...] = IMAGE_TASKS) -> list[str]:
    """The tasks, deduplicated in order, after checking each and the language."""
    if isinstance(tasks, str):
        tasks = [tasks]
    tasks = [t.value if isinstance(t, Task) else t for t in tasks]
    if not tasks:
        raise TaskError("give at least one task", "task")
    for t in tasks:
        if t not in allowed:
            raise TaskError(f"unknown task {t!r}; expected one of {list(allowed)}", "task")
    check_language(language)
    return list(dict.fromkeys(tasks))


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise TaskError(f"unknown language {language!r}; expected one of {list(LANGUAGES)}", "language")
    return language
