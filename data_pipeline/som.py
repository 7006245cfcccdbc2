"""Set-of-Mark overlays: each region drawn on the image as a translucent coloured mask with a contour
(or a box outline when it has no mask) and its number in a white tag, so a VLM can be asked about
region [k] of the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pam.data.prompt_sampling import frame_annotation
from pam.data.schema import RegionAnnotation

# distinct, saturated colours (RGB); region k uses PALETTE[(k - 1) % len]
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
)


@dataclass
class Mark:
    number: int  # the label drawn, 1-based
    mask: np.ndarray | None  # bool (H, W)
    box: np.ndarray | None  # xyxy pixels


def mark_of(region: RegionAnnotation, number: int, frame: int, height: int, width: int) -> Mark:
    """The region's mask and box on ``frame`` (raises pam.data.skips.BadSample if it has none there)."""
    ann = frame_annotation(region, frame, height, width)
    box = ann.box
    if box is None and ann.mask is not None and ann.mask.any():
        ys, xs = np.nonzero(ann.mask)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    if box is None and ann.points is not None:
        p = ann.points
        box = np.array([p[:, 0].min() - 2, p[:, 1].min() - 2, p[:, 0].max() + 2, p[:, 1].max() + 2], np.float32)
    return Mark(number=number, mask=ann.mask, box=box)


def contour(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its edge (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[0], shrunk[-1], shrunk[:, 0], shrunk[:, -1] = False, False, False, False
        inner = shrunk
    return mask & ~inner


def label_anchor(mark: Mark) -> tuple[float, float]:
    """Where the number goes: the mask pixel nearest the mask's centroid, else the box centre."""
    if mark.mask is not None and mark.mask.any():
        ys, xs = np.nonzero(mark.mask)
        cy, cx = ys.mean(), xs.mean()
        k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        return float(xs[k]), float(ys[k])
    x0, y0, x1, y1 = mark.box
    return float((x0 + x1) / 2), float((y0 + y1) / 2)


def render(image: np.ndarray, marks: list[Mark], *, alpha: float = 0.35, max_side: int | None = None) -> Image.Image:
    """``image`` (H, W, 3) uint8 with every mark drawn; resized so its longer side is ``max_side``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"render needs an (H, W, 3) image, got shape {image.shape}")
    out = image.astype(np.float32).copy()
    h, w = image.shape[:2]
    for mark in marks:
        colour = np.array(PALETTE[(mark.number - 1) % len(PALETTE)], np.float32)
        if mark.mask is not None:
            if mark.mask.shape != (h, w):
                raise ValueError(f"mark {mark.number}: mask {mark.mask.shape} does not match the image {h}x{w}")
            out[mark.mask] = (1 - alpha) * out[mark.mask] + alpha * colour
            out[contour(mark.mask, max(1, round(min(h, w) / 200)))] = colour
    canvas = Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    size = max(10, round(min(h, w) / 20))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    for mark in marks:
        colour = PALETTE[(mark.number - 1) % len(PALETTE)]
        if mark.mask is None and mark.box is not None:
            draw.rectangle([float(c) for c in mark.box], outline=colour, width=max(1, round(min(h, w) / 150)))
        if mark.mask is None and mark.box is None:
            continue
        x, y = label_anchor(mark)
        text = str(mark.number)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        x0 = min(max(x - tw / 2 - 2, 0), w - tw - 4)
        y0 = min(max(y - th / 2 - 2, 0), h - th - 4)
        draw.rectangle([x0, y0, x0 + tw + 4, y0 + th + 4], fill=(255, 255, 255), outline=colour)
        draw.text((x0 + 2 - left, y0 + 2 - top), text, fill=(0, 0, 0), font=font)
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        canvas = canvas.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return canvas
