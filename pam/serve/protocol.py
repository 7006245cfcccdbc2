"""Parse and validate OpenAI-style chat requests for region description.

A request is a chat completion whose last user message holds one ``image_url`` part (a base64
data URL, PNG or JPEG) and optional text. Regions come in a top-level ``"regions"`` list, each
``{"box": [x0, y0, x1, y1]}``, ``{"points": [[x, y], ...], "point_labels": [1, ...]}`` or
``{"mask": <COCO RLE>}`` (keys may be combined), in the image's pixels; without ``"regions"`` an
RGBA image's alpha channel (alpha > 0) is the region, as in Describe Anything.

The instruction: a ``"task"`` field (category, explain, short_caption, detailed_caption) wins; else
text equal to a task name or to a task's prompt wording selects that task; else the text itself is
the user prompt (the image placeholder is put in front of it); no text means detailed_caption.

Every problem raises ``RequestError`` naming the offending field (``param``), before any model work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..inference.results import encode_rle  # noqa: F401  (re-exported: the response's mask format)
from ..processing.chat import IM_END, IM_START
from ..processing.prompts import LANGUAGES, Task, task_prompt

IMAGE_TASKS = (Task.CATEGORY, Task.EXPLAIN, Task.SHORT_CAPTION, Task.DETAILED_CAPTION)
IMAGE_FORMATS = ("PNG", "JPEG")
MAX_IMAGE_PIXELS = 4096 * 4096
CONTROL_TOKENS = (IM_START, IM_END, "<|endoftext|>")  # the chat template's own markers


class RequestError(ValueError):
    """A bad request; ``param`` names the field (OpenAI's error ``param``)."""

    def __init__(self, param: str | None, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass
class ParsedRequest:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    image_key: str  # sha256 of the decoded pixels and their shape
    regions: list[dict]  # {"points", "point_labels", "box", "mask"} numpy arrays or None
    user_prompt: str
    max_new_tokens: int
    sampling: tuple = ()  # hashable generation settings; requests batch together only if equal
    language: str = "en"
    task: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def generation_kwargs(self) -> dict:
        return dict(self.sampling)


def _number(value, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(param, f"{param} must be a finite number, got {value!r}")
    return float(value)


def decode_image(url: object, param: str = "messages.image_url") -> np.ndarray:
    """A base64 data URL (PNG or JPEG) -> RGB or RGBA uint8 array."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise RequestError(param, f"{param} must be a base64 data URL (data:image/png;base64,...); remote URLs are not fetched")
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise RequestError(param, f"{param} must be a base64 data URL (data:image/png;base64,...)")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(param, f"{param}: invalid base64 ({err})") from None
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format not in IMAGE_FORMATS:
                raise RequestError(param, f"{param}: image format {img.format} is not supported; use PNG or JPEG")
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise RequestError(param, f"{param}: image of {img.width}x{img.height} pixels is larger than {MAX_IMAGE_PIXELS} pixels")
            img.load()
            has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
            arr = np.array(img.convert("RGBA" if has_alpha else "RGB"))
    except RequestError:
        raise
    except Exception as err:  # noqa: BLE001  (PIL raises many types for corrupt data)
        raise RequestError(param, f"{param}: not a decodable PNG/JPEG image ({type(err).__name__}: {err})") from None
    if min(arr.shape[:2]) < 1:
        raise RequestError(param, f"{param}: the image is empty")
    return arr


def image_key(rgb: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def parse_box(value, hw: tuple[int, int], param: str) -> np.ndarray:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise RequestError(param, f"{param} must be [x0, y0, x1, y1] (4 numbers), got {value!r}")
    x0, y0, x1, y1 = (_number(v, f"{param}[{i}]") for i, v in enumerate(value))
    h, w = hw
    if not (x0 < x1 and y0 < y1):
        raise RequestError(param, f"{param} must have x0 < x1 and y0 < y1, got {list(value)}")
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise RequestError(param, f"{param} {list(value)} lies outside the {w}x{h} image")
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def parse_points(points, labels, hw: tuple[int, int], param: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(points, (list, tuple)) or not points:
        raise RequestError(f"{param}.points", f"{param}.points must be a non-empty list of [x, y], got {points!r}")
    h, w = hw
    coords = []
    for i, p in enumerate(points):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise RequestError(f"{param}.points[{i}]", f"{param}.points[{i}] must be [x, y], got {p!r}")
        x, y = (_number(v, f"{param}.points[{i}]") for v in p)
        if not (0 <= x <= w and 0 <= y <= h):
            raise RequestError(f"{param}.points[{i}]", f"{param}.points[{i}] {list(p)} lies outside the {w}x{h} image")
        coords.append((x, y))
    if labels is None:
        labels = [1] * len(coords)
    if not isinstance(labels, (list, tuple)) or len(labels) != len(coords) or any(l not in (0, 1) or isinstance(l, bool) for l in labels):
        raise RequestError(f"{param}.point_labels", f"{param}.point_labels must be {len(coords)} values of 1 (positive) or 0 (negative), got {labels!r}")
    return np.asarray(coords, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def parse_rle(value, hw: tuple[int, int], param: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if not isinstance(value, dict) or "size" not in value or "counts" not in value:
        raise RequestError(param, f"{param} must be a COCO RLE {{'size': [h, w], 'counts': ...}}")
    size = value["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or tuple(size) != tuple(hw):
        raise RequestError(param, f"{param}.size {size!r} does not match the image size [{hw[0]}, {hw[1]}] (h, w)")
    counts = value["counts"]
    try:
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != hw[0] * hw[1]:
                raise ValueError(f"uncompressed counts must be non-negative integers summing to {hw[0] * hw[1]}")
            rle = mask_utils.frPyObjects({"size": list(size), "counts": counts}, *size)
        elif isinstance(counts, str):
            rle = {"size": list(size), "counts": counts.encode()}
        else:
            raise TypeError("counts must be a string (compressed) or a list of integers")
        mask = mask_utils.decode(rle).astype(bool)
    except Exception as err:  # noqa: BLE001  (pycocotools raises bare exceptions on corrupt strings)
        raise RequestError(param, f"{param}: undecodable RLE ({err})") from None
    if mask.shape != tuple(hw):
        raise RequestError(param, f"{param}: RLE decodes to {mask.shape}, expected {tuple(hw)}")
    if not mask.any():
        raise RequestError(param, f"{param} is empty (no pixel set)")
    return mask


def parse_region(value, hw: tuple[int, int], param: str) -> dict:
    """One region dict from the request -> the predictor's prompt dict (numpy, original pixels)."""
    if not isinstance(value, dict):
        raise RequestError(param, f"{param} must be an object with box, points/point_labels or mask")
    unknown = set(value) - {"box", "points", "point_labels", "mask"}
    if unknown:
        raise RequestError(f"{param}.{min(unknown)}", f"{param}: unknown fields {sorted(unknown)}; use box, points, point_labels, mask")
    out = {"points": None, "point_labels": None, "box": None, "mask": None}
    if value.get("box") is not None:
        out["box"] = parse_box(value["box"], hw, f"{param}.box")
    if value.get("points") is not None:
        out["points"], out["point_labels"] = parse_points(value["points"], value.get("point_labels"), hw, param)
    elif value.get("point_labels") is not None:
        raise RequestError(f"{param}.point_labels", f"{param}.point_labels given without points")
    if value.get("mask") is not None:
        out["mask"] = parse_rle(value["mask"], hw, f"{param}.mask")
    if all(v is None for v in out.values()):
        raise RequestError(param, f"{param} has no box, points or mask")
    return out


def _task_from_text(text: str) -> Task | None:
    t = text.strip()
    for task in IMAGE_TASKS:
        if t.lower() == task.value:
            return task
        for lang in LANGUAGES:
            if t == task_prompt(task, lang).split("\n", 1)[1]:
                return task
    return None


def _user_content(messages) -> tuple[str, str, str]:
    """(image url, instruction text, the image part's field name) of the last user message."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages", "messages must be a non-empty list")
    users = [(i, m) for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise RequestError("messages", "messages has no user message")
    i, msg = users[-1]
    content = msg.get("content")
    param = f"messages[{i}].content"
    if isinstance(content, str) or not isinstance(content, list):
        raise RequestError(param, f"{param} must be a list of parts with one image_url part (the image is missing)")
    urls, texts = [], []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            url = part.get("image_url")
            urls.append((j, url.get("url") if isinstance(url, dict) else url))
        elif kind == "text":
            if not isinstance(part.get("text"), str):
                raise RequestError(f"{param}[{j}].text", f"{param}[{j}].text must be a string")
            texts.append(part["text"])
        else:
            raise RequestError(f"{param}[{j}]", f"{param}[{j}] must be a text or image_url part, got type {kind!r}")
    if len(urls) != 1:
        raise RequestError(param, f"{param} must hold exactly one image_url part, found {len(urls)}" + (" (missing image)" if not urls else ""))
    j, url = urls[0]
    return url, "\n".join(texts), f"{param}[{j}].image_url"


def parse_chat_request(body: object, *, max_new_tokens_limit: int, placeholder: str = "<image>") -> ParsedRequest:
    if not isinstance(body, dict):
        raise RequestError(None, "the request body must be a JSON object")
    if body.get("stream"):
        raise RequestError("stream", "streaming responses are not supported; omit stream or set it to false")
    if body.get("n") not in (None, 1):
        raise RequestError("n", "n must be 1 (the response has one choice per region)")
    url, text, url_param = _user_content(body.get("messages"))
    pixels = decode_image(url, url_param)
    rgb = np.ascontiguousarray(pixels[..., :3])
    hw = rgb.shape[:2]
    regions_value = body.get("regions")
    if regions_value is not None:
        if not isinstance(regions_value, list) or not regions_value:
            raise RequestError("regions", "regions must be a non-empty list")
        regions = [parse_region(r, hw, f"regions[{i}]") for i, r in enumerate(regions_value)]
    elif pixels.shape[2] == 4 and (pixels[..., 3] < 255).any():
        mask = pixels[..., 3] > 0
        if not mask.any():
            raise RequestError(url_param, f"{url_param}: the alpha channel marks no region (all transparent)")
        regions = [{"points": None, "point_labels": None, "box": None, "mask": mask}]
    else:
        raise RequestError("regions", "no region: give a regions list or an RGBA image whose alpha channel marks the region")

    language = body.get("language", "en")
    if language not in LANGUAGES:
        raise RequestError("language", f"unknown language {language!r}; expected one of {list(LANGUAGES)}")
    task = body.get("task")
    if task is not None:
        if task not in [t.value for t in IMAGE_TASKS]:
            raise RequestError("task", f"unknown task {task!r}; expected one of {[t.value for t in IMAGE_TASKS]}")
        user_prompt = task_prompt(task, language)
    elif not text.strip():
        task, user_prompt = Task.DETAILED_CAPTION.value, task_prompt(Task.DETAILED_CAPTION, language)
    elif (found := _task_from_text(text)) is not None:
        task, user_prompt = found.value, task_prompt(found, language)
    else:
        for token in CONTROL_TOKENS:
            if token in text:
                raise RequestError("messages", f"the instruction may not contain the chat-template token {token}")
        if text.count(placeholder) > 1:
            raise RequestError("messages", f"the instruction may contain the image placeholder {placeholder!r} at most once")
        user_prompt = text if placeholder in text else f"{placeholder}\n{text.strip()}"

    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if limit is None:
        limit = max_new_tokens_limit
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_new_tokens_limit:
        raise RequestError(param, f"{param} must be an integer in [1, {max_new_tokens_limit}], got {limit!r}")
    temperature = body.get("temperature", 0)
    top_p = body.get("top_p", 1)
    temperature = _number(temperature, "temperature") if temperature is not None else 0.0
    top_p = _number(top_p, "top_p") if top_p is not None else 1.0
    if not 0 <= temperature <= 2:
        raise RequestError("temperature", f"temperature must be in [0, 2], got {temperature}")
    if not 0 < top_p <= 1:
        raise RequestError("top_p", f"top_p must be in (0, 1], got {top_p}")
    sampling = () if temperature == 0 else (("do_sample", True), ("temperature", temperature), ("top_p", top_p))
    return ParsedRequest(rgb, image_key(rgb), regions, user_prompt, limit, sampling, language, task, {"model": body.get("model")})
