"""YouTube-VIS style video instance JSON (also OVIS, LV-VIS): ``videos`` with ``file_names``,
``annotations`` with per-frame ``segmentations`` (RLE or null) and ``bboxes``, and ``categories``.

One record per video (its frames, resolved under ``--images``), one region per annotation with the
category name. Segmentations may be RLE or polygons (decoded with the video's ``height`` and
``width``, as the official ``ytvos.py`` does); a ``null`` frame means the object is absent.
(YouTube-VOS itself ships palette PNGs, not RLE; convert those to this layout first.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, record_from, require, size_int
from .coco import name_text
from .masklets import frame_mask

SOURCES = ("ytvis", "ytvos")


def convert(
    annotations: str, images: str | None, counts: Counts, *, include_crowd: bool = False, source: str = "ytvis"
) -> Iterator[Record]:
    data = load_json(annotations)
    for key in ("videos", "annotations", "categories"):
        require(data, key, list, annotations)
    cats = {}
    for k, cat in enumerate(data["categories"]):
        at = f"{annotations}: categories[{k}]"
        cats[require(cat, "id", int, at)] = require(cat, "name", str, at)
    sizes = {}
    for video in data["videos"]:
        if isinstance(video, dict):
            sizes[video.get("id")] = (size_int(video.get("height")), size_int(video.get("width")))
    by_video: dict[Any, list[dict]] = {}
    for k, ann in enumerate(data["annotations"]):
        where = f"{annotations}: annotations[{k}] (id {ann.get('id') if isinstance(ann, dict) else None})"
        with counts.entry(where):
            video_id = require(ann, "video_id", (int, str), where)
            segs = require(ann, "segmentations", list, where)
            if ann.get("iscrowd", 0) and not include_crowd:
                counts.skip("crowd")
                continue
            name = cats.get(ann.get("category_id"))
            if name is None:
                raise ConvertError(
                    f"{where}: field `category_id` {ann.get('category_id')!r} is not among the categories"
                )
            height, width = sizes.get(video_id, (None, None))
            masks, boxes = {}, {}
            for f, seg in enumerate(segs):
                if seg is None:  # the object is not in this frame
                    continue
                rle, area, box = frame_mask(seg, where, f"segmentations[{f}]", height, width)
                if area:
                    masks[str(f)] = rle
                    boxes[str(f)] = box
            if not masks:
                counts.skip("empty_track")
                continue
            region = {
                "masks": masks,
                "boxes": boxes,
                "category": name_text(name),
                "extra": {"annotation_id": ann.get("id"), "raw_category": name},
            }
            by_video.setdefault(video_id, []).append(region)
    for k, video in enumerate(data["videos"]):
        where = f"{annotations}: videos[{k}] (id {video.get('id') if isinstance(video, dict) else None})"
        with counts.entry(where):
            regions = by_video.pop(require(video, "id", (int, str), where), None)
            if not regions:
                counts.skip("video_without_regions")
                continue
            frames = require(video, "file_names", list, where)
            rec = {"id": f"{source}/{video['id']}", "frames": frames, "source": source, "regions": regions}
            if images:
                rec["frames_root"] = images
            for key in ("height", "width"):
                if size_int(video.get(key)) is not None:
                    rec[key] = size_int(video[key])
            yield record_from(rec, where)
    if by_video:
        counts.skip("annotation_of_unknown_video", sum(len(r) for r in by_video.values()))
