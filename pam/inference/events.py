"""Event boundaries for streaming captions, found from the tracked mask's motion.

The rule (online, over SAM 2's own tracked masks, no extra model):

1. Per frame ``t``, the centroid ``c_t`` of the tracked low-resolution mask, in fractions of the
   frame's width and height. A frame where the mask is empty repeats the previous centroid.
2. Velocity ``v_t = c_t - c_{t-1}``.
3. Change score at frame ``t``: ``|| mean(v_{t+1..t+W}) - mean(v_{t-W+1..t}) ||``, the change of
   the mean velocity across ``t`` (``W`` = ``window``). For motion that changes at frame ``t``
   (constant velocity before, another after) the score peaks exactly at ``t``.
4. A boundary is the local peak of scores above ``threshold``; the new event starts at ``t + 1``.
   Events are at least ``min_event_frames`` long; one longer than ``max_event_frames`` is cut.

The score at ``t`` needs ``W`` frames after ``t``, so boundaries are known ``W + 1`` frames late.
With ``mode="fixed"`` events are simply ``max_event_frames`` long.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BoundaryRule:
    mode: str = "auto"  # "auto": motion change points; "fixed": windows of max_event_frames
    window: int = 3  # W: frames averaged on each side of a candidate boundary
    threshold: float = 0.02  # minimal change of mean velocity (frame fractions per frame)
    min_event_frames: int = 4
    max_event_frames: int = 64

    def validate(self) -> BoundaryRule:
        if self.mode not in ("auto", "fixed"):
            raise ValueError(f"boundaries must be 'auto' or 'fixed', got {self.mode!r}")
        if self.window < 1 or self.min_event_frames < 1 or self.max_event_frames < self.min_event_frames:
            raise ValueError("need window >= 1 and 1 <= min_event_frames <= max_event_frames")
        if self.threshold <= 0:
            raise ValueError("threshold must be > 0")
        return self


def mask_centroid(mask: np.ndarray) -> np.ndarray | None:
    """(x, y) centroid of a binary (H, W) mask in fractions of W and H; None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    return np.array([(xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h])


class BoundaryDetector:
    """Feed one mask per frame with :meth:`push`; read confirmed event starts with :meth:`pop`."""

    def __init__(self, rule: BoundaryRule | None = None):
        self.rule = (rule or BoundaryRule()).validate()
        self.centroids: list[np.ndarray] = []
        self.scores: dict[int, float] = {}
        self.event_start = 0
        self._candidate: tuple[int, float] | None = None
        self._ready: list[tuple[int, float | None]] = []

    def push(self, mask: np.ndarray) -> None:
        c = mask_centroid(np.asarray(mask, dtype=bool))
        if c is None:
            c = self.centroids[-1] if self.centroids else np.array([0.5, 0.5])
        self.centroids.append(c)
        n = len(self.centroids) - 1  # index of the newest frame
        r = self.rule
        if r.mode == "fixed":
            if n - self.event_start >= r.max_event_frames:
                self._confirm(n, None)
            return
        t = n - r.window
        if t >= r.window:
            self._consider(t, self._score(t))
        if n - self.event_start >= r.max_event_frames:
            self._candidate = None
            self._confirm(n, None)

    def _score(self, t: int) -> float:
        c = np.stack(self.centroids)
        w = self.rule.window
        before = (c[t] - c[t - w]) / w  # mean of v_{t-W+1..t}
        after = (c[t + w] - c[t]) / w  # mean of v_{t+1..t+W}
        score = float(np.linalg.norm(after - before))
        self.scores[t] = score
        return score

    def _consider(self, t: int, score: float) -> None:
        r = self.rule
        long_enough = (t + 1 - self.event_start) >= r.min_event_frames
        if self._candidate is not None and score <= self._candidate[1]:
            best_t, best_s = self._candidate
            self._candidate = None
            self._confirm(best_t + 1, best_s)
            return
        if score > r.threshold and long_enough:
            self._candidate = (t, score)

    def _confirm(self, start: int, score: float | None) -> None:
        self._ready.append((start, score))
        self.event_start = start

    def pop(self) -> list[tuple[int, float | None]]:
        """Event starts confirmed since the last call, with the score that found each."""
        out, self._ready = self._ready, []
        return out

    def finish(self) -> list[tuple[int, float | None]]:
        """At the end of the video: confirm a pending peak."""
        if self._candidate is not None:
            t, s = self._candidate
            self._candidate = None
            self._confirm(t + 1, s)
        return self.pop()
