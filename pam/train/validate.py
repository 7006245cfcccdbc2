"""Validation during training: the token-mean loss on the data config's ``val`` split.

The loop asks :meth:`Validator.should_validate` after every optimiser step, before the hooks run,
so the checkpoint and the metrics line of that step carry the validation metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.sampler import RegionSampler
from .data import make_loader
from .distributed import DistInfo, all_reduce_sum


class Validator:
    """``every``: steps between validations (0: only at each stage's end); ``max_batches``: cap on
    batches per rank (0: the whole split). :meth:`start_stage` builds the stage's loader."""

    def __init__(
        self,
        dataset,
        *,
        every: int,
        max_batches: int,
        micro_batch_size: int,
        seed: int,
        dist: DistInfo,
        loader_options: dict,
    ):
        self.dataset = dataset
        self.every, self.max_batches = every, max_batches
        self.micro_batch_size, self.seed = micro_batch_size, seed
        self.dist = dist
        self.loader_options = loader_options
        self.loader = None

    def start_stage(self, collate) -> None:
        if self.dataset is None:
            self.loader = None
            return
        sampler = RegionSampler(self.dataset, shuffle=False, rank=self.dist.rank, world_size=self.dist.world_size)
        self.loader = make_loader(
            self.dataset, sampler, collate, batch_size=self.micro_batch_size, seed=self.seed, **self.loader_options
        )

    def end_stage(self) -> None:
        self.loader = None

    def should_validate(self, stage_step: int, max_steps: int) -> bool:
        """True after step ``stage_step`` of a stage of ``max_steps``: every ``every`` steps and at the end."""
        if self.loader is None:
            return False
        return bool(self.every and stage_step % self.every == 0) or stage_step == max_steps

    @torch.no_grad()
    def validate(self, model, *, autocast, to_device: Callable) -> dict:
        """``{"val/loss"}``: the mean over every label token of the split, over all ranks."""
        model.eval()
        total, tokens = 0.0, 0
        for i, batch in enumerate(self.loader):
            if self.max_batches and i >= self.max_batches:
                break
            with autocast():
                out = model(**to_device(batch))
            total += float(out.loss_sum)
            tokens += int(out.num_tokens)
        model.train()
        return {"val/loss": all_reduce_sum(total, self.dist) / max(all_reduce_sum(float(tokens), self.dist), 1.0)}
