"""Osprey-724K JSON files: a list of ``{"file_name", "height", "width", "annotation": [{"segmentation",
"bbox", ...}], ...}`` with either ``description`` (``["<region1>: text", ...]``, the detailed
descriptions) or ``conversations`` (``[{"from": "human"|"gpt", "value"}]`` naming ``<region1>`` ...).

Descriptions give one region per annotation with ``detailed_caption``. A conversation is split into
one region per annotation it talks about: each question-answer pair goes to the region its
``<regionN>`` tags name (``<regionN>`` becomes "the region"), and a pair that names none continues
the region of the pair before it (with a single annotation, everything goes to it). A conversation
where one pair names several regions (a comparison) cannot be split into one region each, so it is
skipped and counted (``multi_region_turn``). As Osprey's loader does, ``COCO_train2014_000000xxx.jpg``
names are reduced to ``000000xxx.jpg``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record
from pam.processing.prompts import IMAGE_PLACEHOLDER

from ..records import ConvertError, Counts, chat_turns, load_json, media_path, number, record_from, require, size_int

SOURCES = ("osprey",)
_DESC = re.compile(r"^\s*<region(\d+)>\s*:\s*(.+)$", re.S)
_REGION = re.compile(r"<region(\d+)>")


def _mask_and_box(ann: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        seg = [p for p in seg if isinstance(p, list) and len(p) >= 6 and all(number(c) for c in p)] or None
    if seg:
        out["mask"] = seg
    bbox = ann.get("bbox")
    if bbox:
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(number(c) for c in bbox)):
            raise ConvertError(f"field `bbox` must be [x, y, w, h] (4 numbers), got {bbox!r}")
        out["box"] = [float(c) for c in bbox]
    return out


def _pairs_by_region(turns_in: list, n_regions: int) -> tuple[dict[int, list[int]] | None, str]:
    """Region index -> its (user, assistant) pair indices, or None and the reason to skip."""
    if n_regions == 1:
        return {0: list(range(len(turns_in) // 2))}, ""
    current, out = None, {}
    for p in range(len(turns_in) // 2):
        text = "".join(str(t.get("value", "")) for t in turns_in[2 * p : 2 * p + 2] if isinstance(t, dict))
        named = {int(n) - 1 for n in _REGION.findall(text)}
        if len(named) > 1:
            return None, "multi_region_turn"
        if named:
            current = named.pop()
        if current is None:
            return None, "turn_without_region"
        if not 0 <= current < n_regions:
            return None, "conversation_about_missing_region"
        out.setdefault(current, []).append(p)
    return out, ""


def convert(
    annotations: str, images: str | None, counts: Counts, *, keep_prefix: bool = False, source: str = "osprey"
) -> Iterator[Record]:
    data = load_json(annotations)
    if not isinstance(data, list):
        raise ConvertError(f"{annotations}: expected a list of image entries, got {type(data).__name__}")
    for k, item in enumerate(data):
        where = f"{annotations}: [{k}] (id {item.get('id') if isinstance(item, dict) else None})"
        with counts.entry(where):
            yield from _entry(item, k, where, images, counts, keep_prefix, source)


def _geometry(anns: list, idx: int, where: str) -> dict[str, Any]:
    if not isinstance(anns[idx], dict):
        raise ConvertError(f"{where}: field `annotation[{idx}]` must be a mapping, got {type(anns[idx]).__name__}")
    try:
        return _mask_and_box(anns[idx])
    except ConvertError as err:
        raise ConvertError(f"{where}: annotation[{idx}] {err}") from None


def _entry(
    item: Any, k: int, where: str, images: str | None, counts: Counts, keep_prefix: bool, source: str
) -> Iterator[Record]:
    file_name = require(item, "file_name", str, where)
    anns = require(item, "annotation", list, where)
    name = file_name if keep_prefix else file_name.split("_")[-1]
    regions: list[dict] = []
    if "description" in item:
        for text in require(item, "description", list, where):
            m = _DESC.match(text) if isinstance(text, str) else None
            if m is None:
                counts.skip("unparsable_description")
                continue
            idx = int(m.group(1)) - 1
            if not 0 <= idx < len(anns):
                counts.skip("description_of_missing_region")
                continue
            geo = _geometry(anns, idx, where)
            if not geo:
                counts.skip("no_mask_or_box")
                continue
            regions.append({**geo, "detailed_caption": m.group(2).strip(), "extra": {"osprey_region": idx + 1}})
    elif "conversations" in item:
        turns_in = require(item, "conversations", list, where)
        pairs, reason = _pairs_by_region(turns_in, len(anns))
        if pairs is None:
            counts.skip(reason)
            return
        turns = chat_turns(turns_in, where, lambda v: _REGION.sub("the region", v).replace("<image>", "").strip())
        if turns is None or len(turns) % 2:
            counts.skip("conversation_not_user_then_assistant")
            return
        for idx in sorted(pairs):
            geo = _geometry(anns, idx, where)
            if not geo:
                counts.skip("no_mask_or_box")
                continue
            own = [t for p in pairs[idx] for t in turns[2 * p : 2 * p + 2]]
            own[0] = {"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{own[0]['content']}"}
            regions.append(
                {
                    **geo,
                    "conversations": own,
                    "task": "conversation",
                    "language": "en",
                    "extra": {"osprey_region": idx + 1},
                }
            )
    else:
        raise ConvertError(f"{where}: neither `description` nor `conversations` is present")
    if not regions:
        counts.skip("image_without_regions")
        return
    rec = {
        "id": f"{source}/{k}",
        "image": media_path(images, name),
        "source": source,
        "regions": regions,
        "extra": {"file_name": file_name},
    }
    for key in ("height", "width"):
        if size_int(item.get(key)) is not None:
            rec[key] = size_int(item[key])
    yield record_from(rec, where)
