"""The one check that a module is frozen (no trainable parameter, eval mode)."""

from __future__ import annotations

from torch import nn


def trainable_parameter_names(module: nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]


def assert_frozen(module: nn.Module, name: str, *, check_eval: bool = True) -> None:
    """Raise RuntimeError naming up to five trainable parameters of ``module`` (or its train mode)."""
    trainable = trainable_parameter_names(module)
    if trainable or (check_eval and module.training):
        raise RuntimeError(f"{name} must be frozen; trainable: {trainable[:5]}, training={module.training}")
