"""Visual prompts for a region: points, a box or a mask, drawn reproducibly.

PAM's recipe draws a point prompt half the time and a box prompt the other half; images get 1 to 4
points and video (first frame) 1 to 3. Points are drawn inside the region mask, as positives.
Without a mask, the given points (a subset of them) and the given box are used instead, as upstream
does for the released data. All randomness comes from a ``numpy.random.Generator`` that the dataset
seeds from ``(seed, epoch, index)``, so a sample is the same every time it is rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pam.data.schema import MaskAnnotation, RegionAnnotation
from pam.data.skips import (
    BAD_RLE,
    BOX_OUTSIDE_IMAGE,
    EMPTY_MASK,
    MASK_SIZE_MISMATCH,
    NO_PROMPT,
    POINTS_OUTSIDE_IMAGE,
    BadSample,
)
from pam.utils.config import build_config
from pam.utils.masks import mask_to_box

PROMPT_KINDS = ("points", "box", "mask")


@dataclass
class PromptSamplingConfig:
    point_weight: float = 0.5  # share of point prompts
    box_weight: float = 0.5  # share of box prompts
    mask_weight: float = 0.0  # share of mask prompts (SAM 2's dense mask input; upstream has none)
    min_points_image: int = 1  # fewest points on an image
    max_points_image: int = 4  # most points on an image
    min_points_video: int = 1  # fewest points on a video's first frame
    max_points_video: int = 3  # most points on a video's first frame
    box_jitter: float = 0.0  # each box side moves by up to this fraction of the box size (0 = off)

    def __post_init__(self) -> None:
        weights = (self.point_weight, self.box_weight, self.mask_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"prompt weights must be >= 0 with a positive sum, got point/box/mask = {weights}")
        for kind in ("image", "video"):
            lo, hi = getattr(self, f"min_points_{kind}"), getattr(self, f"max_points_{kind}")
            if not 1 <= lo <= hi:
                raise ValueError(f"need 1 <= min_points_{kind} <= max_points_{kind}, got {lo}, {hi}")
        if not 0.0 <= self.box_jitter < 1.0:
            raise ValueError(f"box_jitter must lie in [0, 1), got {self.box_jitter}")

    @classmethod
    def from_any(cls, value: PromptSamplingConfig | dict | None) -> PromptSamplingConfig:
        """From a dataclass, a plain or OmegaConf mapping (unknown keys are an error), or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return build_config(cls, dict(value.items()), "data.prompt.")


@dataclass
class FrameAnnotation:
    """A region's usable annotation on one frame, decoded and checked."""

    mask: np.ndarray | None  # bool (H, W)
    box: np.ndarray | None  # float32 (4,) xyxy, clipped to the image
    points: np.ndarray | None  # float32 (P, 2) xy
    point_labels: np.ndarray | None  # int64 (P,)


def make_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for sample ``index`` in ``epoch``: independent streams for every triple."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def decode_mask(mask: MaskAnnotation, height: int, width: int) -> np.ndarray:
    """Decode and check a mask against its image size; raises BadSample."""
    if mask.size is not None and mask.size != (height, width):
        raise BadSample(MASK_SIZE_MISMATCH, f"mask {mask.size[0]}x{mask.size[1]} on a {height}x{width} image")
    try:
        decoded = mask.decode(height, width)
    except Exception as exc:
        raise BadSample(BAD_RLE, str(exc)) from exc
    if not decoded.any():
        raise BadSample(EMPTY_MASK, "the mask has no foreground pixel")
    return decoded


