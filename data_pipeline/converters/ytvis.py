"""YouTube-VIS style video instance JSON (also OVIS, LV-VIS): ``videos`` with ``file_names``,
``annotations`` with per-frame ``segmentations`` (RLE or null) and ``bboxes``, and ``categories``.

One record per video (its frames, resolved under ``--images``), one region per annotation with the
category name. (YouTube-VOS itself ships palette PNGs, not RLE; convert those to this layout first.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, record_from, require
from .coco import name_text
from .masklets import compact_rle, rle_area_and_box

SOURCES = ("ytvis", "ytvos")


def convert(annotations: str, images: str | None, counts: Counts, *, include_crowd: bool = False, source: str = "ytvis") -> Iterator[Record]:
    data = load_json(annotations)
    for key in ("videos", "annotations", "categories"):
        require(data, key, list, annotations)
    cats = {c["id"]: c for c in data["categories"]}
    by_video: dict[Any, list[dict]] = {}
    for k, ann in enumerate(data["annotations"]):
        where = f"{annotations}: annotations[{k}] (id {ann.get('id')})"
        segs = require(ann, "segmentations", list, where)
        if ann.get("iscrowd", 0) and not include_crowd:
            counts.skip("crowd")
            continue
        cat = cats.get(ann.get("category_id"))
        if cat is None:
            raise ConvertError(f"{where}: field `category_id` {ann.get('category_id')!r} is not among the categories")
        masks, boxes = {}, {}
        for f, seg in enumerate(segs):
            if seg is None:
                continue
            area, box = rle_area_and_box(seg, f"{where}.segmentations[{f}]")
            if area:
                masks[str(f)] = compact_rle(seg)
                boxes[str(f)] = box
        if not masks:
            counts.skip("empty_track")
            continue
        region = {"masks": masks, "boxes": boxes, "category": name_text(cat["name"]), "extra": {"annotation_id": ann.get("id"), "raw_category": cat["name"]}}
        by_video.setdefault(ann["video_id"], []).append(region)
    for k, video in enumerate(data["videos"]):
        where = f"{annotations}: videos[{k}] (id {video.get('id')})"
        regions = by_video.pop(video.get("id"), None)
        if not regions:
            counts.skip("video_without_regions")
            continue
        frames = require(video, "file_names", list, where)
        rec = {"id": f"{source}/{video['id']}", "frames": frames, "source": source, "regions": regions}
        if images:
            rec["frames_root"] = images
        for key in ("height", "width"):
            if isinstance(video.get(key), int):
                rec[key] = video[key]
        yield record_from(rec, where)
