"""Parse and validate OpenAI-style chat requests for region description.

A request is a chat completion whose last user message holds one ``image_url`` part (a base64
data URL, PNG or JPEG) and optional text. Regions come in a top-level ``"regions"`` list, each
``{"box": [x0, y0, x1, y1]}``, ``{"points": [[x, y], ...], "point_labels": [1, ...]}`` or
``{"mask": <COCO RLE>}`` (keys may be combined), in the image's pixels; without ``"regions"`` an
RGBA image's alpha channel (alpha > 0) is the region, as in Describe Anything.

The instruction: a ``"task"`` field (category, explain, short_caption, detailed_caption) wins; else
text equal to a task name or to a task's prompt wording selects that task; else the text itself is
the user prompt (the image placeholder is put in front of it); no text means detailed_caption.

This module only maps JSON onto the predictor's typed request
(:class:`~pam.inference.request.RegionRequest`): the request's one validator checks regions, task,
question and limits, and each error's field is mapped back onto its JSON path, so every problem
raises ``RequestError`` naming the offending JSON field (``param``), before any model work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..inference.regions import InputError, Region
from ..inference.request import RegionRequest
from ..inference.results import encode_rle  # noqa: F401  (re-exported: the response's mask format)
from ..processing.prompts import IMAGE_PLACEHOLDER, task_from_text

IMAGE_FORMATS = ("PNG", "JPEG")
MAX_IMAGE_PIXELS = 4096 * 4096


OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def without_reprs(text: str) -> str:
    """``text`` with Python object reprs (``<_io.BytesIO object at 0x...>``) replaced by "the data"."""
    return OBJECT_REPR.sub("the data", text)


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
    requests: list[RegionRequest]  # one checked request per region, in order
    max_new_tokens: int
    sampling: tuple = ()  # hashable generation settings; requests batch together only if equal
    language: str = "en"
    task: str | None = None
    meta: dict = field(default_factory=dict)
    prompt_tokens: int = 0  # tokens of one region's generation prompt (set by the app)

    @property
    def regions(self) -> list[Region]:
        return [r.region for r in self.requests]

    @property
    def user_prompt(self) -> str:
        return self.requests[0].user_turn()

    @property
    def generation_settings(self) -> dict:
        """The decoding settings this request asks for, over the engine's (greedy) defaults."""
        return dict(self.sampling)


REGION_JSON_FIELDS = {"labels": "point_labels"}  # request field -> JSON key, where they differ


def json_path(field: str | None, region_param: str) -> str:
    """A request field (``region.points[1]``, ``region``) -> its JSON path under ``region_param``."""
    if field is None or field == "region":
        return region_param
    _, _, rest = field.partition(".")
    key, bracket, index = rest.partition("[")
    return f"{region_param}.{REGION_JSON_FIELDS.get(key, key)}{bracket}{index}"