def frame_annotation(region: RegionAnnotation, frame: int, height: int, width: int) -> FrameAnnotation:
    """Decode and check ``region``'s mask, box and points on ``frame``; raises BadSample."""
    mask = decode_mask(region.masks[frame], height, width) if frame in region.masks else None
    box = None
    if frame in region.boxes:
        x, y, w, h = region.boxes[frame]
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(width)), min(y + h, float(height))
        if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
            raise BadSample(
                BOX_OUTSIDE_IMAGE, f"box xywh {region.boxes[frame]} has no area inside the {width}x{height} image"
            )
        box = np.array([x0, y0, x1, y1], dtype=np.float32)
    points = labels = None
    if frame in region.points:
        points = np.asarray(region.points[frame], dtype=np.float32).reshape(-1, 2)
        inside = (points[:, 0] >= 0) & (points[:, 0] <= width) & (points[:, 1] >= 0) & (points[:, 1] <= height)
        if not inside.all():
            raise BadSample(
                POINTS_OUTSIDE_IMAGE, f"point {points[~inside][0].tolist()} lies outside the {width}x{height} image"
            )
        labels = np.asarray(region.point_labels[frame], dtype=np.int64)
    if mask is None and box is None and points is None:
        raise BadSample(NO_PROMPT, f"no mask, box or points on frame {frame}")
    return FrameAnnotation(mask=mask, box=box, points=points, point_labels=labels)


def available_kinds(ann: FrameAnnotation) -> list[str]:
    kinds = []
    if ann.mask is not None or ann.points is not None:
        kinds.append("points")
    if ann.mask is not None or ann.box is not None:
        kinds.append("box")
    if ann.mask is not None:
        kinds.append("mask")
    return kinds


def sample_prompt(
    rng: np.random.Generator,
    ann: FrameAnnotation,
    height: int,
    width: int,
    *,
    video: bool,
    config: PromptSamplingConfig,
) -> tuple[str, dict]:
    """Draw one prompt. Returns its kind and ``{"points", "point_labels", "box", "mask"}`` (unused: None).

    The kind follows the configured weights; a kind the annotation cannot supply (e.g. a mask prompt
    for a region given only by a box) is dropped and the others' weights are renormalised.
    """
    weights = {"points": config.point_weight, "box": config.box_weight, "mask": config.mask_weight}
    kinds = [k for k in available_kinds(ann) if weights[k] > 0]
    if not kinds:
        kinds = available_kinds(ann)  # only zero-weight kinds are possible: use them rather than fail
    p = np.array([weights[k] for k in kinds], dtype=np.float64)
    p = p / p.sum() if p.sum() > 0 else np.full(len(kinds), 1.0 / len(kinds))
    kind = kinds[int(rng.choice(len(kinds), p=p))]
    prompt: dict = {"points": None, "point_labels": None, "box": None, "mask": None}
    if kind == "points":
        lo, hi = (
            (config.min_points_video, config.max_points_video)
            if video
            else (config.min_points_image, config.max_points_image)
        )
        n = int(rng.integers(lo, hi + 1))
        if ann.mask is not None:
            ys, xs = np.nonzero(ann.mask)
            pick = rng.choice(len(xs), size=min(n, len(xs)), replace=False)
            prompt["points"] = np.stack([xs[pick] + 0.5, ys[pick] + 0.5], axis=1).astype(np.float32)
            prompt["point_labels"] = np.ones(len(pick), dtype=np.int64)
        else:
            assert ann.points is not None and ann.point_labels is not None
            pick = rng.choice(len(ann.points), size=min(n, len(ann.points)), replace=False)
            prompt["points"] = ann.points[pick].astype(np.float32)
            prompt["point_labels"] = ann.point_labels[pick].astype(np.int64)
    elif kind == "box":
        box = mask_to_box(ann.mask) if ann.mask is not None else ann.box
        assert box is not None
        prompt["box"] = jitter_box(rng, box, height, width, config.box_jitter)
    else:
        prompt["mask"] = ann.mask.copy()
    return kind, prompt


def jitter_box(rng: np.random.Generator, box: np.ndarray, height: int, width: int, amount: float) -> np.ndarray:
    """Move each side by up to ``amount`` of the box's width or height, clipped to the image."""
    box = np.asarray(box, dtype=np.float32).copy()
    if amount <= 0:
        return box
    w, h = box[2] - box[0], box[3] - box[1]
    shift = rng.uniform(-amount, amount, size=4) * np.array([w, h, w, h])
    out = np.clip(box + shift, 0, [width, height, width, height]).astype(np.float32)
    if out[2] - out[0] < 1 or out[3] - out[1] < 1:
        return box
    return out
