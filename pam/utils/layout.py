"""Token layout of a region and frame selection: what both the data pipeline and the model read.

Video frames are chosen twice, the same way in training and inference: :func:`spread_frames`
picks the frames SAM 2 tracks (all of a clip, or a number spread evenly), then
:func:`select_frames` picks, among the tracked ones, those the LLM sees.

A still image (or a video's first frame) gives ``[image tokens, image_newline, semantic tokens,
semT_newline]``; in a video every frame adds a ``frame_newline`` after that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100  # label of tokens the loss skips (prompt, padding, visual tokens)


def select_frames(num_frames: int, num_selected: int) -> list[int]:
    """Frame 0 plus ``num_selected - 1`` frames spread evenly over the rest (all frames if fewer)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if num_frames <= num_selected:
        return list(range(num_frames))
    if num_selected == 1:
        return [0]
    # as upstream: np.linspace(1, T - 1, n - 1) truncated to int
    return [0] + np.linspace(1, num_frames - 1, num_selected - 1).astype(int).tolist()


def spread_frames(first: int, last: int, max_frames: int | None) -> list[int]:
    """The frames SAM 2 tracks: ``first..last`` (inclusive), or ``max_frames`` of them spread
    evenly with the first and the last kept (``None`` or 0 = all).

    As upstream samples a clip (``np.linspace(0, n - 1, k, dtype=int)`` over the clip's ``n``
    frames, which floors): positions are floored, not rounded, counted from ``first``."""
    if last < first:
        raise ValueError(f"no frames between {first} and {last}")
    n = last - first + 1
    if not max_frames or n <= max_frames:
        return list(range(first, last + 1))
    if max_frames < 2:
        return [first]
    # n > max_frames, so the step is >= 1 and the floored positions are distinct and increasing
    return (first + np.linspace(0, n - 1, max_frames, dtype=int)).tolist()


@dataclass(frozen=True)
class TokenLayout:
    """Visual-token counts of one region, from the model config (``PAMConfig.token_layout()``)."""

    first_frame_image_tokens: int  # image tokens of a still image / first frame (0 when disabled)
    later_frame_image_tokens: int  # image tokens of each later frame
    semantic_tokens: int  # semantic tokens per frame
    video_num_frames: int  # frames given to the LLM at most

    def image_region_tokens(self) -> int:
        return self.first_frame_image_tokens + 1 + self.semantic_tokens + 1

    def video_region_tokens(self, num_frames: int) -> int:
        if num_frames < 1:
            raise ValueError("a video needs at least one frame")
        n = min(num_frames, self.video_num_frames)
        per_frame = 1 + self.semantic_tokens + 1 + 1
        return self.first_frame_image_tokens + (n - 1) * self.later_frame_image_tokens + n * per_frame

    def num_visual_tokens(self, num_frames: int | None) -> int:
        """Visual tokens for one region: an image when ``num_frames`` is None, else a video."""
        return self.image_region_tokens() if num_frames is None else self.video_region_tokens(num_frames)
