"""SA-V training masklets: ``sav_XXXXXX_manual.json`` and ``sav_XXXXXX_auto.json``, one file or a
release folder holding both per video (as in sam2's ``sav_dataset/example/``).

Fields read: ``video_id``, ``video_height`` / ``video_width`` (floats in the release, such as
``848.0``), ``masklet`` (per annotated frame, a list of per-object RLEs), ``masklet_id`` and
``masklet_type``. The manual and the auto file of one video become one record (``sav/<video_id>``):
the manual masklets first, then the auto ones, each with ``extra.masklet_type`` and
``extra.masklet_id`` (ids restart at 0 in each file). SA-V annotates every 4th frame of its 24 fps
videos, so annotated frame ``i`` is video frame ``i * frame_stride`` (default 4). As sam2's
``JSONSegmentLoader`` does, a ``None`` entry means the object is absent on that frame; so does an
empty mask. Records point at ``<video_id>.mp4``; regions carry no text (refinement and the
streaming builder add it).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, media_path, record_from, require, size_int
from .masklets import frame_mask

SOURCES = ("sav",)
_KINDS = ("manual", "auto")


def _videos(path: str) -> list[tuple[str, list[str]]]:
    """``[(video key, [annotation files, manual before auto])]`` of a file or a release folder."""
    if not os.path.isdir(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"annotation file not found: {path}")
        return [(path, [path])]
    files = sorted(glob.glob(os.path.join(path, "*.json")))
    if not files:
        raise FileNotFoundError(f"no SA-V *.json files in {path}")
    groups: dict[str, list[str]] = {}
    for f in files:
        stem = os.path.basename(f)[: -len(".json")]
        key, _, kind = stem.rpartition("_")
        groups.setdefault(key if kind in _KINDS else stem, []).append(f)
    order = {kind: k for k, kind in enumerate(_KINDS)}
    return [
        (key, sorted(fs, key=lambda f: order.get(f[: -len(".json")].rpartition("_")[2], len(order))))
        for key, fs in groups.items()
    ]


def _regions(path: str, data: dict, frame_stride: int, counts: Counts) -> list[dict]:
    where = f"{path} (video {data.get('video_id')})"
    masklet = require(data, "masklet", list, where)
    ids = data.get("masklet_id")
    types = data.get("masklet_type") if isinstance(data.get("masklet_type"), list) else None
    for i, frame in enumerate(masklet):
        if not isinstance(frame, list):
            raise ConvertError(
                f"{where}: field `masklet[{i}]` must be a list of per-object RLEs, got {type(frame).__name__}"
            )
    num_objects = max((len(frame) for frame in masklet), default=0)
    if ids is not None and (not isinstance(ids, list) or len(ids) != num_objects):
        raise ConvertError(f"{where}: field `masklet_id` must list one id per object ({num_objects}), got {ids!r}")
    kind = os.path.basename(path)[: -len(".json")].rpartition("_")[2]
    height, width = size_int(data.get("video_height")), size_int(data.get("video_width"))
    regions = []
    for obj in range(num_objects):
        masks, boxes = {}, {}
        for i, frame in enumerate(masklet):
            if obj >= len(frame) or frame[obj] is None:
                continue
            rle, area, box = frame_mask(frame[obj], where, f"masklet[{i}][{obj}]")
            if height and width and rle["size"] != [height, width]:
                raise ConvertError(
                    f"{where}: field `masklet[{i}][{obj}].size` {rle['size']} differs from the video's {height}x{width}"
                )
            if area == 0:
                continue
            masks[str(i * frame_stride)] = rle
            boxes[str(i * frame_stride)] = box
        if not masks:
            counts.skip("empty_masklet")
            continue
        extra = {
            "masklet_id": ids[obj] if ids is not None else obj,
            "masklet_type": types[obj]
            if types is not None and obj < len(types)
            else (kind if kind in _KINDS else None),
        }
        regions.append({"masks": masks, "boxes": boxes, "extra": {k: v for k, v in extra.items() if v is not None}})
    return regions


def convert(
    annotations: str, images: str | None, counts: Counts, *, frame_stride: int = 4, source: str = "sav"
) -> Iterator[Record]:
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    for _, paths in _videos(annotations):
        with counts.entry(paths[0]):
            video_id, regions, rec = None, [], {}
            for path in paths:
                data = load_json(path)
                vid = require(data, "video_id", str, path)
                if video_id is not None and vid != video_id:
                    raise ConvertError(f"{path}: field `video_id` {vid!r} differs from {video_id!r} in {paths[0]}")
                video_id = vid
                regions += _regions(path, data, frame_stride, counts)
                for out, field in (("height", "video_height"), ("width", "video_width")):
                    if size_int(data.get(field)) is not None:
                        rec[out] = size_int(data[field])
            if not regions:
                counts.skip("video_without_masklets")
                continue
            rec.update(
                id=f"{source}/{video_id}", video=media_path(images, f"{video_id}.mp4"), source=source, regions=regions
            )
            yield record_from(rec, paths[0])
