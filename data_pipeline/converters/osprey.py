"""Osprey-724K JSON files: a list of ``{"file_name", "height", "width", "annotation": [{"segmentation",
"bbox", ...}], ...}`` with either ``description`` (``["<region1>: text", ...]``, the detailed
descriptions) or ``conversations`` (``[{"from": "human"|"gpt", "value"}]`` naming ``<region1>`` ...).

Descriptions give one region per annotation with ``detailed_caption``. Conversations about one region
become that region's ``conversations`` (``<regionN>`` becomes "the region"); conversations that
mention several regions are skipped (the region schema has one region per conversation). As
Osprey's loader does, ``COCO_train2014_000000xxx.jpg`` names are reduced to ``000000xxx.jpg``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record
from pam.processing.prompts import IMAGE_PLACEHOLDER

from ..records import ConvertError, Counts, chat_turns, load_json, media_path, record_from, require

SOURCES = ("osprey",)
_DESC = re.compile(r"^\s*<region(\d+)>\s*:\s*(.+)$", re.S)
_REGION = re.compile(r"<region(\d+)>")


def _mask_and_box(ann: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        seg = [p for p in seg if isinstance(p, list) and len(p) >= 6] or None
    if seg:
        out["mask"] = seg
    if ann.get("bbox"):
        out["box"] = [float(c) for c in ann["bbox"]]
    return out


def convert(annotations: str, images: str | None, counts: Counts, *, keep_prefix: bool = False, source: str = "osprey") -> Iterator[Record]:
    data = load_json(annotations)
    if not isinstance(data, list):
        raise ConvertError(f"{annotations}: expected a list of image entries, got {type(data).__name__}")
    for k, item in enumerate(data):
        where = f"{annotations}: [{k}]"
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
                geo = _mask_and_box(anns[idx])
                if not geo:
                    counts.skip("no_mask_or_box")
                    continue
                regions.append({**geo, "detailed_caption": m.group(2).strip(), "extra": {"osprey_region": idx + 1}})
        elif "conversations" in item:
            turns_in = require(item, "conversations", list, where)
            mentioned = {int(n) for t in turns_in if isinstance(t, dict) for n in _REGION.findall(str(t.get("value", "")))}
            if len(mentioned) > 1 or len(anns) != 1 and len(mentioned) != 1:
                counts.skip("multi_region_conversation")
                continue
            idx = (mentioned.pop() if mentioned else 1) - 1
            if not 0 <= idx < len(anns):
                counts.skip("conversation_about_missing_region")
                continue
            turns = chat_turns(turns_in, where, lambda v: _REGION.sub("the region", v).replace("<image>", "").strip())
            if turns is None:
                counts.skip("conversation_not_user_then_assistant")
                continue
            turns[0]["content"] = f"{IMAGE_PLACEHOLDER}\n{turns[0]['content']}"
            geo = _mask_and_box(anns[idx])
            if not geo:
                counts.skip("no_mask_or_box")
                continue
            regions.append({**geo, "conversations": turns, "task": "conversation", "language": "en", "extra": {"osprey_region": idx + 1}})
        else:
            raise ConvertError(f"{where}: neither `description` nor `conversations` is present")
        if not regions:
            counts.skip("image_without_regions")
            continue
        rec = {"id": f"{source}/{k}", "image": media_path(images, name), "source": source, "regions": regions, "extra": {"file_name": file_name}}
        for key in ("height", "width"):
            if isinstance(item.get(key), int):
                rec[key] = item[key]
        yield record_from(rec, where)
