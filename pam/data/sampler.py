"""A deterministic, resumable, DDP-aware sampler with optional length grouping.

Every rank computes the same global order for an epoch from ``(seed, epoch)`` and takes every
``world_size``-th index starting at its rank, so ranks see disjoint samples. With
``group_by_length``, the order is cut into mega-batches of ``batch_size * world_size *
group_size_multiplier`` indices that are sorted by the dataset's ``approx_lengths()``, then cut into
global batches whose order is shuffled: a batch holds samples of similar length.

``state_dict()`` is ``{"epoch", "consumed", "seed", "world_size"}`` with ``consumed`` counted over
all ranks; after ``load_state_dict`` the sampler yields exactly the indices that were still to come.
A state saved by another number of ranks keeps that epoch's order (``world_size`` is the one the
order was built for): the rest of it is dealt out over the new ranks, so within the epoch no sample
is seen twice or missed (the rest is padded by wrap-around to a multiple of the new world size when
it does not divide). The next epoch's order is built for the new world size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


def _dist_default(rank: int | None, world_size: int | None) -> tuple[int, int]:
    ready = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if ready else 1
    if rank is None:
        rank = dist.get_rank() if ready else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
    return rank, world_size


class RegionSampler(Sampler[int]):
    """Indices into ``dataset`` for one rank; call ``set_epoch`` before each epoch."""

    def __init__(
        self,
        dataset: Any,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        group_by_length: bool = False,
        batch_size: int = 1,
        group_size_multiplier: int = 50,
    ):
        self.dataset = dataset  # sized; set_epoch and approx_lengths are used when it has them
        self.shuffle = shuffle  # False: indices in order (evaluation)
        self.seed = int(seed)  # same on every rank
        self.rank, self.world_size = _dist_default(rank, world_size)
        self.drop_last = drop_last  # True: drop the tail that does not fill every rank; False: wrap around
        self.group_by_length = group_by_length  # batch samples of similar approx length together
        self.batch_size = int(batch_size)  # per-rank batch size (used for length grouping)
        self.group_size_multiplier = int(group_size_multiplier)  # global batches per sorted mega-batch
        if self.batch_size < 1 or self.group_size_multiplier < 1:
            raise ValueError("batch_size and group_size_multiplier must be >= 1")
        if group_by_length and not hasattr(dataset, "approx_lengths"):
            raise ValueError(
                f"group_by_length needs a dataset with approx_lengths(); {type(dataset).__name__} has none"
            )
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, consumed) restored by load_state_dict
        self._order_world: tuple[int, int] | None = (
            None  # (epoch, world size its order was built for), after a resume on another
        )
        self._base = 0  # global position this iteration started from
        self._yielded = 0  # indices this rank yielded in the current iteration

    # ------------------------------------------------------------------ epoch and order
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; the dataset gets it too. A position restored for this epoch is kept."""
        self.epoch = int(epoch)
        if self._resume is not None and self._resume[0] != self.epoch:
            self._resume = None
        if self._order_world is not None and self._order_world[0] != self.epoch:
            self._order_world = None
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    @property
    def order_world_size(self) -> int:
        """The world size this epoch's global order is built for (module docstring)."""
        return (
            self._order_world[1]
            if self._order_world is not None and self._order_world[0] == self.epoch
            else self.world_size
        )

    def total_size(self) -> int:
        """Length of the global order (a multiple of order_world_size)."""
        n, world = len(self.dataset), self.order_world_size
        return (n // world) * world if self.drop_last else math.ceil(n / world) * world

    def global_order(self, epoch: int | None = None) -> np.ndarray:
        """The order all ranks share for ``epoch`` (the dataset must already be set to that epoch)."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.group_by_length and n:
            lengths = np.asarray(self.dataset.approx_lengths())
            global_batch = self.batch_size * self.order_world_size
            mega = global_batch * self.group_size_multiplier
            chunks = [order[s : s + mega] for s in range(0, n, mega)]
            order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
            if self.shuffle:
                batches = [order[s : s + global_batch] for s in range(0, n, global_batch)]
                last = batches.pop() if len(batches[-1]) < global_batch else None
                batches = [batches[i] for i in rng.permutation(len(batches))] + ([last] if last is not None else [])
                order = np.concatenate(batches)
        total = self.total_size()
        if total <= n:
            return order[:total]
        pad = total - n
        return np.concatenate([order, np.resize(order, pad)]) if n else order

    # ------------------------------------------------------------------ iteration
    def _start(self) -> int:
        return self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0

    def __len__(self) -> int:
        remaining = max(self.total_size() - self._start(), 0)
        return math.ceil(remaining / self.world_size)  # padded to a multiple of world_size (module docstring)

    def __iter__(self):
        start = self._start()
        self._resume = None
        rest = self.global_order()[start:]
        pad = -len(rest) % self.world_size  # non-zero only after a resume on another world size
        if pad and len(rest):
            rest = np.concatenate([rest, np.resize(rest, pad)])
        self._base, self._yielded = start, 0
        for index in rest[self.rank :: self.world_size]:
            self._yielded += 1
            yield int(index)

    # ------------------------------------------------------------------ state
    def state_dict(self, consumed_samples: int | None = None) -> dict:
        """``{"epoch", "consumed", "seed", "world_size"}``.

        ``consumed_samples``: samples the training loop really used in this epoch, over all ranks.
        Pass it when a DataLoader prefetches, since the sampler's own count then runs ahead.
        """
        consumed = self._base + self._yielded * self.world_size if consumed_samples is None else int(consumed_samples)
        if self._resume is not None:  # restored but not iterated yet
            consumed = self._resume[1] if consumed_samples is None else consumed
        return {
            "epoch": self.epoch,
            "consumed": min(consumed, self.total_size()),
            "seed": self.seed,
            "world_size": self.order_world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``: the next iteration yields what the saved run had still to yield."""
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state was saved with seed {state['seed']}, this sampler has seed {self.seed}")
        consumed = int(state["consumed"])
        if consumed < 0:
            raise ValueError(f"sampler state has a negative consumed count {consumed}")
        self.set_epoch(int(state["epoch"]))
        saved_world = int(state.get("world_size", self.world_size))
        self._order_world = (self.epoch, saved_world) if saved_world != self.world_size else None
        self._resume = (self.epoch, consumed)
        self._base, self._yielded = consumed, 0
