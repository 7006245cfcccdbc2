"""High-level inference: many regions of one image, a tracked video region, streaming captions.

    bundle = pam.load_pam("checkpoints/pam-export")        # or pam.load_released_pam(...)
    predictor = PAMPredictor(bundle)
    results = predictor.describe_image(image, [{"box": [x0, y0, x1, y1]}, {"points": [[x, y]], "point_labels": [1]}])
    events = predictor.stream_video(frames, {"box": [...]}, segment_length=32)

Images are encoded by SAM 2 once for all their regions. Streaming cuts the video into segments;
each is captioned with the previous caption in the prompt, and the region enters the next segment
as the box of the mask SAM 2 tracked on the segment's last frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..modeling.pam import RegionResult
from ..processing.collator import PAMCollator
from ..processing.prompts import Task, task_prompt
from ..utils.masks import mask_to_box

__all__ = ["PAMPredictor", "mask_to_box"]


@dataclass
class StreamEvent:
    start_frame: int
    end_frame: int  # inclusive
    caption: str
    mask: torch.Tensor  # (T_segment, H, W) tracked masks of the segment


def _prompt_dict(prompt: dict) -> dict:
    out = {"points": None, "point_labels": None, "box": None, "mask": None}
    for key in out:
        if prompt.get(key) is not None:
            out[key] = np.asarray(prompt[key], dtype=bool if key == "mask" else (np.int64 if key == "point_labels" else np.float32))
    unknown = set(prompt) - set(out)
    if unknown:
        raise ValueError(f"unknown prompt fields {sorted(unknown)}; use points, point_labels, box (xyxy) and mask")
    return out


class PAMPredictor:
    def __init__(self, bundle, *, max_new_tokens: int = 128, generation_kwargs: dict | None = None):
        self.bundle = bundle
        self.model = bundle.model.eval()
        self.max_new_tokens = max_new_tokens
        self.generation_kwargs = generation_kwargs or {}
        self.collate = PAMCollator(bundle.processor, for_generation=True)

    def _generate(self, samples: list[dict]) -> list[RegionResult]:
        batch = self.collate(samples)
        return self.model.generate(
            **batch, tokenizer=self.bundle.tokenizer, max_new_tokens=self.max_new_tokens, generation_kwargs=self.generation_kwargs
        )

    @torch.no_grad()
    def describe_image(self, image: np.ndarray, regions: list[dict], task: str = "detailed_caption", language: str = "en") -> list[RegionResult]:
        """Text, mask and score for each region of one RGB ``image`` (one SAM 2 encode)."""
        image = np.asarray(image)
        user = task_prompt(task, language)
        samples = [
            {"id": f"region{i}", "media_type": "image", "image_key": "image", "pixels": image, "prompt": _prompt_dict(r), "turns": [{"role": "user", "content": user}]}
            for i, r in enumerate(regions)
        ]
        return self._generate(samples)

    @torch.no_grad()
    def describe_video(self, frames: np.ndarray, prompt: dict, language: str = "en", history: str | None = None) -> RegionResult:
        """Caption one region tracked from frame 0 through ``frames`` (T, H, W, 3)."""
        sample = {
            "id": "video",
            "media_type": "video",
            "image_key": "video",
            "pixels": np.asarray(frames),
            "prompt": _prompt_dict(prompt),
            "turns": [{"role": "user", "content": task_prompt(Task.VIDEO_CAPTION, language, history=history)}],
        }
        return self._generate([sample])[0]

    @torch.no_grad()
    def stream_video(self, frames: np.ndarray, prompt: dict, *, segment_length: int = 32, language: str = "en") -> list[StreamEvent]:
        """Caption a region segment after segment, each caption conditioned on the previous one."""
        frames = np.asarray(frames)
        if segment_length < 1:
            raise ValueError("segment_length must be >= 1")
        events: list[StreamEvent] = []
        current, history = dict(prompt), None
        for start in range(0, len(frames), segment_length):
            end = min(start + segment_length, len(frames))
            result = self.describe_video(frames[start:end], current, language=language, history=history)
            events.append(StreamEvent(start, end - 1, result.text, result.mask))
            history = result.text
            box = mask_to_box(result.mask[-1].numpy())
            if box is None:  # the region left the view: keep the last prompt
                continue
            current = {"box": box}
        return events
