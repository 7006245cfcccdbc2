"""Collator: dataset samples (plain dicts) -> one PAM batch.

Images shared by several regions of a batch (same ``image_key``) are kept once, so SAM 2 encodes
each image once. Text is right-padded; padding and everything but the assistant replies carry
``IGNORE_INDEX`` labels. Samples longer than ``max_length`` lose their trailing text; a sample
whose visual tokens alone do not fit is an error naming it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch

from ..utils.layout import IGNORE_INDEX
from .processor import PAMProcessor

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "labels", "pixel_values", "region_image_index", "videos", "prompts")
GENERATION_INPUT_KEYS = ("input_ids", "attention_mask", "pixel_values", "region_image_index", "videos", "prompts")


class PAMBatch(Mapping):
    """A collated batch: ``model_inputs`` (the keywords of ``PAM.forward``, or of ``PAM.generate``
    for a generation collator) and ``meta`` (ids, per-sample metadata, ground-truth masks, skips,
    image keys, original sizes, ...). As a mapping it is ``model_inputs``, so ``model(**batch)``
    passes exactly the model's arguments."""

    def __init__(self, model_inputs: dict, meta: dict):
        self.model_inputs = model_inputs
        self.meta = meta

    def __getitem__(self, key: str):
        try:
            return self.model_inputs[key]
        except KeyError:
            where = " (it is metadata: batch.meta[...])" if key in self.meta else ""
            raise KeyError(f"{key!r} is not a model input{where}") from None

    def __setitem__(self, key: str, value) -> None:
        if key not in self.model_inputs:
            raise KeyError(f"{key!r} is not a model input of this batch; inputs are {sorted(self.model_inputs)}")
        self.model_inputs[key] = value

    def __iter__(self):
        return iter(self.model_inputs)

    def __len__(self) -> int:
        return len(self.model_inputs)

    def replace_inputs(self, **changes) -> PAMBatch:
        return PAMBatch({**self.model_inputs, **changes}, self.meta)

    def pin_memory(self) -> PAMBatch:
        """The batch with its model inputs' tensors in page-locked memory (the DataLoader's
        ``pin_memory`` protocol); ``meta`` stays as it is."""
        return PAMBatch(map_tensors(self.model_inputs, torch.Tensor.pin_memory), self.meta)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> PAMBatch:
        """The batch with its model inputs' tensors on ``device`` (``non_blocking`` copies overlap
        with compute when the source is pinned); ``meta`` stays on the host."""
        return PAMBatch(map_tensors(self.model_inputs, lambda t: t.to(device, non_blocking=non_blocking)), self.meta)


def map_tensors(obj, fn: Callable[[torch.Tensor], torch.Tensor]):
    """``obj`` with ``fn`` applied to every tensor inside dicts, lists, tuples and dataclasses
    (``RegionPrompt``, ``ImageFeatures``); anything else is returned as it is."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(
            obj, **{f.name: map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj) if f.init}
        )
    return obj


class PAMCollator:
    def __init__(self, processor: PAMProcessor, *, max_length: int | None = None, for_generation: bool = False):
        self.processor = processor
        self.max_length = max_length or processor.config.max_length
        self.for_generation = for_generation
        self.pad_id = processor.tokenizer.pad_token_id

    def __call__(self, samples: list[dict]) -> PAMBatch:
        if not samples:
            raise ValueError("cannot collate an empty list of samples")
        proc = self.processor
        images: dict[str, int] = {}
        pixel_values, region_image_index, videos, prompts, orig_sizes = [], [], [], [], []
        rows = []
        for s in samples:
            pixels = s["pixels"]
            is_video = s["media_type"] == "video"
            orig_hw = tuple(pixels.shape[1:3] if is_video else pixels.shape[:2])
            if is_video:
                region_image_index.append(-1)
                videos.append(proc.preprocess_video(pixels))
            else:
                key = s.get("image_key") or s["id"]
                if key not in images:
                    images[key] = len(pixel_values)
                    pixel_values.append(proc.preprocess_image(pixels))
                region_image_index.append(images[key])
                videos.append(None)
            prompts.append(proc.region_prompt(s["prompt"], orig_hw))
            orig_sizes.append(orig_hw)
            turns = s["turns"][:-1] if self.for_generation and s["turns"][-1]["role"] == "assistant" else s["turns"]
            tok = proc.tokenize(
                turns, num_frames=pixels.shape[0] if is_video else None, add_generation_prompt=self.for_generation
            )
            rows.append(self._truncate(tok, s["id"]))
        width = max(len(r["input_ids"]) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            attention_mask[i, :n] = 1
        everything = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values": torch.stack(pixel_values) if pixel_values else None,
            "region_image_index": torch.tensor(region_image_index, dtype=torch.long),
            "videos": videos,
            "prompts": prompts,
            "orig_sizes": orig_sizes,
            "image_keys": list(images),
            "ids": [s["id"] for s in samples],
            "meta": [s.get("meta", {}) for s in samples],
            "gt_masks": [s.get("gt_mask") for s in samples],
            "skipped": [sk for s in samples for sk in s.get("skipped", [])],
        }
        keys = GENERATION_INPUT_KEYS if self.for_generation else MODEL_INPUT_KEYS
        return PAMBatch({k: everything[k] for k in keys}, {k: v for k, v in everything.items() if k not in keys})

    def _truncate(self, tok: dict, sample_id: str) -> dict:
        ids, labels = tok["input_ids"], tok["labels"]
        if len(ids) <= self.max_length:
            return tok
        last_visual = max(i for i, t in enumerate(ids) if t == self.processor.image_token_id)
        if last_visual >= self.max_length or self.for_generation:
            raise ValueError(
                f"sample {sample_id}: {len(ids)} tokens do not fit max_length={self.max_length} "
                f"(visual tokens end at {last_visual + 1}); raise max_length or use fewer frames"
            )
        return {"input_ids": ids[: self.max_length], "labels": labels[: self.max_length]}
