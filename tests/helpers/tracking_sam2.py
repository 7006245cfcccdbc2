"""A debug-size SAM 2 taught, in seconds, to segment and track one coloured shape through sam2's own
video code: the library's :mod:`pam.train.sam2_teach` (the quick-start's first step).

Teaching is the slow part of the tests that need a tracking SAM 2, so one pytest process teaches the
128 px debug SAM 2 once (:func:`taught_sam2_checkpoint`) and every test module loads that checkpoint
through ``model.sam2.checkpoint``, as the quick-start does."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from pam.train.sam2_teach import SAM2TeachConfig, TeachResult, teach_debug_sam2, teach_sam2

from . import debug_config

TAUGHT_SIZE = 128  # SAM 2 input side of the shared taught checkpoint


@cache
def taught_sam2_checkpoint(size: int = TAUGHT_SIZE) -> tuple[TeachResult, Path]:
    """The debug SAM 2 at ``size`` px taught with SAM2TeachConfig's defaults and saved as an official
    SAM 2 checkpoint; taught once per pytest process. Returns (the teaching result, the .pt path)."""
    folder = Path(tempfile.mkdtemp(prefix="pam-taught-sam2-"))
    path = folder / "sam2_taught.pt"
    result = teach_debug_sam2(debug_config(**{"sam2.image_size": size}), path, SAM2TeachConfig())
    return result, path


def teach_to_track(sam2_model, processor, **options) -> float:
    """Teach ``sam2_model`` (e.g. ``bundle.model.sam2.model``) in place with
    :class:`~pam.train.sam2_teach.SAM2TeachConfig` ``options``; returns the mean IoU of the last 10
    training steps' masks with the truth."""
    return teach_sam2(sam2_model, processor.preprocess_video, SAM2TeachConfig(**options)).iou
