"""Strict state-dict loading with errors that list the offending keys."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class CheckpointMismatchError(RuntimeError):
    """Missing, unexpected or wrongly shaped keys between a checkpoint and a model."""


def _listing(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], *, source: str, allow_missing=()
) -> None:
    """Raise if ``given`` does not cover exactly the keys and shapes of ``expected``.

    ``allow_missing`` names keys that may be absent (each allowed exception is named by the caller).
    """
    missing = set(expected) - set(given) - set(allow_missing)
    unexpected = set(given) - set(expected)
    wrong = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if wrong:
        problems.append(f"shape mismatches ({len(wrong)}): {'; '.join(sorted(wrong)[:20])}")
    if problems:
        raise CheckpointMismatchError(f"{source}: checkpoint does not match the model: " + " | ".join(problems))


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, allow_missing=()
) -> None:
    check_state_dict(model.state_dict(), state_dict, source=source, allow_missing=allow_missing)
    model.load_state_dict(dict(state_dict), strict=not allow_missing)
