"""A mixture of datasets with per-epoch sampling ratios or absolute counts.

Each component says how many of its samples an epoch holds: ``num_samples`` (an int, ``"all"`` or
``"P%"`` of its length; more than its length repeats it), or a ``weight`` that shares out
``epoch_size`` among all components. Which samples of a component an epoch holds is drawn from
``(seed, epoch, component)``: without replacement, and every sample once before any repeats. The
epoch's order is the sampler's business (:class:`pam.data.sampler.RegionSampler`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset


@dataclass
class MixtureComponent:
    name: str  # shown in logs and in each sample's meta["component"]
    dataset: Any  # a map-style dataset (RegionDataset or any with __len__ / __getitem__)
    weight: float | None = None  # share of epoch_size (all components use weights, or none does)
    num_samples: int | str | None = None  # samples per epoch: an int, "all" or "P%" (default "all")


def _component(value: MixtureComponent | Mapping, k: int) -> MixtureComponent:
    if isinstance(value, MixtureComponent):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"mixture component {k} must be a MixtureComponent or a mapping, got {type(value).__name__}")
    data = dict(value)
    allowed = {"name", "dataset", "weight", "num_samples"}
    unknown = sorted(set(data) - allowed)
    if unknown or "dataset" not in data:
        raise ValueError(
            f"mixture component {k}: fields must be among {sorted(allowed)} with `dataset` required, got {sorted(data)}"
        )
    data.setdefault("name", getattr(data["dataset"], "name", f"component{k}"))
    return MixtureComponent(**data)


def resolve_counts(
    lengths: Sequence[int],
    weights: Sequence[float | None],
    num_samples: Sequence[int | str | None],
    epoch_size: int | None,
    names: Sequence[str],
) -> list[int]:
    """Samples per epoch for each component (see the module docstring)."""
    use_weights = [w is not None for w in weights]
    if any(use_weights):
        if not all(use_weights) or any(n is not None for n in num_samples):
            raise ValueError("mixture: give every component a `weight`, or none; `weight` and `num_samples` do not mix")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {list(weights)}")
        total = sum(lengths) if epoch_size is None else int(epoch_size)
        exact = [total * w / sum(weights) for w in weights]
        counts = [math.floor(x) for x in exact]
        for k in sorted(range(len(exact)), key=lambda k: (counts[k] - exact[k], k))[: total - sum(counts)]:
            counts[k] += 1  # largest remainder, so the counts sum to epoch_size
    else:
        if epoch_size is not None:
            raise ValueError("mixture: `epoch_size` only applies with `weight`s")
        counts = []
        for name, n, spec in zip(names, lengths, num_samples):
            if spec is None or spec == "all":
                counts.append(n)
            elif isinstance(spec, str) and spec.endswith("%"):
                counts.append(math.ceil(float(spec[:-1]) * n / 100))
            elif isinstance(spec, int) and not isinstance(spec, bool) and spec >= 0:
                counts.append(spec)
            else:
                raise ValueError(
                    f"mixture component {name}: num_samples must be an int >= 0, 'all' or 'P%', got {spec!r}"
                )
    for name, n, c in zip(names, lengths, counts):
        if c > 0 and n == 0:
            raise ValueError(f"mixture component {name} is empty but is asked for {c} samples per epoch")
    return counts


class MixtureDataset(Dataset):
    """Datasets mixed by ratio or count; index ``i`` of an epoch maps to one component's sample."""

    def __init__(self, components: Sequence[MixtureComponent | Mapping], epoch_size: int | None = None, seed: int = 0):
        self.components = [_component(c, k) for k, c in enumerate(components)]
        if not self.components:
            raise ValueError("a mixture needs at least one component")
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"mixture component names must be unique, got {names}")
        self.seed = int(seed)
        self.lengths = [len(c.dataset) for c in self.components]
        self.counts = resolve_counts(
            self.lengths,
            [c.weight for c in self.components],
            [c.num_samples for c in self.components],
            epoch_size,
            names,
        )
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.epoch = 0
        self._local: list[np.ndarray] = []
        self._build_map()

    @property
    def name(self) -> str:
        return "+".join(c.name for c in self.components)

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.name}: {n}/{length}" for c, n, length in zip(self.components, self.counts, self.lengths))
        return f"MixtureDataset({parts}; epoch {self.epoch})"

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        """Redraw each component's share for ``epoch`` and pass the epoch on to the components."""
        self.epoch = int(epoch)
        for c in self.components:
            if hasattr(c.dataset, "set_epoch"):
                c.dataset.set_epoch(epoch)
        self._build_map()

    def _build_map(self) -> None:
        self._local = []
        for k, (n, c) in enumerate(zip(self.lengths, self.counts)):
            if c == n:
                self._local.append(np.arange(n, dtype=np.int64))
                continue
            rng = np.random.default_rng([self.seed, self.epoch, k])
            reps = math.ceil(c / n) if n else 0
            draws = np.concatenate([rng.permutation(n) for _ in range(reps)]) if reps else np.zeros(0, np.int64)
            self._local.append(draws[:c].astype(np.int64))

    def locate(self, index: int) -> tuple[int, int]:
        """(component number, index inside that component) of mixture index ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mixture of {len(self)} samples")
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return k, int(self._local[k][index - self.offsets[k]])

    def component_of(self, index: int) -> str:
        return self.components[self.locate(index)[0]].name

    def __getitem__(self, index: int) -> dict:
        k, j = self.locate(index)
        sample = self.components[k].dataset[j]
        if isinstance(sample, dict) and isinstance(sample.get("meta"), dict):
            sample["meta"]["component"] = self.components[k].name
        return sample

    def set_token_layout(self, layout) -> None:
        """Pass the model's visual-token layout to every component that takes one."""
        for c in self.components:
            if hasattr(c.dataset, "set_token_layout"):
                c.dataset.set_token_layout(layout)

    def approx_lengths(self) -> list[int]:
        """Per-index length estimates for this epoch (1 for components that cannot estimate)."""
        out = np.ones(len(self), dtype=np.int64)
        for k, c in enumerate(self.components):
            if hasattr(c.dataset, "approx_lengths") and self.counts[k]:
                lengths = np.asarray(c.dataset.approx_lengths(), dtype=np.int64)
                out[self.offsets[k] : self.offsets[k + 1]] = lengths[self._local[k]]
        return out.tolist()


