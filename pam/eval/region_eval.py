"""Compatibility for the trainer's end-of-run evaluation: both functions go through the
``quickstart`` benchmark of the registry (:mod:`pam.eval.benchmarks.quickstart`).

New code should call :func:`pam.eval.evaluate_dataset` directly.
"""

from __future__ import annotations

from pathlib import Path

from .predictions import read_predictions


def predict_dataset(bundle, dataset, out_path: str | Path, *, batch_size: int = 8, max_new_tokens: int | None = None, max_samples: int = 0) -> Path:
    """Generate for ``dataset`` (region samples) into ``out_path`` with the quickstart settings
    (``configs/eval/quickstart.yaml``; ``max_new_tokens`` None keeps the config's value)."""
    from .runner import predict_dataset_items

    overrides: dict = {"generation": {"batch_size": batch_size}}
    if max_new_tokens is not None:
        overrides["generation"]["max_new_tokens"] = max_new_tokens
    return predict_dataset_items(bundle, dataset, out_path, overrides=overrides, max_samples=max_samples)


def score_predictions(path: str | Path) -> dict[str, float]:
    """Scores of a quickstart predictions file."""
    from .registry import get_benchmark

    return get_benchmark("quickstart").score(read_predictions(path), None)
