"""PAM: Perceive Anything Model. The public API, imported lazily so that ``import pam`` stays light."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "PAMConfig": "pam.modeling.config",
    "PAMBundle": "pam.api",
    "build_pam": "pam.api",
    "load_pam": "pam.api",
    "load_released_pam": "pam.api",
    "PAMPredictor": "pam.inference.predictor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pam' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
