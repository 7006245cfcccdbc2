"""Draw region masks, contours, boxes, points and label text over images (shared by the CLI, the
training report and the demo)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    color=(30, 144, 255),
    alpha: float = 0.5,
    box=None,
    points=None,
    labels=None,
    caption: str | None = None,
) -> Image.Image:
    """An RGB image with ``mask`` blended in, its outline, and the prompt drawn on top."""
    img = np.asarray(image, dtype=np.float32).copy()
    m = np.asarray(mask, dtype=bool)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match image {img.shape[:2]}")
    img[m] = (1 - alpha) * img[m] + alpha * np.asarray(color, dtype=np.float32)
    img[contour(m)] = color
    out = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    if box is not None:
        draw.rectangle([float(v) for v in box], outline=(0, 255, 0), width=2)
    if points is not None:
        for (x, y), lab in zip(np.asarray(points).reshape(-1, 2), labels if labels is not None else [1] * len(points)):
            c = (0, 255, 0) if int(lab) == 1 else (255, 0, 0)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=c, outline=(255, 255, 255))
    if caption:
        draw_label(out, caption)
    return out


def contour(mask: np.ndarray) -> np.ndarray:
    """The mask's outline: mask pixels with a 4-neighbour outside the mask (or at the border)."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, constant_values=False)
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~interior


def wrap_text(text: str, width_chars: int, max_lines: int = 4) -> list[str]:
    """Greedy word wrap to ``width_chars`` per line, at most ``max_lines`` (the last ends in "...")."""
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width_chars:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    if line:
        lines.append(line)
    lines = [l[:width_chars] for l in lines]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, width_chars - 3)] + "..."
    return lines


def draw_label(image: Image.Image, text: str, *, max_lines: int = 4) -> Image.Image:
    """White text on a black band at the top of ``image`` (in place), wrapped to its width."""
    draw = ImageDraw.Draw(image)
    lines = wrap_text(text, max(8, image.width // 6), max_lines)
    draw.rectangle([0, 0, image.width, 12 * len(lines) + 2], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((2, 1 + 12 * i), line, fill=(255, 255, 255))
    return image


def annotate_frames(frames: np.ndarray, masks: np.ndarray, captions: list[str], **kwargs) -> list[Image.Image]:
    """One overlay per frame of a (T, H, W, 3) video with its (T, H, W) masks and caption."""
    if not len(frames) == len(masks) == len(captions):
        raise ValueError(f"{len(frames)} frames, {len(masks)} masks and {len(captions)} captions")
    return [overlay(f, m, caption=c, **kwargs) for f, m, c in zip(frames, masks, captions)]


def save_gif(images: list[Image.Image], path, fps: int = 8) -> None:
    """An animated GIF of ``images``."""
    if not images:
        raise ValueError("no frames to write")
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
