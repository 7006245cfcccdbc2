"""SA-V masklet annotations (``sav_XXXXXX_manual.json`` / ``_auto.json``), one file or a folder of them.

Fields read: ``video_id``, ``video_height``, ``video_width``, ``masklet`` (per annotated frame, a list
of per-object RLEs), ``masklet_id``. SA-V annotates every 4th frame of its 24 fps videos, so the
annotated frame ``i`` is video frame ``i * frame_stride`` (default 4). Empty masks (the object is
not visible) are left out. Records point at ``<video_id>.mp4``; regions carry no text (refinement
and the streaming builder add it).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, media_path, record_from, require
from .masklets import compact_rle, rle_area_and_box

SOURCES = ("sav",)


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.json")))
        if not files:
            raise FileNotFoundError(f"no SA-V *.json files in {path}")
        return files
    return [path]


def convert(annotations: str, images: str | None, counts: Counts, *, frame_stride: int = 4, source: str = "sav") -> Iterator[Record]:
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    for path in _files(annotations):
        data = load_json(path)
        where = str(path)
        video_id = require(data, "video_id", str, where)
        masklet = require(data, "masklet", list, where)
        ids = data.get("masklet_id")
        num_objects = max((len(frame) for frame in masklet), default=0)
        if ids is not None and len(ids) != num_objects:
            raise ConvertError(f"{where}: field `masklet_id` lists {len(ids)} ids but frames hold {num_objects} objects")
        regions = []
        for obj in range(num_objects):
            masks, boxes = {}, {}
            for i, frame in enumerate(masklet):
                if obj >= len(frame):
                    continue
                area, box = rle_area_and_box(frame[obj], f"{where}: masklet[{i}][{obj}]")
                if area == 0:
                    continue
                masks[str(i * frame_stride)] = compact_rle(frame[obj])
                boxes[str(i * frame_stride)] = box
            if not masks:
                counts.skip("empty_masklet")
                continue
            extra = {"masklet_id": ids[obj] if ids is not None else obj}
            if isinstance(data.get("masklet_type"), list) and obj < len(data["masklet_type"]):
                extra["masklet_type"] = data["masklet_type"][obj]
            regions.append({"masks": masks, "boxes": boxes, "extra": extra})
        if not regions:
            counts.skip("video_without_masklets")
            continue
        rec = {"id": f"{source}/{video_id}", "video": media_path(images, f"{video_id}.mp4"), "source": source, "regions": regions}
        for key, field in (("height", "video_height"), ("width", "video_width")):
            if isinstance(data.get(field), int):
                rec[key] = data[field]
        yield record_from(rec, where)
