"""Message parts: text, and images as base64 data URLs (the chat-completions image shape)."""

from __future__ import annotations

import base64
import io
from typing import Any


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_to_data_url(image, fmt: str = "PNG") -> str:
    """A PIL image (or HxWx3 uint8 array) as ``data:image/<fmt>;base64,...``."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        import numpy as np

        image = Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_part(image, fmt: str = "PNG") -> dict[str, Any]:
    """An ``image_url`` content part carrying ``image`` inline."""
    return {"type": "image_url", "image_url": {"url": image_to_data_url(image, fmt)}}


def data_url_to_image(url: str):
    """Decode a ``data:image/...;base64,`` URL to an RGB PIL image."""
    from PIL import Image

    if not url.startswith("data:image/") or ";base64," not in url:
        raise ValueError(f"only base64 image data URLs are supported, got {url[:40]!r}...")
    raw = base64.b64decode(url.split(";base64,", 1)[1])
    return Image.open(io.BytesIO(raw)).convert("RGB")
