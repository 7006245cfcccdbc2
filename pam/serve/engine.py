"""The one place where serving touches the model: loading, region description, video streaming.

The server and the demo call only ``Engine``; switching to a new predictor API means editing this
file alone. ``Engine.describe`` runs a batch of regions over one or more images as ONE model call:
the collator keeps each distinct image (by ``image_key``) once, so SAM 2 encodes it once, and all
regions are decoded in one batched ``generate``. The engine is not thread-safe; the server calls it
from a single worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..inference.events import BoundaryRule
from ..inference.generation import GenerationSettings
from ..inference.predictor import PAMPredictor
from ..inference.predictor import load_bundle as load_checkpoint
from ..inference.results import StreamEvent
from ..processing.prompts import Task, task_prompt

DEBUG_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "model" / "debug.yaml"


@dataclass
class RegionJob:
    """One region to describe: which image, the prompt (original pixels), the user turn."""

    image_key: str
    region: dict  # {"points", "point_labels", "box", "mask"}: numpy arrays or None
    user_prompt: str  # the full user turn, with the image placeholder
    max_new_tokens: int


@dataclass
class RegionAnswer:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end-of-turn token) or "length" (hit max_new_tokens)
    mask: np.ndarray  # bool (H, W) at the image's size
    score: float  # SAM 2's predicted IoU
    prompt_tokens: int


def debug_config():
    """configs/model/debug.yaml: its values over the PAMConfig defaults (what its Hydra
    ``defaults: [schema, _self_]`` composes to), read without Hydra."""
    import yaml

    from ..modeling.config import PAMConfig

    data = yaml.safe_load(DEBUG_CONFIG.read_text())
    data.pop("defaults", None)
    return PAMConfig.from_dict(data)


def load_bundle(checkpoint: str | None, device: str = "cpu", seed: int = 0):
    """A PAM bundle from a checkpoint folder (PAM checkpoint, export or released folder, through
    the predictor's loader), or (``None``) the debug-size model with random weights."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint, device=device)
    from ..api import build_pam

    torch.manual_seed(seed)
    bundle = build_pam(debug_config())
    bundle.model.to(device)
    return bundle


class Engine:
    def __init__(self, bundle, *, max_new_tokens: int = 128, model_name: str = "pam", random_weights: bool = False):
        # greedy unless a request asks for sampling (its temperature/top_p override per batch)
        self.predictor = PAMPredictor(bundle, generation=GenerationSettings.greedy(max_new_tokens))
        self.tokenizer = bundle.tokenizer
        self.processor = bundle.processor
        self.max_new_tokens = max_new_tokens
        self.model_name = model_name
        self.random_weights = random_weights
        # fast tokenizers reset their padding/truncation state on every call, which is not safe
        # from two threads at once: the request handlers and the model thread both tokenize
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, checkpoint: str | None, *, device: str = "cpu", max_new_tokens: int = 128) -> Engine:
        bundle = load_bundle(checkpoint, device=device)
        name = Path(checkpoint).name if checkpoint else "pam-debug-random"
        return cls(bundle, max_new_tokens=max_new_tokens, model_name=name, random_weights=checkpoint is None)

    @property
    def model(self):
        return self.predictor.model

    # ----- prompts -------------------------------------------------------------------------------
    @staticmethod
    def task_prompt(task: str, language: str = "en") -> str:
        return task_prompt(Task(task), language)

    @property
    def image_placeholder(self) -> str:
        return self.processor.config.image_token

    def prompt_length(self, user_prompt: str) -> int:
        """Tokens of one image region's generation prompt (visual tokens included)."""
        with self._tokenizer_lock:
            tok = self.processor.tokenize([{"role": "user", "content": user_prompt}], num_frames=None, add_generation_prompt=True)
        return len(tok["input_ids"])

    @property
    def max_length(self) -> int:
        return self.processor.config.max_length

    # ----- images --------------------------------------------------------------------------------
    @torch.no_grad()
    def describe(self, images: dict[str, np.ndarray], jobs: list[RegionJob], generation_kwargs: dict | None = None) -> list[RegionAnswer]:
        """All ``jobs`` in one model call: one SAM 2 encode per distinct image, one batched generate."""
        samples = [
            {
                "id": f"region{i}",
                "media_type": "image",
                "image_key": job.image_key,
                "pixels": images[job.image_key],
                "prompt": job.region,
                "turns": [{"role": "user", "content": job.user_prompt}],
            }
            for i, job in enumerate(jobs)
        ]
        with self._tokenizer_lock:
            batch = self.predictor.collate(samples)
        budget = max(job.max_new_tokens for job in jobs)
        # one generate over all jobs (the predictor's own _generate would split at its batch_size)
        with self.predictor.autocast():
            results = self.model.generate(
                **batch, tokenizer=self.tokenizer, max_new_tokens=budget, generation_kwargs={**self.predictor.generation_kwargs, **(generation_kwargs or {})}
            )
        prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        answers = []
        for job, result, n_prompt in zip(jobs, results, prompt_tokens):
            ids = result.token_ids
            # generate() cuts each row at its end-of-turn token, so a row shorter than this job's
            # limit stopped by itself; otherwise the limit cut it
            stopped = len(ids) < job.max_new_tokens
            ids = ids[: job.max_new_tokens]
            text = result.text if len(ids) == len(result.token_ids) else self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            answers.append(RegionAnswer(text, ids, "stop" if stopped else "length", result.mask.cpu().numpy(), float(result.score), int(n_prompt)))
        return answers

    # ----- video ---------------------------------------------------------------------------------
    @torch.no_grad()
    def stream_video(self, frames: np.ndarray, region: dict, *, segment_length: int | None = 16, language: str = "en") -> Iterator[StreamEvent]:
        """Yield each captioned event as soon as it is done (``PAMPredictor.stream``: one SAM 2
        tracking state over the clip, the previous caption in each prompt). ``segment_length``
        cuts fixed windows; ``None`` uses the predictor's automatic event boundaries."""
        if segment_length is not None and segment_length < 1:
            raise ValueError("segment_length must be >= 1")
        rule = None if segment_length is None else BoundaryRule(mode="fixed", min_event_frames=1, max_event_frames=int(segment_length))
        yield from self.predictor.stream(np.asarray(frames), region, language=language, boundaries=rule)
