"""Process-group set-up from launcher environment variables (torchrun, deepspeed, srun)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(engine: str, timeout_s: float = 600.0) -> DistInfo:
    """Initialise torch.distributed when launched with several processes (or for DeepSpeed).

    GPU runs use NCCL on ``cuda:LOCAL_RANK``; CPU runs use gloo. ``timeout_s`` bounds how long a
    collective waits for the other ranks (``trainer.dist_timeout_s``): when a node dies, the others
    fail after it instead of hanging.
    """
    from datetime import timedelta

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    needs_group = world > 1 or engine == "deepspeed"
    if needs_group and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29511")
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("LOCAL_RANK", str(local))
        os.environ.setdefault("WORLD_SIZE", str(world))
        if engine == "deepspeed":
            import deepspeed

            deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        else:
            dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def barrier(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not (info.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def all_reduce_sum(value: float, info: DistInfo) -> float:
    if not (info.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item())


def all_reduce_min(value: float, info: DistInfo) -> float:
    """The smallest ``value`` over the ranks (every rank gets it)."""
    return -all_reduce_max(-value, info)


def all_reduce_max(value: float, info: DistInfo) -> float:
    """The largest ``value`` over the ranks (every rank gets it)."""
    if not (info.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather_objects(obj, info: DistInfo) -> list:
    if not (info.distributed and dist.is_initialized()):
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shutdown(info: DistInfo, exit_process: bool = False, code: int = 0) -> None:
    """Tear down the process group. With ``exit_process`` in a multi-process CPU run, leave with
    ``os._exit(0)`` after flushing: gloo sometimes aborts in its destructors at interpreter exit
    ("terminate called without an active exception") after all work is done. ``code`` is the exit status."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if exit_process and info.distributed:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
