"""What the predictor returns: per region the mask (array and COCO RLE), SAM 2's score, the raw
text per task and the fields parsed from it; per video event its frame range and caption."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

# the answer formats PAM is trained on (pam.data.turns.explain_answer)
_EXPLAIN = {
    "en": re.compile(r"^(?P<category>.*?)\.\s*Definition:\s*(?P<definition>.*?)\.?(?:\s*Function:\s*(?P<function>.*?)\.?)?$", re.S),
    "zh": re.compile(r"^(?P<category>.*?)。\s*定义：(?P<definition>.*?)。?(?:\s*功能：(?P<function>.*?)。?)?$", re.S),
}


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a binary (H, W) mask, JSON-ready (``counts`` as text)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def parse_fields(task: str, text: str, language: str = "en") -> dict:
    """Structured fields of one answer: ``category`` (category), ``category/definition/function``
    (explain; None where the text does not follow the trained format), ``caption`` (captions)."""
    text = text.strip()
    if task == "category":
        return {"category": text.rstrip(".。").strip()}
    if task == "explain":
        m = _EXPLAIN[language].match(text)
        if not m:
            return {"category": None, "definition": None, "function": None}
        return {k: (v.strip() if v else None) for k, v in m.groupdict().items()}
    return {"caption": text}


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

    @property
    def mask(self):  # the name of the earlier API
        return self.masks

    def to_json(self) -> dict:
        return {"start_frame": self.start_frame, "end_frame": self.end_frame, "caption": self.caption, "boundary_score": self.boundary_score}
