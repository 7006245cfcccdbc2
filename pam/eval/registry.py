"""One interface for every benchmark, registered by name.

A benchmark reads its official annotation files into items (plain dicts with a unique ``"id"``),
turns an item into a prediction row with a :class:`~pam.eval.generation.PAMGenerator`, and scores
a predictions file against its items, without the model. Its typed config (generation settings
and its own fields) comes from ``configs/eval/<name>.yaml``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from .config import BenchmarkConfig, load_config

_REGISTRY: dict[str, type[Benchmark]] = {}


class Benchmark(ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[BenchmarkConfig]] = BenchmarkConfig
    needs_judge: ClassVar[bool] = False  # scoring asks a judge LLM
    needs_data_to_score: ClassVar[bool] = True  # False: prediction rows carry their references
    paper: ClassVar[dict[str, float]] = {}  # PAM-3B's published figures, same keys and scale as score()
    description: ClassVar[str] = ""

    def __init__(self, config: BenchmarkConfig | None = None, *, overrides: dict | None = None):
        self.config = config if config is not None else load_config(self.name, self.config_class, overrides)
        if self.config.name != self.name:
            raise ValueError(f"config name {self.config.name!r} does not match benchmark {self.name!r}")

    @abstractmethod
    def read_items(self, data: str | Path) -> list[dict]:
        """Items of the official annotation file(s) at ``data``, each with a unique ``"id"``."""

    @abstractmethod
    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        """One prediction row per item (``{"id": ..., "prediction": ...}`` and any extras)."""

    @abstractmethod
    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        """Scores of ``predictions`` on ``items``; ``judge`` is a ChatBackend for judged benchmarks."""

    def settings(self) -> dict[str, Any]:
        """What a results file records about how this benchmark was run."""
        import dataclasses

        return dataclasses.asdict(self.config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def register(cls: type[Benchmark]) -> type[Benchmark]:
    """Class decorator: make ``cls`` available as ``get_benchmark(cls.name)``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"benchmark {cls.name!r} is already registered by {_REGISTRY[cls.name].__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    from . import benchmarks  # noqa: F401  (registers every benchmark module)


def list_benchmarks() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def benchmark_class(name: str) -> type[Benchmark]:
    _load_all()
    if name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def get_benchmark(name: str, config: BenchmarkConfig | None = None, overrides: dict | None = None) -> Benchmark:
    """An instance of the registered benchmark with its config (YAML + overrides, or ``config``)."""
    return benchmark_class(name)(config, overrides=overrides)
