"""Parameter groups (learning rate and weight decay by name pattern) and warm-up schedules."""

from __future__ import annotations

import fnmatch
import math

import torch
from torch import nn

from .config import StageConfig


def param_groups(model: nn.Module, stage: StageConfig) -> list[dict]:
    """AdamW groups: one per (lr, decay) pair; each trainable parameter in exactly one."""
    groups: dict[tuple[float, float], list] = {}
    names: dict[tuple[float, float], list[str]] = {}
    for pattern in stage.lr_groups:
        if not any(fnmatch.fnmatchcase(n, pattern) for n, p in model.named_parameters() if p.requires_grad):
            raise ValueError(f"stage.lr_groups pattern {pattern!r} matches no trainable parameter")
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = next((float(v) for pat, v in stage.lr_groups.items() if fnmatch.fnmatchcase(name, pat)), stage.lr)
        decay = (
            0.0 if p.ndim < 2 or any(fnmatch.fnmatchcase(name, pat) for pat in stage.no_decay) else stage.weight_decay
        )
        groups.setdefault((lr, decay), []).append(p)
        names.setdefault((lr, decay), []).append(name)
    if not groups:
        raise ValueError("no trainable parameters: check stage.trainable")
    return [
        {"params": ps, "lr": lr, "weight_decay": wd, "initial_lr": lr, "names": names[(lr, wd)]}
        for (lr, wd), ps in groups.items()
    ]


def lr_lambda(stage: StageConfig):
    total = stage.max_steps
    warmup = int(round(stage.warmup_ratio * total))
    floor = stage.min_lr_ratio

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if stage.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if stage.schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def build_optimizer(model: nn.Module, stage: StageConfig):
    groups = param_groups(model, stage)
    for g in groups:
        g.pop("names")
    from hydra.utils import instantiate

    optimizer = instantiate(stage.optimizer, _convert_="all")(groups, lr=stage.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(stage))
    return optimizer, scheduler
