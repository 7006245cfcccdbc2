"""End to end: a generated video whose object turns mid-way streams two events split at the turn,
with SAM 2 (sam2's own video propagation, one tracking state) following the object.

The debug SAM 2 (here at 128 px) is random and does not track, so it is first taught to segment
the one bright shape per frame (``tests/helpers/tracking_sam2.py``, shared with the quick-start
tests); the rest is the real predictor: boundary detection on the tracked masks, captions with
the previous caption in the prompt."""

from __future__ import annotations

import numpy as np
import pytest

from pam.inference.events import BoundaryDetector, BoundaryRule, mask_centroid
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor

from .helpers import debug_config
from .helpers.tracking_sam2 import taught_sam2_checkpoint

SIZE, SIDE, SPEED, TURN = 128, 24, 4, 11


def turning_square(num_frames: int, turn: int) -> tuple[np.ndarray, np.ndarray]:
    """A red square moving right ``SPEED`` px per frame until frame ``turn``, then down; frames and
    the true masks."""
    rng = np.random.default_rng(1)
    frames = (rng.random((num_frames, SIZE, SIZE, 3)) * 60).astype(np.uint8)
    masks = np.zeros((num_frames, SIZE, SIZE), bool)
    for t in range(num_frames):
        x, y = 8 + SPEED * min(t, turn), 8 + SPEED * max(0, t - turn)
        frames[t, y : y + SIDE, x : x + SIDE] = (230, 40, 40)
        masks[t, y : y + SIDE, x : x + SIDE] = True
    return frames, masks


@pytest.fixture(scope="module")
def tracking_predictor():
    from pam.api import build_pam

    result, path = taught_sam2_checkpoint(SIZE)  # taught once per pytest process (~15 s at 128 px)
    assert result.iou > 0.8, f"the debug SAM 2 did not learn to segment the shapes (IoU {result.iou:.2f})"
    bundle = build_pam(debug_config(**{"sam2.image_size": SIZE, "sam2.checkpoint": str(path)}))
    bundle.model.eval()
    return PAMPredictor(bundle, generation=GenerationSettings.greedy(max_new_tokens=3))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.slow
def test_stream_splits_where_the_tracked_object_turns(tracking_predictor, monkeypatch):
    frames, truth = turning_square(24, TURN)
    sam2 = tracking_predictor.model.sam2
    states, prompts = [], []
    original_init = sam2.model.init_state_from_frames
    monkeypatch.setattr(
        sam2.model, "init_state_from_frames", lambda f, **k: states.append(len(f)) or original_init(f, **k)
    )
    original_tokenize = tracking_predictor.processor.tokenize
    monkeypatch.setattr(
        tracking_predictor.processor,
        "tokenize",
        lambda turns, **k: prompts.append(turns[0]["content"]) or original_tokenize(turns, **k),
    )

    events = list(tracking_predictor.stream(frames, {"box": [8, 8, 8 + SIDE, 8 + SIDE]}))

    assert states == [24]  # one SAM 2 tracking state for the whole clip
    streamed = np.concatenate([e.masks for e in events])
    ious = [_iou(streamed[t], truth[t]) for t in range(24)]
    off = [float(np.abs(mask_centroid(streamed[t]) - mask_centroid(truth[t])).max()) * SIZE for t in range(24)]
    assert min(ious) > 0.4, f"the tracked mask lost the object: per-frame IoU {np.round(ious, 2).tolist()}"
    assert max(off) < 4, f"tracked centroid off by {np.round(off, 1).tolist()} px"
    # the rule on the truth's own masks puts the boundary where the motion turns ...
    det = BoundaryDetector(BoundaryRule())
    for m in truth:
        det.push(m)
    assert [start for start, _ in det.pop() + det.finish()] == [TURN + 1]
    # ... and streaming, on SAM 2's tracked masks, finds it within a frame
    assert len(events) >= 2
    starts = [e.start_frame for e in events[1:]]
    assert any(abs(s - (TURN + 1)) <= 1 for s in starts), starts
    assert events[0].start_frame == 0 and events[-1].end_frame == 23
    assert all(a.end_frame + 1 == b.start_frame for a, b in zip(events, events[1:]))
    # each event after the first is captioned with the previous event's caption (an empty one reads "None")
    assert len(prompts) == len(events)
    for event, prompt in zip(events[:-1], prompts[1:]):
        assert prompt.endswith(f"Previous caption: {event.caption or None}")


@pytest.mark.slow
def test_stream_keeps_one_event_while_the_motion_is_steady(tracking_predictor):
    frames, truth = turning_square(16, turn=100)
    events = list(tracking_predictor.stream(frames, {"box": [8, 8, 8 + SIDE, 8 + SIDE]}))
    assert [(e.start_frame, e.end_frame) for e in events] == [(0, 15)]
    assert min(_iou(m, t) for m, t in zip(events[0].masks, truth)) > 0.4