def build_mixture(
    components: Mapping[str, Mapping | None],
    dataset_defaults: Mapping | None = None,
    epoch_size: int | None = None,
    seed: int = 0,
) -> MixtureDataset:
    """A mixture from a config mapping ``name -> {dataset: {...}, weight | num_samples}`` (the Hydra
    ``_target_`` of configs/data/*.yaml).

    Each ``dataset`` is the keyword arguments of :func:`pam.data.datasets.load_region_dataset` on top
    of ``dataset_defaults`` (shared by every component), or an already built dataset. A component
    set to ``None`` is left out, so an experiment can drop one.
    """
    from pam.data.datasets import load_region_dataset

    if not isinstance(components, Mapping):
        raise TypeError(f"mixture components must be a mapping name -> component, got {type(components).__name__}")
    built = []
    for name, spec in components.items():
        if spec is None:
            continue
        if not isinstance(spec, Mapping) or "dataset" not in spec:
            raise ValueError(f"mixture component {name}: expected a mapping with a `dataset`, got {spec!r}")
        unknown = sorted(set(spec) - {"dataset", "weight", "num_samples"})
        if unknown:
            raise ValueError(
                f"mixture component {name}: unknown field(s) {unknown}; expected dataset, weight, num_samples"
            )
        dataset = spec["dataset"]
        if isinstance(dataset, Mapping):
            dataset = load_region_dataset(**{**(dataset_defaults or {}), **dataset})
        built.append(
            MixtureComponent(name=name, dataset=dataset, weight=spec.get("weight"), num_samples=spec.get("num_samples"))
        )
    return MixtureDataset(built, epoch_size=epoch_size, seed=seed)
