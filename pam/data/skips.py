"""Bad samples: the reasons a sample can be skipped, and a tracker that keeps a run honest.

A dataset that meets a bad sample (a corrupt image, an RLE that does not decode, an empty mask, ...)
raises :class:`BadSample` internally, moves on to the next index and lists what it skipped in the
returned sample's ``skipped`` field. The training loop feeds those lists to a :class:`SkipTracker`,
which counts them by reason and stops the run loudly when too large a share of the data is bad.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

logger = logging.getLogger("pam.data")

# Reason codes, one per kind of bad sample.
MISSING_MEDIA = "missing_media"  # the image, video or a frame file does not exist
CORRUPT_IMAGE = "corrupt_image"  # an image or frame file exists but does not decode
CORRUPT_VIDEO = "corrupt_video"  # a video file exists but does not decode, or has too few frames
BAD_RLE = "bad_rle"  # an RLE or polygon mask that does not decode
MASK_SIZE_MISMATCH = "mask_size_mismatch"  # a mask whose size differs from its image
EMPTY_MASK = "empty_mask"  # a mask with no foreground pixel
BOX_OUTSIDE_IMAGE = "box_outside_image"  # a box with no area inside the image
POINTS_OUTSIDE_IMAGE = "points_outside_image"  # prompt points that are not inside the image
NO_PROMPT = "no_prompt"  # no mask, box or point on the frame the prompt is needed for

REASONS = (
    MISSING_MEDIA,
    CORRUPT_IMAGE,
    CORRUPT_VIDEO,
    BAD_RLE,
    MASK_SIZE_MISMATCH,
    EMPTY_MASK,
    BOX_OUTSIDE_IMAGE,
    POINTS_OUTSIDE_IMAGE,
    NO_PROMPT,
)


class BadSample(Exception):
    """A sample that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown skip reason {reason!r}; expected one of {REASONS}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TooManyBadSamples(RuntimeError):
    """More of the data is bad than the configured ``max_bad_fraction`` allows."""


class NoGoodSample(RuntimeError):
    """A dataset tried its maximum number of indices and every one was bad."""


class SkipTracker:
    """Counts skipped samples by reason over a run and per epoch.

    ``update`` takes the ``skipped`` lists of a batch (one list of ``(sample_id, reason)`` per
    sample, as the datasets return them) and the number of good samples in it. ``check`` raises
    :class:`TooManyBadSamples` when skipped / seen exceeds ``max_bad_fraction``, once at least
    ``min_seen`` samples were seen, so that one bad record at the start does not end a run.
    """

    def __init__(self, max_bad_fraction: float = 0.05, min_seen: int = 100):
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must lie in [0, 1], got {max_bad_fraction}")
        if min_seen < 0:
            raise ValueError(f"min_seen must be >= 0, got {min_seen}")
        self.max_bad_fraction = max_bad_fraction  # allowed skipped / seen before `check` raises
        self.min_seen = min_seen  # `check` stays silent below this many seen samples
        self.num_seen = 0  # good samples delivered, whole run
        self.counts: Counter[str] = Counter()  # skips by reason, whole run
        self.epoch_counts: Counter[str] = Counter()  # skips by reason, current epoch
        self.epoch_seen = 0
        self.examples: dict[str, list[str]] = {}  # a few sample ids per reason, for the error message

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    def update(
        self, skipped: Iterable[Sequence[tuple[str, str]]] | Sequence[tuple[str, str]], num_samples: int | None = None
    ) -> None:
        """Add a batch: ``skipped`` is a list of per-sample skip lists (or one flat list of pairs).

        ``num_samples`` is the number of good samples in the batch; by default the number of
        per-sample lists given.
        """
        skipped = list(skipped)
        flat: list[tuple[str, str]] = []
        per_sample = not skipped or not _is_pair(skipped[0])
        if per_sample:
            for sample_skips in skipped:
                flat.extend(tuple(p) for p in sample_skips)  # type: ignore[misc]
        else:
            flat = [tuple(p) for p in skipped]  # type: ignore[misc]
        if num_samples is None:
            num_samples = len(skipped) if per_sample else 0
        self.num_seen += num_samples
        self.epoch_seen += num_samples
        for sample_id, reason in flat:
            self.counts[reason] += 1
            self.epoch_counts[reason] += 1
            ids = self.examples.setdefault(reason, [])
            if len(ids) < 3:
                ids.append(str(sample_id))

    def fraction(self, num_seen: int | None = None) -> float:
        seen = self.num_seen if num_seen is None else num_seen
        return self.num_skipped / max(seen, 1)

    def check(self, num_seen: int | None = None) -> None:
        """Raise :class:`TooManyBadSamples` if skipped / seen exceeds ``max_bad_fraction``."""
        seen = self.num_seen if num_seen is None else num_seen
        if seen < self.min_seen:
            return
        frac = self.fraction(seen)
        if frac > self.max_bad_fraction:
            detail = ", ".join(
                f"{r}: {n} (e.g. {', '.join(self.examples.get(r, []))})" for r, n in self.counts.most_common()
            )
            raise TooManyBadSamples(
                f"{self.num_skipped} bad samples skipped for {seen} seen ({frac:.1%}), above max_bad_fraction="
                f"{self.max_bad_fraction:.1%}. By reason: {detail}. Fix the data or raise data.max_bad_fraction."
            )

    def epoch_summary(self) -> str:
        """One line on this epoch's skips, by reason."""
        n = sum(self.epoch_counts.values())
        if n == 0:
            return f"data: no bad samples skipped in {self.epoch_seen} samples"
        reasons = ", ".join(f"{r}={c}" for r, c in sorted(self.epoch_counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return (
            f"data: skipped {n} bad samples for {self.epoch_seen} seen ({n / max(self.epoch_seen, 1):.2%}): {reasons}"
        )

    def reset_epoch(self) -> None:
        self.epoch_counts.clear()
        self.epoch_seen = 0

    def state_dict(self) -> dict:
        return {
            "num_seen": self.num_seen,
            "counts": dict(self.counts),
            "epoch_counts": dict(self.epoch_counts),
            "epoch_seen": self.epoch_seen,
        }

    def load_state_dict(self, state: dict) -> None:
        self.num_seen = int(state["num_seen"])
        self.counts = Counter(state["counts"])
        self.epoch_counts = Counter(state["epoch_counts"])
        self.epoch_seen = int(state["epoch_seen"])


def _is_pair(item) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item)
