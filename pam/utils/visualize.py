"""Draw region masks, boxes and points over images."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def overlay(image: np.ndarray, mask: np.ndarray, *, color=(30, 144, 255), alpha: float = 0.5, box=None, points=None, labels=None, caption: str | None = None) -> Image.Image:
    """An RGB image with ``mask`` blended in, its outline, and the prompt drawn on top."""
    img = np.asarray(image, dtype=np.float32).copy()
    m = np.asarray(mask, dtype=bool)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match image {img.shape[:2]}")
    img[m] = (1 - alpha) * img[m] + alpha * np.asarray(color, dtype=np.float32)
    edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    img[edge] = color
    out = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    if box is not None:
        draw.rectangle([float(v) for v in box], outline=(0, 255, 0), width=2)
    if points is not None:
        for (x, y), lab in zip(np.asarray(points).reshape(-1, 2), labels if labels is not None else [1] * len(points)):
            c = (0, 255, 0) if int(lab) == 1 else (255, 0, 0)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=c, outline=(255, 255, 255))
    if caption:
        draw.rectangle([0, 0, out.width, 14], fill=(0, 0, 0))
        draw.text((2, 1), caption[:80], fill=(255, 255, 255))
    return out