def _number(value, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(param, f"{param} must be a finite number, got {value!r}")
    return float(value)


def decode_image(url: object, param: str = "messages.image_url") -> np.ndarray:
    """A base64 data URL (PNG or JPEG) -> RGB or RGBA uint8 array."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise RequestError(
            param, f"{param} must be a base64 data URL (data:image/png;base64,...); remote URLs are not fetched"
        )
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
                raise RequestError(
                    param, f"{param}: image of {img.width}x{img.height} pixels is larger than {MAX_IMAGE_PIXELS} pixels"
                )
            img.load()
            has_alpha = img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info)
            arr = np.array(img.convert("RGBA" if has_alpha else "RGB"))
    except RequestError:
        raise
    except Image.UnidentifiedImageError:
        raise RequestError(param, f"{param}: the data is not a PNG or JPEG image") from None
    except Exception as err:  # noqa: BLE001  (PIL raises many types for corrupt data)
        reason = without_reprs(str(err))
        raise RequestError(param, f"{param}: not a decodable PNG/JPEG image ({type(err).__name__}: {reason})") from None
    if min(arr.shape[:2]) < 1:
        raise RequestError(param, f"{param}: the image is empty")
    return arr


def image_key(rgb: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr(rgb.shape).encode())
    h.update(np.ascontiguousarray(rgb).tobytes())
    return h.hexdigest()


def check_region(value: dict, hw: tuple[int, int], param: str) -> Region:
    """``Region.checked`` (the one validator) with its error's field mapped onto the JSON path."""
    try:
        return Region.from_any(value, param).checked(hw, param)
    except InputError as err:
        raise RequestError(json_path(None if err.field is None else f"region.{err.field}", param), str(err)) from None


def parse_rle(value, hw: tuple[int, int], param: str) -> np.ndarray:
    """A COCO RLE (compressed ``counts`` string or uncompressed list) -> bool (H, W) mask, checked:
    ``size`` is the image's [h, w] and the runs cover exactly h*w pixels, none negative."""
    from pycocotools import mask as mask_utils

    from ..data.masks import rle_string_to_runs

    if not isinstance(value, dict) or "size" not in value or "counts" not in value:
        raise RequestError(param, f"{param} must be a COCO RLE {{'size': [h, w], 'counts': ...}}")
    size = value["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        or tuple(size) != tuple(hw)
    ):
        raise RequestError(param, f"{param}.size {size!r} does not match the image size [{hw[0]}, {hw[1]}] (h, w)")
    counts = value["counts"]
    total = hw[0] * hw[1]
    cparam = f"{param}.counts"
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise RequestError(cparam, f"{cparam}: uncompressed counts must be non-negative integers")
        runs = counts
    elif isinstance(counts, str):
        try:
            runs = rle_string_to_runs(counts)
        except ValueError as err:
            raise RequestError(cparam, f"{cparam}: not a COCO compressed RLE string ({err})") from None
        if any(c < 0 for c in runs):
            raise RequestError(cparam, f"{cparam}: not a COCO compressed RLE string (it decodes to a negative run)")
    else:
        raise RequestError(cparam, f"{cparam} must be a string (compressed RLE) or a list of integers")
    if sum(runs) != total:
        raise RequestError(
            cparam, f"{cparam}: the runs cover {sum(runs)} pixels, but the mask has {hw[0]}x{hw[1]} = {total}"
        )
    try:
        rle = (
            mask_utils.frPyObjects({"size": list(size), "counts": counts}, *size)
            if isinstance(counts, list)
            else {"size": list(size), "counts": counts.encode()}
        )
        mask = mask_utils.decode(rle).astype(bool)
    except Exception as err:  # noqa: BLE001  (pycocotools raises bare exceptions on corrupt input)
        raise RequestError(cparam, f"{cparam}: undecodable RLE ({type(err).__name__})") from None
    if mask.shape != tuple(hw) or int(mask.sum()) != sum(runs[1::2]):
        raise RequestError(cparam, f"{cparam}: the RLE does not decode to a {hw[0]}x{hw[1]} mask")
    return mask


def parse_region(value, hw: tuple[int, int], param: str) -> Region:
    """One region object of the request -> a checked Region (the mask's COCO RLE decoded first)."""
    if not isinstance(value, dict):
        raise RequestError(param, f"{param} must be an object with box, points/point_labels or mask")
    unknown = set(value) - {"box", "points", "point_labels", "mask"}
    if unknown:
        raise RequestError(
            f"{param}.{min(unknown)}", f"{param}: unknown fields {sorted(unknown)}; use box, points, point_labels, mask"
        )
    fields = {k: v for k, v in value.items() if v is not None}
    if "mask" in fields:
        fields["mask"] = parse_rle(fields["mask"], hw, f"{param}.mask")
    return check_region(fields, hw, param)


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
        raise RequestError(
            param,
            f"{param} must hold exactly one image_url part, found {len(urls)}"
            + (" (missing image)" if not urls else ""),
        )
    j, url = urls[0]
    return url, "\n".join(texts), f"{param}[{j}].image_url"


def parse_chat_request(
    body: object, *, max_new_tokens_limit: int, placeholder: str = IMAGE_PLACEHOLDER
) -> ParsedRequest:
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
        regions = [check_region({"mask": mask}, hw, url_param)]
    else:
        raise RequestError(
            "regions", "no region: give a regions list or an RGBA image whose alpha channel marks the region"
        )

    language = body.get("language", "en")
    task = body.get("task")
    question = None
    if task is None:
        task = task_from_text(text) if text.strip() else "detailed_caption"
        question = None if task is not None else (text if placeholder in text else text.strip())
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
    key = image_key(rgb)
    requests = []
    for i, region in enumerate(regions):
        request = RegionRequest(
            region=region,
            image=rgb,
            task=task,
            question=question,
            language=language,
            max_new_tokens=limit,
            image_key=key,
        )
        try:
            requests.append(request.checked(f"regions[{i}]"))
        except InputError as err:  # the region is checked already: task, question, language
            raise RequestError(REQUEST_JSON_FIELDS.get(err.field, err.field), str(err)) from None
    return ParsedRequest(rgb, key, requests, limit, sampling, language, task, {"model": body.get("model")})


REQUEST_JSON_FIELDS = {"question": "messages", "history": "messages", "max_new_tokens": "max_tokens"}
