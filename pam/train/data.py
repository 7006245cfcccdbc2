"""The training data: datasets built from the data config, and the stateful batch stream a stage reads.

The loaders take the ``trainer.loader`` section (:class:`~pam.train.config.LoaderConfig`); its
``null`` options are resolved against the device by :func:`loader_options`.

Epoch seeding with worker processes: datasets draw prompts and tasks from ``(seed, epoch, index)``
and learn the epoch from ``set_epoch``, which the sampler calls in the main process. A persistent
worker keeps its own copy of the dataset, which that call never reaches. So the loader reads the
dataset through :class:`EpochIndexed` with indices from :class:`EpochTaggedSampler`: each index
travels as ``(epoch, index)`` and the process that reads the sample (a worker or the main process)
sets its copy to that epoch first. Nothing is shared between processes, and a sample is the same
whatever the number of workers or their lifetime. Loaders also get their own ``torch.Generator``, so
creating or resetting an iterator never draws from the global torch RNG (dropout, LoRA): a resumed
run's RNG stream matches an uninterrupted one however often workers were (re)started.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler

from ..utils.config import check
from ..utils.layout import TokenLayout
from .config import LoaderConfig

DEFAULT_PREFETCH_FACTOR = 2  # batches each worker loads ahead when trainer.loader.prefetch_factor is null


def has_split(data_cfg: DictConfig, split: str) -> bool:
    return split in data_cfg and data_cfg[split] is not None


def build_dataset(data_cfg: DictConfig, split: str, token_layout: TokenLayout | None = None):
    """``data_cfg[split]`` instantiated (a mixture of region datasets), told the model's token layout
    so that length grouping counts visual tokens."""
    from hydra.utils import instantiate

    if not has_split(data_cfg, split):
        raise KeyError(f"the data config has no `{split}` split")
    dataset = instantiate(data_cfg[split], _convert_="all")
    if token_layout is not None and hasattr(dataset, "set_token_layout"):
        dataset.set_token_layout(token_layout)
    return dataset


def loader_options(cfg: LoaderConfig, device: torch.device) -> dict:
    """DataLoader keywords from ``trainer.loader``, with the ``null`` defaults resolved for ``device``:
    pinned memory on CUDA only, persistent workers and ``prefetch_factor`` 2 when there are workers."""
    workers = cfg.num_workers
    check(
        not (cfg.pin_memory and device.type != "cuda"),
        "trainer.loader.pin_memory",
        f"is true but the device is {device.type}; "
        "pinned memory only helps copies to a CUDA device (use null or false)",
    )
    return {
        "num_workers": workers,
        "pin_memory": device.type == "cuda" if cfg.pin_memory is None else cfg.pin_memory,
        "persistent_workers": workers > 0 if cfg.persistent_workers is None else cfg.persistent_workers,
        "prefetch_factor": (DEFAULT_PREFETCH_FACTOR if cfg.prefetch_factor is None else cfg.prefetch_factor)
        if workers > 0
        else None,
    }


class EpochTaggedSampler(Sampler):
    """``sampler``'s indices as ``(epoch, index)``, the epoch being ``sampler.epoch`` when iteration starts."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        epoch = int(self.sampler.epoch)
        for index in self.sampler:
            yield epoch, index


class EpochIndexed(Dataset):
    """``dataset`` read with ``(epoch, index)`` keys: moves this process's copy to ``epoch`` when it differs."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._epoch: int | None = None  # for datasets with set_epoch but no `epoch` attribute

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch") and getattr(self.dataset, "epoch", self._epoch) != epoch:
            self.dataset.set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


def make_loader(
    cfg: LoaderConfig, dataset, sampler, collate, *, batch_size: int, seed: int, device: torch.device
) -> DataLoader:
    """A DataLoader over ``dataset`` in ``sampler``'s order with epoch-carrying indices (module docstring),
    with the options of ``cfg`` for ``device`` (:func:`loader_options`). The loader's own generator
    (seeded by ``seed``) gives the workers' base seed, so the global torch RNG is left alone."""
    options = loader_options(cfg, device)
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        EpochIndexed(dataset),
        batch_size=batch_size,
        sampler=EpochTaggedSampler(sampler),
        collate_fn=collate,
        drop_last=False,
        generator=generator,
        **options,
    )


class BatchStream:
    """Micro-batches of one stage, epoch after epoch, with a resumable position.

    ``state_dict`` is ``{"epoch", "consumed", "seed", "world_size"}``: ``consumed`` counts the
    samples the loop really took this epoch over all ranks (the DataLoader prefetches, so the
    sampler's own count runs ahead). ``on_new_epoch`` runs when an epoch ends (e.g. skip counters).
    One DataLoader serves every epoch, so persistent workers live as long as the stream (``close``
    ends them); ``loader`` is the ``trainer.loader`` section, resolved for ``device``.
    """

    def __init__(
        self,
        dataset,
        sampler,
        collate,
        loader: LoaderConfig | None = None,
        *,
        micro_batch_size: int,
        world_size: int,
        device: torch.device | None = None,
        on_new_epoch: Callable[[], None] | None = None,
    ):
        self.dataset, self.sampler, self.collate = dataset, sampler, collate
        self.micro_batch_size, self.world_size = micro_batch_size, world_size
        self.loader_cfg, self.device = loader or LoaderConfig(), device or torch.device("cpu")
        self.on_new_epoch = on_new_epoch
        self.epoch, self.consumed = 0, 0
        self._loader: DataLoader | None = None
        self._iterator = None
        self.sampler.set_epoch(0)

    @property
    def num_workers(self) -> int:
        return self.loader_cfg.num_workers

    def loader(self) -> DataLoader:
        if self._loader is None:
            self._loader = make_loader(
                self.loader_cfg,
                self.dataset,
                self.sampler,
                self.collate,
                batch_size=self.micro_batch_size,
                seed=self.sampler.seed,
                device=self.device,
            )
        return self._loader

    def start(self) -> None:
        """Start (or, with persistent workers, restart) iteration from the sampler's current position."""
        self._iterator = iter(self.loader())

    def next_batch(self):
        if self._iterator is None:
            self.start()
        batch = next(self._iterator, None)
        if batch is None:  # end of an epoch: next permutation
            self.epoch, self.consumed = self.epoch + 1, 0
            self.sampler.set_epoch(self.epoch)
            if self.on_new_epoch is not None:
                self.on_new_epoch()
            self.start()
            batch = next(self._iterator)
        self.consumed += len(batch.meta["ids"]) * self.world_size
        return batch

    def close(self) -> None:
        """Stop the worker processes now, when the stage is over (rather than whenever the loader is
        garbage-collected)."""
        shutdown = getattr(self._iterator, "_shutdown_workers", None)  # torch's multi-process iterator
        if shutdown is not None:
            shutdown()
        self._iterator = None
        self._loader = None

    def state_dict(self) -> dict:
        """``world_size``: the one this epoch's order was built for (pam/data/sampler.py), which differs
        from this run's after a resume on another number of ranks, until the epoch ends."""
        world = getattr(self.sampler, "order_world_size", self.world_size)
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.sampler.seed, "world_size": world}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self.sampler.load_state_dict(state)
