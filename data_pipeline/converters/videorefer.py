"""VideoRefer-700K JSON: a list of ``{"id", "video", "conversations": [{"from", "value"}],
"annotation": [{"<frame_idx>": {"segmentation": rle}}, ...]}`` (one dict per object).

Entries about one object become a region with its per-frame masks and the conversation
(``<video>`` becomes PAM's image placeholder, ``<region>`` "the region"). Entries about several
objects are skipped: the region schema has one region per conversation.
"""

from __future__ import annotations

from collections.abc import Iterator

from pam.data.schema import Record
from pam.processing.prompts import IMAGE_PLACEHOLDER

from ..records import ConvertError, Counts, chat_turns, load_json, media_path, record_from, require
from .masklets import compact_rle, rle_area_and_box

SOURCES = ("videorefer",)


def convert(annotations: str, images: str | None, counts: Counts, *, source: str = "videorefer") -> Iterator[Record]:
    data = load_json(annotations)
    if not isinstance(data, list):
        raise ConvertError(f"{annotations}: expected a list of entries, got {type(data).__name__}")
    for k, item in enumerate(data):
        where = f"{annotations}: [{k}] (id {item.get('id') if isinstance(item, dict) else None})"
        video = require(item, "video", str, where)
        objects = require(item, "annotation", list, where)
        turns_in = require(item, "conversations", list, where)
        if len(objects) != 1:
            counts.skip("multi_object" if objects else "no_object")
            continue
        masks, boxes = {}, {}
        if not isinstance(objects[0], dict):
            raise ConvertError(f"{where}: field `annotation[0]` must map frame index to {{'segmentation': ...}}")
        for frame, value in objects[0].items():
            if not str(frame).isdigit():
                raise ConvertError(f"{where}: annotation key {frame!r} is not a frame index")
            seg = require(value, "segmentation", dict, f"{where}: annotation[0][{frame}]")
            area, box = rle_area_and_box(seg, f"{where}: annotation[0][{frame}].segmentation")
            if area:
                masks[str(int(frame))] = compact_rle(seg)
                boxes[str(int(frame))] = box
        if not masks:
            counts.skip("empty_mask")
            continue
        turns = chat_turns(turns_in, where, lambda v: v.replace("<video>", "").replace("<image>", "").replace("<region>", "the region").strip())
        if turns is None:
            counts.skip("conversation_not_user_then_assistant")
            continue
        turns[0]["content"] = f"{IMAGE_PLACEHOLDER}\n{turns[0]['content']}"
        region = {"masks": masks, "boxes": boxes, "conversations": turns, "task": "conversation", "language": "en"}
        rid = item.get("id", k)
        yield record_from({"id": f"{source}/{rid}", "video": media_path(images, video), "source": source, "regions": [region]}, where)
