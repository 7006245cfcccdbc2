"""Validation during training: the token-mean loss on the data config's ``val`` split.

The loop asks :meth:`Validator.should_validate` after every optimiser step, before the hooks run,
so the checkpoint and the metrics line of that step carry the validation metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..data.sampler import RegionSampler
from .config import LoaderConfig, ValidationConfig
from .data import make_loader
from .distributed import DistInfo, all_reduce_sum


class Validator:
    """Validates as ``cfg`` (``trainer.validation``) says: every ``cfg.every`` steps (0: only at each
    stage's end), on at most ``cfg.max_batches`` batches per rank (0: the whole split), read with the
    ``loader`` options. :meth:`start_stage` builds the stage's loader."""

    def __init__(
        self,
        cfg: ValidationConfig,
        dataset,
        *,
        loader: LoaderConfig,
        micro_batch_size: int,
        seed: int,
        dist: DistInfo,
    ):
        self.cfg = cfg
        self.dataset = dataset
        self.micro_batch_size, self.seed = micro_batch_size, seed
        self.dist = dist
        self.loader_cfg = loader
        self.loader = None

    def start_stage(self, collate) -> None:
        if self.dataset is None:
            self.loader = None
            return
        sampler = RegionSampler(self.dataset, shuffle=False, rank=self.dist.rank, world_size=self.dist.world_size)
        self.loader = make_loader(
            self.loader_cfg,
            self.dataset,
            sampler,
            collate,
            batch_size=self.micro_batch_size,
            seed=self.seed,
            device=self.dist.device,
        )

    def end_stage(self) -> None:
        self.loader = None

    def should_validate(self, stage_step: int, max_steps: int) -> bool:
        """True after step ``stage_step`` of a stage of ``max_steps``: every ``cfg.every`` steps and at the end."""
        if self.loader is None:
            return False
        return bool(self.cfg.every and stage_step % self.cfg.every == 0) or stage_step == max_steps

    @torch.no_grad()
    def validate(self, model, *, autocast, to_device: Callable) -> dict:
        """``{"val/loss"}``: the mean over every label token of the split, over all ranks."""
        model.eval()
        total, tokens = 0.0, 0
        for i, batch in enumerate(self.loader):
            if self.cfg.max_batches and i >= self.cfg.max_batches:
                break
            with autocast():
                out = model(**to_device(batch))
            total += float(out.loss_sum)
            tokens += int(out.num_tokens)
        model.train()
        return {"val/loss": all_reduce_sum(total, self.dist) / max(all_reduce_sum(float(tokens), self.dist), 1.0)}
