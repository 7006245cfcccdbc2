"""The training data: datasets built from the data config, and the stateful batch stream a stage reads."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ..utils.layout import TokenLayout


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


class BatchStream:
    """Micro-batches of one stage, epoch after epoch, with a resumable position.

    ``state_dict`` is ``{"epoch", "consumed", "seed", "world_size"}``: ``consumed`` counts the
    samples the loop really took this epoch over all ranks (the DataLoader prefetches, so the
    sampler's own count runs ahead). ``on_new_epoch`` runs when an epoch ends (e.g. skip counters).
    """

    def __init__(self, dataset, sampler, collate, *, micro_batch_size: int, num_workers: int, world_size: int, on_new_epoch: Callable[[], None] | None = None):
        self.dataset, self.sampler, self.collate = dataset, sampler, collate
        self.micro_batch_size, self.num_workers, self.world_size = micro_batch_size, num_workers, world_size
        self.on_new_epoch = on_new_epoch
        self.epoch, self.consumed = 0, 0
        self._iterator = None
        self.sampler.set_epoch(0)

    def _loader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.micro_batch_size, sampler=self.sampler, collate_fn=self.collate, num_workers=self.num_workers, drop_last=False)

    def start(self) -> None:
        """Create the loader's iterator (this draws from the torch RNG, as a DataLoader does)."""
        self._iterator = iter(self._loader())

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

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.sampler.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        self.sampler.load_state_dict(state)
