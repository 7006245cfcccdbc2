"""What the predictor returns: per request the text, mask and score (:class:`RegionResult`); per
image region the mask (array and COCO RLE), SAM 2's score, the raw text per task and the fields
parsed from it; per video event its frame range and caption."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary (H, W) mask, JSON-ready (``counts`` as text)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


@dataclass
class RegionResult:
    """One request's answer: the text, its token ids, why decoding stopped, the mask and score."""

    text: str
    mask: np.ndarray  # bool, (H, W) for an image region, (T, H, W) for a video region
    score: float  # SAM 2's predicted IoU of the (first-frame) mask
    token_ids: list[int]
    finish_reason: str = "stop"  # "stop" (an end-of-sequence token) or "length" (max_new_tokens)


@dataclass
class RegionPrediction:
    """One image region's result."""

    mask: np.ndarray  # bool (H, W) at the original image size
    score: float  # SAM 2's predicted IoU of the mask
    texts: dict[str, str]  # task -> raw generated text
    fields: dict[str, str | None]  # parsed: category, definition, function, caption (as the tasks give)
    region: dict = field(default_factory=dict)  # the prompt, as JSON

    @property
    def rle(self) -> dict:
        return encode_rle(self.mask)

    def to_json(self) -> dict:
        return {
            "region": self.region,
            "score": self.score,
            "mask_rle": self.rle,
            "mask_area": int(self.mask.sum()),
            "texts": self.texts,
            "fields": self.fields,
        }


@dataclass
class VideoPrediction:
    """A tracked region's caption and per-frame masks."""

    text: str
    masks: np.ndarray  # bool (T, H, W) for every tracked frame
    frame_indices: list[int]  # indices (into the input video) of the tracked frames
    llm_frames: list[int]  # which of those went to the LLM
    score: float

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "score": self.score,
            "frame_indices": self.frame_indices,
            "llm_frames": self.llm_frames,
            "masks_rle": [encode_rle(m) for m in self.masks],
        }


@dataclass
class StreamEvent:
    """One event of a streamed video: frames ``start_frame..end_frame`` (inclusive) and its caption."""

    start_frame: int
    end_frame: int
    caption: str
    masks: np.ndarray  # bool (T_event, H, W)
    boundary_score: float | None = None  # the change-point score that closed the event (None: window end / video end)

    def to_json(self) -> dict:
        return {
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "caption": self.caption,
            "boundary_score": self.boundary_score,
        }
