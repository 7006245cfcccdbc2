"""Engines behind one small interface: a plain process or DDP, and DeepSpeed ZeRO.

``forward_backward(batch, scale)`` runs one micro-batch and back-propagates ``scale`` times its
summed token loss (scale = world size / label tokens in the global batch); ``step()`` ends an optimiser step and returns
the gradient norm. DeepSpeed handles accumulation boundaries itself, so its ``step`` only reads
the norm.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from .config import StageConfig, TrainerConfig
from .distributed import DistInfo
from .optim import build_optimizer


def build_engine(kind: str, model: nn.Module, stage: StageConfig, cfg: TrainerConfig, dist: DistInfo, accum: int):
    if kind == "deepspeed":
        return DeepSpeedEngine(model, stage, cfg, dist, accum)
    return TorchEngine(model, stage, cfg, dist, accum, ddp=(kind == "ddp"))


class TorchEngine:
    def __init__(self, model, stage, cfg, dist, accum, *, ddp: bool):
        self.model = model.to(dist.device)
        self.model.train()
        self.cfg, self.accum, self.dist = cfg, accum, dist
        self.optimizer, self.scheduler = build_optimizer(model, stage)
        self.module = model
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            # image-only batches leave the later-frame projection unused, hence find_unused_parameters
            self.module = DistributedDataParallel(
                model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None, find_unused_parameters=True
            )
        self.params = [p for p in model.parameters() if p.requires_grad]

    def autocast(self):
        if self.dist.device.type == "cuda" and self.cfg.precision in ("bf16", "fp16"):
            return torch.autocast("cuda", dtype=torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16)
        return contextlib.nullcontext()

    def no_sync(self, skip: bool):
        return self.module.no_sync() if skip and hasattr(self.module, "no_sync") else contextlib.nullcontext()

    def forward_backward(self, batch: dict, scale: float) -> float:
        """Backward of ``scale`` x the summed token loss; returns the summed token loss."""
        with self.autocast():
            out = self.module(**batch)
        loss_sum = out.loss_sum
        (loss_sum * scale).backward()
        return float(loss_sum.detach())

    def step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(
            self.params, self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def state_dict(self) -> dict:
        """Optimiser and schedule, whole on every rank (DDP replicates them), so any world size can load them."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def gathered_parameters(self):
        return contextlib.nullcontext()


class DeepSpeedEngine:
    skips_nonfinite_itself = True  # its ZeRO optimisers skip a step whose gradient norm is NaN/Inf (guards.py)

    def __init__(self, model, stage, cfg, dist, accum):
        import deepspeed

        from .deepspeed_config import resolve_deepspeed_config

        self.cfg, self.dist = cfg, dist
        ds_config = resolve_deepspeed_config(
            cfg.deepspeed_config,
            micro_batch=cfg.micro_batch_size,
            grad_accum=accum,
            world_size=dist.world_size,
            grad_clip=cfg.grad_clip,
            bf16=cfg.precision == "bf16",
            fp16=cfg.precision == "fp16",
        )
        # a torch optimiser avoids compiling DeepSpeed's fused Adam ops; CPU offload configs bring their own
        ds_config.setdefault("zero_allow_untested_optimizer", True)
        self.zero_stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
        optimizer, scheduler = build_optimizer(model, stage)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
        )
        self.model = model
        self.engine.train()

    def autocast(self):
        return contextlib.nullcontext()

    def no_sync(self, _skip: bool):
        return contextlib.nullcontext()

    def forward_backward(self, batch: dict, scale: float) -> float:
        out = self.engine(**batch)
        loss_sum = out.loss_sum.float()
        self.engine.backward(loss_sum * scale, scale_wrt_gas=False)
        self.engine.step()
        return float(loss_sum.detach())

    def step(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def step_applied(self) -> bool:
        """False when DeepSpeed's last optimiser step was skipped (a NaN/Inf gradient norm)."""
        return bool(self.engine.was_step_applied())

    def state_dict(self) -> dict:
        """The partitioning the shards were written with; the shards themselves: ``save_sharded``."""
        return {"zero_stage": self.zero_stage, "world_size": self.dist.world_size}

    def load_state_dict(self, state: dict) -> None:
        self._saved = dict(state)

    def load_sharded(self, folder: Path) -> None:
        """Optimiser, schedule and weights from ``folder/deepspeed``.

        Saved by as many ranks as now: DeepSpeed loads its own shards. Saved by another number of
        ranks: the shards are converted once (rank 0) into DeepSpeed's universal checkpoint, in
        ``checkpoints/.universal/`` beside the step folder (DeepSpeed's ``ds_to_universal``, ZeRO-2
        and ZeRO-3 alike), and every rank loads its new partition from it."""
        folder = Path(folder)
        ds_dir = folder / "deepspeed"
        tag = (ds_dir / "latest").read_text().strip()
        saved = getattr(self, "_saved", {})
        saved_world = int(saved.get("world_size", self.dist.world_size))
        if saved.get("zero_stage", self.zero_stage) != self.zero_stage:
            raise ValueError(
                f"{folder}: saved with ZeRO stage {saved['zero_stage']}, this run uses stage {self.zero_stage}"
            )
        if saved_world == self.dist.world_size:
            self.engine.load_checkpoint(str(ds_dir), tag=tag, load_module_strict=False)
            return
        universal = universal_checkpoint(folder, tag, self.dist)
        config = self.engine._config  # DeepSpeed reads this flag when loading; our saves stay the sharded kind
        config.load_universal_checkpoint = True
        try:
            self.engine.load_checkpoint(str(universal), tag=tag, load_module_strict=False)
        finally:
            config.load_universal_checkpoint = False

    def gathered_parameters(self):
        if self.zero_stage == 3:
            import deepspeed

            return deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None)
        return contextlib.nullcontext()

    def save_sharded(self, path: Path) -> None:
        """Optimiser and scheduler state, partitioned as DeepSpeed keeps it (all ranks write)."""
        from deepspeed.checkpoint.constants import (
            UNIVERSAL_CHECKPOINT_INFO,
            UNIVERSAL_CHECKPOINT_VERSION_KEY,
            UNIVERSAL_CHECKPOINT_VERSION_VALUE,
        )

        # the universal-checkpoint converter requires the client to declare this (load_sharded)
        info = {UNIVERSAL_CHECKPOINT_INFO: {UNIVERSAL_CHECKPOINT_VERSION_KEY: UNIVERSAL_CHECKPOINT_VERSION_VALUE}}
        self.engine.save_checkpoint(str(Path(path) / "deepspeed"), client_state=info)


def universal_checkpoint(folder: Path, tag: str, dist: DistInfo) -> Path:
    """``folder/deepspeed/<tag>`` converted to DeepSpeed's universal format (on rank 0, once per
    checkpoint: the cache name carries the manifest's hash); returns the folder to load from."""
    import hashlib
    import os
    import shutil
    import subprocess
    import sys

    from .distributed import barrier

    digest = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()[:12]
    target = folder.parent / ".universal" / f"{folder.name}-{digest}"
    if dist.is_main and not (target / "latest_universal").is_file():
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            sys.executable,
            "-m",
            "deepspeed.checkpoint.ds_to_universal",
            "--input_folder",
            str(folder / "deepspeed" / tag),
            "--output_folder",
            str(tmp / tag),
            "--num_extract_workers",
            "1",
            "--num_merge_workers",
            "1",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not (tmp / "latest_universal").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(
                f"{folder}: converting the DeepSpeed shards to a universal checkpoint failed:\n{proc.stderr[-3000:]}"
            )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    barrier(dist)
    return target
