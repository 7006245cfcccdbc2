"""Streaming event captions over one SAM 2 tracking state: an adapter over the predictor.

The whole clip is tracked once (:meth:`PAMPredictor.track`): SAM 2's memory runs across event
boundaries, unlike upstream's notebook, which re-prompts a fresh state per segment. As frames are
tracked, a :class:`~pam.inference.events.BoundaryDetector` watches the tracked mask; when it
confirms a boundary, the event just closed is captioned from the perceiver inputs of its frames
(its first frame in the first-frame layout, then ``video_num_frames - 1`` frames spread over the
rest, as for a clip; :meth:`PAMPredictor.clip_features`) with the previous event's caption in the
prompt (:meth:`PAMPredictor.generate_from_features`). Only the open event's frames are kept.
"""

from __future__ import annotations

import numpy as np
import torch

from ..processing.prompts import Task
from ..utils.layout import select_frames
from .events import BoundaryDetector, BoundaryRule
from .regions import Region
from .request import RegionRequest
from .results import StreamEvent


@torch.no_grad()
def stream_events(
    predictor,
    frames: np.ndarray,
    indices: list[int],
    region: Region,
    *,
    language: str = "en",
    rule: BoundaryRule | None = None,
    progress: bool = False,
    ends: list[int] | None = None,
    strict: bool = True,
):
    """Yield :class:`StreamEvent` s (frame numbers are ``indices``, i.e. the input video's).
    ``ends``: the last position in ``frames`` of each event, given (a benchmark's annotated events)
    instead of found by ``rule``; increasing, the last one ``len(frames) - 1``."""
    hw = tuple(frames.shape[1:3])
    if ends is not None:
        ends = [int(e) for e in ends]
        if not ends or any(b <= a for a, b in zip(ends, ends[1:])) or ends[0] < 0 or ends[-1] != len(frames) - 1:
            raise ValueError(
                f"event ends must increase from 0 and end at the last frame ({len(frames) - 1}), got {ends}"
            )
    given = list(ends) if ends is not None else None
    detector = BoundaryDetector(rule)
    keep_k = predictor.model.config.video_num_frames
    open_event: dict[int, object] = {}  # position -> TrackedFrame of the event being tracked
    state = {"start": 0, "history": None}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(frames), desc="tracking", unit="frame")

    def close(end: int, score: float | None) -> StreamEvent:
        start = state["start"]
        chosen = [open_event[start + k] for k in select_frames(end - start + 1, keep_k)]
        request = RegionRequest(
            region=region, task=Task.VIDEO_CAPTION.value, language=language, history=state["history"]
        )
        caption = predictor.generate_from_features(predictor.clip_features(chosen), len(chosen), request)
        masks = predictor.masks_from_logits([open_event[f] for f in range(start, end + 1)], hw)
        for f in range(start, end + 1):
            open_event.pop(f, None)
        state["start"], state["history"] = end + 1, caption
        return StreamEvent(
            start_frame=indices[start], end_frame=indices[end], caption=caption, masks=masks, boundary_score=score
        )

    for tracked in predictor.track(frames, region, strict=strict):
        idx = tracked.index
        open_event[idx] = tracked
        if bar is not None:
            bar.update(1)
        if given is not None:
            if idx == given[0]:
                given.pop(0)
                yield close(idx, None)
            continue
        detector.push((tracked.mask_logits[0, 0] > 0).cpu().numpy())
        for start, score in detector.pop():
            yield close(start - 1, score)
    if given is None:
        for start, score in detector.finish():
            yield close(start - 1, score)
    if state["start"] < len(frames):
        yield close(len(frames) - 1, None)
    if bar is not None:
        bar.close()
