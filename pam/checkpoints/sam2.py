"""Official SAM 2 / 2.1 checkpoints: ``.pt`` files holding ``{"model": state_dict}``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .strict import load_state_dict_strict


def load_sam2_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load an official SAM 2 checkpoint into ``model`` strictly (tensors only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM 2 checkpoint not found: {path}")
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or one that needs code execution to unpickle
        raise ValueError(f"{path}: not a loadable SAM 2 checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(blob, dict) or "model" not in blob:
        raise ValueError(
            f"{path}: expected a dict with key 'model' (the official SAM 2 format), got keys "
            f"{list(blob)[:5] if isinstance(blob, dict) else type(blob).__name__}"
        )
    load_state_dict_strict(model, blob["model"], source=str(path))


def save_sam2_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Write ``model`` in the official format (used to build test fixtures)."""
    torch.save({"model": model.state_dict()}, str(path))
