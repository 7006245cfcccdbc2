"""Binary-mask helpers shared by data, inference and training."""

from __future__ import annotations

import numpy as np


def mask_to_box(mask: np.ndarray) -> np.ndarray | None:
    """Tight xyxy box around a boolean mask in pixel edges (a 1-pixel mask gives a 1x1 box); None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)
