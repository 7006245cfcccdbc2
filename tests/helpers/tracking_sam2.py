"""A debug-size SAM 2 taught, in seconds, to segment and track one coloured shape through sam2's own
video code: the library's :mod:`pam.train.sam2_teach` (the quick-start's first step), applied in place
to a test's bundle."""

from __future__ import annotations

from pam.train.sam2_teach import SAM2TeachConfig, teach_sam2


def teach_to_track(sam2_model, processor, **options) -> float:
    """Teach ``sam2_model`` (e.g. ``bundle.model.sam2.model``) in place with
    :class:`~pam.train.sam2_teach.SAM2TeachConfig` ``options``; returns the mean IoU of the last 10
    training steps' masks with the truth."""
    return teach_sam2(sam2_model, processor.preprocess_video, SAM2TeachConfig(**options)).iou
