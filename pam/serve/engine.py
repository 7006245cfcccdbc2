"""Where serving meets the predictor: loading, region requests in batches, video streaming.

The server and the demo call only ``Engine``, an adapter over
:class:`~pam.inference.predictor.PAMPredictor`: ``Engine.describe`` hands a batch of checked
:class:`~pam.inference.request.RegionRequest` s over one or more images to ONE
``PAMPredictor.generate`` call, which encodes each distinct image (by ``image_key``) once with
SAM 2 and decodes all regions in one batch, each stopping at its own ``max_new_tokens``. The engine
is not thread-safe; the server calls it from a single worker thread.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..api import build_pam, load_pam, read_model_config
from ..inference.events import BoundaryRule
from ..inference.generation import GenerationSettings
from ..inference.predictor import PAMPredictor
from ..inference.request import RegionRequest
from ..inference.results import RegionResult, StreamEvent
from ..processing.prompts import IMAGE_PLACEHOLDER

DEBUG_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "model" / "debug.yaml"
ONE_CALL = 1 << 20  # the predictor's batch size: the batcher sizes the batches, each is one model call


def debug_config():
    """configs/model/debug.yaml, composed as Hydra would (schema defaults, then the file)."""
    return read_model_config(DEBUG_CONFIG)


def random_debug_bundle(seed: int = 0, device: str = "cpu"):
    """The debug-size model with random weights (``pam serve`` / ``pam demo`` without a checkpoint)."""
    torch.manual_seed(seed)
    bundle = build_pam(debug_config())
    bundle.model.to(device)
    return bundle


class Engine:
    def __init__(self, bundle, *, max_new_tokens: int = 128, model_name: str = "pam", random_weights: bool = False):
        # greedy unless a request asks for sampling (its temperature/top_p override per batch); no seed
        settings = dataclasses.replace(
            GenerationSettings.greedy(max_new_tokens), seed=None, source="server default (greedy)"
        )
        # fast tokenizers reset their padding/truncation state on every call, which is not safe
        # from two threads at once: the request handlers and the model thread both tokenize
        self._tokenizer_lock = threading.Lock()
        self.predictor = PAMPredictor(
            bundle, generation=settings, batch_size=ONE_CALL, tokenizer_lock=self._tokenizer_lock
        )
        self.processor = bundle.processor
        self.max_new_tokens = max_new_tokens
        self.model_name = model_name
        self.random_weights = random_weights

    @classmethod
    def load(cls, checkpoint: str | None, *, device: str = "cpu", max_new_tokens: int = 128) -> Engine:
        """A checkpoint folder through :func:`pam.api.load_pam`, or (``None``) the random debug model."""
        bundle = load_pam(checkpoint, device=device) if checkpoint is not None else random_debug_bundle(device=device)
        name = Path(checkpoint).name if checkpoint else "pam-debug-random"
        return cls(bundle, max_new_tokens=max_new_tokens, model_name=name, random_weights=checkpoint is None)

    @property
    def model(self):
        return self.predictor.model

    @property
    def image_placeholder(self) -> str:
        return IMAGE_PLACEHOLDER

    def prompt_length(self, user_prompt: str) -> int:
        """Tokens of one image region's generation prompt (visual tokens included)."""
        with self._tokenizer_lock:
            tok = self.processor.tokenize(
                [{"role": "user", "content": user_prompt}], num_frames=None, add_generation_prompt=True
            )
        return len(tok["input_ids"])

    @property
    def max_length(self) -> int:
        return self.processor.config.max_length

    # ----- images --------------------------------------------------------------------------------
    def describe(self, requests: list[RegionRequest], sampling: dict | None = None) -> list[RegionResult]:
        """All checked ``requests`` in one model call: one SAM 2 encode per distinct image, one
        batched generate; ``sampling`` overrides the greedy settings (temperature, top_p)."""
        generation = dataclasses.replace(self.predictor.generation, **sampling) if sampling else None
        return self.predictor.generate(requests, generation=generation, checked=True)

    # ----- video ---------------------------------------------------------------------------------
    @torch.no_grad()
    def stream_video(
        self, frames: np.ndarray, region: dict, *, segment_length: int | None = 16, language: str = "en"
    ) -> Iterator[StreamEvent]:
        """Yield each captioned event as soon as it is done (``PAMPredictor.stream``: one SAM 2
        tracking state over the clip, the previous caption in each prompt). ``segment_length``
        cuts fixed windows; ``None`` uses the predictor's automatic event boundaries."""
        if segment_length is not None and segment_length < 1:
            raise ValueError("segment_length must be >= 1")
        rule = (
            None
            if segment_length is None
            else BoundaryRule(mode="fixed", min_event_frames=1, max_event_frames=int(segment_length))
        )
        yield from self.predictor.stream(np.asarray(frames), region, language=language, boundaries=rule)
