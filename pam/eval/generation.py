"""Where evaluation meets the model: load a checkpoint, turn benchmark inputs into predictor calls.

Every dependency of ``pam.eval`` on the model side (checkpoint loading, the predictor, the
collator's sample dict) lives in this file, so a change of those APIs is adapted here only.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from ..processing.prompts import Task
from .config import GenerationConfig


def load_checkpoint(folder: str | Path, device: str = "cpu"):
    """A PAM bundle (model, tokenizer, processor) from a checkpoint folder written by save/export."""
    from ..api import load_pam

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist")
    return load_pam(folder, device=device)


def item_seed(seed: int, item_id) -> int:
    """The seed an item is generated with: independent of order, rank and batch."""
    return zlib.crc32(f"{seed}/{item_id}".encode()) & 0x7FFFFFFF


def _full_prompt(region: dict) -> dict:
    out = {"points": None, "point_labels": None, "box": None, "mask": None}
    for key, value in region.items():
        if key not in out:
            raise ValueError(f"unknown region field {key!r}; use points, point_labels, box (xyxy) and mask")
        if value is not None:
            dtype = bool if key == "mask" else (np.int64 if key == "point_labels" else np.float32)
            out[key] = np.asarray(value, dtype=dtype)
    return out


class PAMGenerator:
    """Generates PAM answers for benchmark items with one benchmark's generation settings."""

    def __init__(self, bundle, generation: GenerationConfig):
        from ..inference.predictor import PAMPredictor

        generation.validate()
        generation.check_llm_frames(bundle.model.config.video_num_frames)
        self.bundle = bundle
        self.generation = generation
        self.predictor = PAMPredictor(bundle, max_new_tokens=generation.max_new_tokens, generation_kwargs=generation.hf_kwargs())

    def seed(self, item_id) -> None:
        torch.manual_seed(item_seed(self.generation.seed, item_id))

    def describe_regions(self, image: np.ndarray, regions: list[dict], *, text: str | None = None, task: str | None = None) -> list[str]:
        """One answer per region of ``image``: the task prompt, or ``text`` as the user turn."""
        if text is None:
            task = task or self.generation.task
            if task is None:
                raise ValueError("describe_regions needs a task or a text prompt")
            results = self.predictor.describe_image(np.asarray(image), regions, task=task, language=self.generation.language)
        else:
            results = self.predictor.describe_image(np.asarray(image), [_full_prompt(r) for r in regions], prompt=text)
        return [r.text for r in results]

    def describe_video(self, frames: np.ndarray, region: dict, *, text: str | None = None, history: str | None = None) -> str:
        """Caption (``text`` None) or answer ``text`` about a region given on frame 0 of ``frames``:
        SAM 2 tracks every given frame, the LLM sees the model's ``video_num_frames`` of them."""
        if text is None:
            return self.predictor.describe_video(np.asarray(frames), region, language=self.generation.language, history=history).text
        return self.predictor.describe_video(np.asarray(frames), _full_prompt(region), prompt=text).text

    def describe_events(self, frames: np.ndarray, region: dict, ends: list[int]) -> list[str]:
        """Streamed captions of consecutive events of ``frames`` (event k ends at position
        ``ends[k]``): one SAM 2 tracking state from the region on frame 0, each event captioned
        from its own frames with the previous caption as history (:func:`~pam.inference.streaming.stream_events`)."""
        from ..inference.regions import Region
        from ..inference.streaming import stream_events

        frames = np.asarray(frames)
        events = stream_events(self.predictor, frames, list(range(len(frames))), Region.from_any(region, "region"), language=self.generation.language, ends=ends)
        return [e.caption for e in events]

    def generate_samples(self, samples: list[dict]):
        """RegionResults for dataset samples (their last assistant turn is dropped)."""
        prepared = []
        for s in samples:
            turns = list(s["turns"])
            if turns and turns[-1]["role"] == "assistant":
                turns = turns[:-1]
            prepared.append({**s, "turns": turns})
        return self.predictor.generate_samples(prepared)


VIDEO_TASK = Task.VIDEO_CAPTION.value
