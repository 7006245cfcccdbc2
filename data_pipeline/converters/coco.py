"""COCO-style instance JSON (``images``, ``annotations``, ``categories``): COCO itself, and the
shared reader behind LVIS, PACO, Objects365 and V3Det.

One record per annotated image, one region per annotation: the polygon or RLE ``segmentation`` as
the mask, ``bbox`` as the box, the category name as ``category``. Crowd annotations are skipped
unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, media_path, record_from, require

SOURCES = ("coco",)

CategoryText = Callable[[dict], dict[str, Any]]  # category entry -> region fields (category, definition, extra)


def name_text(name: str) -> str:
    """``traffic_light`` -> ``traffic light``."""
    return name.replace("_", " ").strip()


def plain_category(category: dict) -> dict[str, Any]:
    return {"category": name_text(category["name"]), "extra": {"raw_category": category["name"]}}


def image_file(img: dict, where: str) -> str:
    """``file_name``, or for LVIS (which has none) the last two parts of ``coco_url`` (``train2017/x.jpg``)."""
    name = img.get("file_name") or "/".join(str(img.get("coco_url", "")).split("/")[-2:])
    if not name or name == "/":
        raise ConvertError(f"{where}: field `file_name` (or `coco_url`) is missing")
    return name


def convert_instances(
    path: str,
    images: str | None,
    counts: Counts,
    *,
    source: str,
    category_text: CategoryText = plain_category,
    include_crowd: bool = False,
    boxes_only: bool = False,
) -> Iterator[Record]:
    data = load_json(path)
    where = str(path)
    for key in ("images", "annotations", "categories"):
        require(data, key, list, where)
    categories = {}
    for k, cat in enumerate(data["categories"]):
        require(cat, "id", int, f"{where}: categories[{k}]")
        require(cat, "name", str, f"{where}: categories[{k}]")
        categories[cat["id"]] = cat
    by_image: dict[Any, list[dict]] = {}
    for k, ann in enumerate(data["annotations"]):
        at = f"{where}: annotations[{k}] (id {ann.get('id')})"
        image_id = require(ann, "image_id", (int, str), at)
        if ann.get("iscrowd", 0) and not include_crowd:
            counts.skip("crowd")
            continue
        if ann.get("category_id") not in categories:
            raise ConvertError(f"{at}: field `category_id` {ann.get('category_id')!r} is not among the categories")
        cat = categories[ann["category_id"]]
        texts = category_text(cat)
        region: dict[str, Any] = {k: v for k, v in texts.items() if k != "extra" and v}
        region["extra"] = {"annotation_id": ann.get("id"), "category_id": cat["id"], **texts.get("extra", {})}
        seg = None if boxes_only else ann.get("segmentation")
        if isinstance(seg, list):  # COCO has a few degenerate polygons of fewer than 3 points
            seg = [p for p in seg if isinstance(p, list) and len(p) >= 6] or None
        if seg:
            region["mask"] = seg
        bbox = ann.get("bbox")
        if bbox is not None:
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise ConvertError(f"{at}: field `bbox` must be [x, y, w, h], got {bbox!r}")
            if bbox[2] <= 0 or bbox[3] <= 0:
                counts.skip("empty_box")
                continue
            region["box"] = [float(c) for c in bbox]
        if "mask" not in region and "box" not in region:
            counts.skip("no_mask_or_box")
            continue
        by_image.setdefault(image_id, []).append(region)
    for k, img in enumerate(data["images"]):
        at = f"{where}: images[{k}] (id {img.get('id')})"
        regions = by_image.pop(img.get("id"), None)
        if not regions:
            counts.skip("image_without_regions")
            continue
        rec = {"id": f"{source}/{img['id']}", "image": media_path(images, image_file(img, at)), "source": source, "regions": regions}
        for key in ("height", "width"):
            if isinstance(img.get(key), int) and img[key] > 0:
                rec[key] = img[key]
        yield record_from(rec, at)
    if by_image:
        counts.skip("annotation_of_unknown_image", sum(len(r) for r in by_image.values()))


def convert(annotations: str, images: str | None, counts: Counts, *, include_crowd: bool = False, source: str | None = None) -> Iterator[Record]:
    return convert_instances(annotations, images, counts, source=source or "coco", include_crowd=include_crowd)
