"""Where evaluation meets the model: benchmark inputs as predictor requests.

An adapter over :class:`~pam.inference.predictor.PAMPredictor`'s public methods: models are loaded
by :func:`pam.api.load_pam`, regions are checked by the predictor's one validator (format only:
benchmark boxes may touch or leave the image), prompts come from the task vocabulary.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from ..inference.generation import GenerationSettings
from ..inference.predictor import PAMPredictor
from ..inference.request import RegionRequest
from ..processing.prompts import Task
from .config import GenerationConfig

VIDEO_TASK = Task.VIDEO_CAPTION.value


def item_seed(seed: int, item_id) -> int:
    """The seed an item is generated with: independent of order, rank and batch."""
    return zlib.crc32(f"{seed}/{item_id}".encode()) & 0x7FFFFFFF


def predictor_settings(generation: GenerationConfig) -> GenerationSettings:
    """A benchmark's generation config as the predictor's settings (the runner seeds each item)."""
    sampling = generation.do_sample
    return GenerationSettings(
        do_sample=sampling,
        temperature=generation.temperature if sampling else None,
        top_p=generation.top_p if sampling else None,
        num_beams=generation.num_beams,
        max_new_tokens=generation.max_new_tokens,
        seed=None,
        source="benchmark generation config",
    )


class PAMGenerator:
    """Generates PAM answers for benchmark items with one benchmark's generation settings."""

    def __init__(self, bundle, generation: GenerationConfig):
        generation.validate()
        generation.check_llm_frames(bundle.model.config.video_num_frames)
        self.bundle = bundle
        self.generation = generation
        self.predictor = PAMPredictor(bundle, generation=predictor_settings(generation))

    def seed(self, item_id) -> None:
        torch.manual_seed(item_seed(self.generation.seed, item_id))

    def describe_regions(
        self, image: np.ndarray, regions: list[dict], *, text: str | None = None, task: str | None = None
    ) -> list[str]:
        """One answer per region of ``image``: the task prompt, or ``text`` as the question."""
        if text is None:
            task = task or self.generation.task
            if task is None:
                raise ValueError("describe_regions needs a task or a text prompt")
        image = np.asarray(image)
        language = self.generation.language
        requests = [RegionRequest(region=r, image=image, task=task, question=text, language=language) for r in regions]
        return [r.text for r in self.predictor.generate(requests, strict=False)]

    def describe_video(
        self, frames: np.ndarray, region: dict, *, text: str | None = None, history: str | None = None
    ) -> str:
        """Caption (``text`` None) or answer ``text`` about a region given on frame 0 of ``frames``:
        SAM 2 tracks every given frame, the LLM sees the model's ``video_num_frames`` of them."""
        request = RegionRequest(
            region=region, video=np.asarray(frames), question=text, history=history, language=self.generation.language
        )
        return self.predictor.generate([request], strict=False)[0].text

    def describe_events(self, frames: np.ndarray, region: dict, ends: list[int]) -> list[str]:
        """Streamed captions of consecutive events of ``frames`` (event k ends at position
        ``ends[k]``): one SAM 2 tracking state from the region on frame 0, each event captioned
        from its own frames with the previous caption as history (:meth:`PAMPredictor.stream`)."""
        return [
            e.caption
            for e in self.predictor.stream(
                np.asarray(frames), region, language=self.generation.language, ends=ends, strict=False
            )
        ]

    def generate_samples(self, samples: list[dict]):
        """RegionResults for dataset samples (their last assistant turn is dropped)."""
        prepared = []
        for s in samples:
            turns = list(s["turns"])
            if turns and turns[-1]["role"] == "assistant":
                turns = turns[:-1]
            prepared.append({**s, "turns": turns})
        return self.predictor.generate_samples(prepared)
