"""VideoRefer-700K JSON: a list of ``{"id", "video", "conversations": [{"from", "value"}],
"annotation": [{"<frame_idx>": {"segmentation": rle | polygons | null}}, ...]}`` (one dict per
object, in the order the conversation's ``<region>`` tokens name them).

As VideoRefer's ``train.py`` reads them:
- ``video`` is a video file, or a folder of frames whose sorted file names are the video's frames
  (``process_video``); a folder becomes a ``frames`` record, so frame keys index its sorted files.
- a segmentation is an RLE or polygons (``annToMask``; polygons need the entry's ``height`` and
  ``width``, or for a frame folder the frames' size); ``null`` is an empty mask, so the object has
  no mask on that frame.

``<video>`` becomes PAM's image placeholder and ``<region>`` "the region". An entry about one object
becomes one region with the whole conversation. An entry about several objects is split into one
region per object when every question-answer pair names at most one ``<region>``: the k-th
``<region>`` of the conversation is the k-th object, and a pair that names none continues the
object of the pair before it. Entries where a pair names several objects (comparisons) cannot be
split into one region each, so they are skipped and counted (``multi_region_turn``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from PIL import Image

from pam.data.schema import Record
from pam.processing.prompts import IMAGE_PLACEHOLDER

from ..records import ConvertError, Counts, chat_turns, load_json, media_path, record_from, require, size_int
from .masklets import frame_mask

SOURCES = ("videorefer",)
REGION = "<region>"


def _clean(text: str) -> str:
    return text.replace("<video>", "").replace("<image>", "").replace(REGION, "the region").strip()


def _split_by_object(turns_in: list, n_objects: int, where: str) -> tuple[dict[int, list[int]] | None, str]:
    """Object index -> indices of its (user, assistant) pairs, or None and the reason to skip."""
    if n_objects == 1:
        return {0: list(range(len(turns_in) // 2))}, ""
    seen, current, pairs = 0, None, {}
    for p in range(len(turns_in) // 2):
        text = "".join(str(t.get("value", "")) for t in turns_in[2 * p : 2 * p + 2] if isinstance(t, dict))
        n = text.count(REGION)
        if n > 1:
            return None, "multi_region_turn"
        if n == 1:
            current, seen = seen, seen + 1
        if current is None:
            return None, "turn_without_region"
        pairs.setdefault(current, []).append(p)
    if seen != n_objects:
        return None, "region_count_mismatch"
    return pairs, ""


def _frames_of(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name)))


def convert(annotations: str, images: str | None, counts: Counts, *, source: str = "videorefer") -> Iterator[Record]:
    data = load_json(annotations)
    if not isinstance(data, list):
        raise ConvertError(f"{annotations}: expected a list of entries, got {type(data).__name__}")
    for k, item in enumerate(data):
        where = f"{annotations}: [{k}] (id {item.get('id') if isinstance(item, dict) else None})"
        with counts.entry(where):
            video = require(item, "video", str, where)
            objects = require(item, "annotation", list, where)
            turns_in = require(item, "conversations", list, where)
            if not objects:
                counts.skip("no_object")
                continue
            path = media_path(images, video)
            rec: dict[str, Any] = {"source": source}
            height, width = size_int(item.get("height")), size_int(item.get("width"))
            if os.path.isdir(path):
                frames = _frames_of(path)
                if not frames:
                    raise ConvertError(f"{where}: field `video` names the frame folder {path}, which holds no files")
                rec.update(frames=frames, frames_root=path)
                if height is None or width is None:
                    with Image.open(os.path.join(path, frames[0])) as im:
                        width, height = im.size
            elif not os.path.splitext(video)[1]:
                raise ConvertError(
                    f"{where}: field `video` {video!r} has no file extension and no frame folder {path} exists"
                )
            else:
                rec["video"] = path
            pairs, reason = _split_by_object(turns_in, len(objects), where)
            if pairs is None:
                counts.skip(reason)
                continue
            turns = chat_turns(turns_in, where, _clean)
            if turns is None or len(turns) % 2:
                counts.skip("conversation_not_user_then_assistant")
                continue
            regions = []
            for j, obj in enumerate(objects):
                at = f"annotation[{j}]"
                if not isinstance(obj, dict):
                    raise ConvertError(f"{where}: field `{at}` must map frame index to {{'segmentation': ...}}")
                masks, boxes = {}, {}
                for frame, value in obj.items():
                    if not str(frame).isdigit():
                        raise ConvertError(f"{where}: field `{at}` key {frame!r} is not a frame index")
                    if not isinstance(value, dict) or "segmentation" not in value:
                        raise ConvertError(f"{where}: field `{at}[{frame}].segmentation` is missing")
                    if value["segmentation"] is None:  # train.py: an empty mask on this frame
                        continue
                    rle, area, box = frame_mask(
                        value["segmentation"], where, f"{at}[{frame}].segmentation", height, width
                    )
                    if area:
                        masks[str(int(frame))] = rle
                        boxes[str(int(frame))] = box
                own = [t for p in pairs.get(j, []) for t in turns[2 * p : 2 * p + 2]]
                if not masks or not own:
                    counts.skip("empty_mask" if not masks else "object_without_turns")
                    continue
                own[0] = {"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{own[0]['content']}"}
                regions.append(
                    {
                        "masks": masks,
                        "boxes": boxes,
                        "conversations": own,
                        "task": "conversation",
                        "language": "en",
                        "extra": {"object_index": j},
                    }
                )
            if not regions:
                continue
            rec.update(id=f"{source}/{item.get('id', k)}", regions=regions)
            if height and width:
                rec.update(height=height, width=width)
            yield record_from(rec, where)
