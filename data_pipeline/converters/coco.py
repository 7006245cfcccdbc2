"""COCO-style instance JSON (``images``, ``annotations``, ``categories``): COCO itself, and the
shared reader behind LVIS, PACO, Objects365 and V3Det.

One record per annotated image, one region per annotation: the polygon or RLE ``segmentation`` as
the mask, ``bbox`` as the box, the category name as ``category``. Crowd annotations are skipped
unless asked for. Each source plugs in how a category becomes text, where an image file lives, and
what an annotation adds (:class:`Flavour`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, media_path, number, record_from, require, size_int, xywh
from .masklets import frame_mask

SOURCES = ("coco",)

CategoryText = Callable[[dict], dict[str, Any]]  # category entry -> region fields (category, definition, extra)


def name_text(name: str) -> str:
    """``traffic_light`` -> ``traffic light``."""
    return name.replace("_", " ").strip()


def plain_category(category: dict) -> dict[str, Any]:
    return {"category": name_text(category["name"]), "extra": {"raw_category": category["name"]}}


def image_file(img: dict, where: str) -> str:
    """``file_name`` (COCO, PACO, Objects365, V3Det, RefCOCO's instances)."""
    name = img.get("file_name")
    if not isinstance(name, str) or not name:
        raise ConvertError(f"{where}: field `file_name` is missing")
    return name


def coco_url_file(img: dict, where: str) -> str:
    """LVIS (v0.5 and v1): the last two parts of ``coco_url`` (``val2017/000000000139.jpg``), as
    lvis-api and detectron2 locate the image; LVIS v0.5's ``file_name`` names a COCO 2014 file."""
    url = img.get("coco_url")
    if not isinstance(url, str) or url.count("/") < 1:
        raise ConvertError(f"{where}: field `coco_url` is missing")
    return "/".join(url.split("/")[-2:])


@dataclass
class Flavour:
    """What one COCO-style source changes in the shared reader."""

    category_text: CategoryText = plain_category
    image_path: Callable[[dict, str], str | None] = image_file  # None: the image is skipped (counted)
    annotation_extra: Callable[[dict, str], dict[str, Any]] | None = None  # annotation -> region extra fields
    boxes_only: bool = False
    empty_segmentation_skips: bool = False  # PACO: an annotation with `segmentation: []` is not used


def segmentation_mask(seg: Any, at: str, size: tuple[int | None, int | None]) -> Any:
    """The schema mask of a COCO ``segmentation``: polygons (degenerate ones of < 3 points dropped,
    as COCO has a few) or an RLE (checked: its runs must cover the image)."""
    if isinstance(seg, list):
        if not all(isinstance(p, list) and all(number(c) for c in p) for p in seg):
            raise ConvertError(f"{at}: field `segmentation` must be polygons [[x0, y0, x1, y1, ...], ...] of numbers")
        return [p for p in seg if len(p) >= 6 and len(p) % 2 == 0] or None
    if isinstance(seg, dict):
        rle, _, _ = frame_mask(seg, at, "segmentation")
        h, w = size
        if h and w and rle["size"] != [h, w]:
            raise ConvertError(f"{at}: field `segmentation.size` {rle['size']} differs from the image's {h}x{w}")
        return rle
    if seg is None:
        return None
    raise ConvertError(f"{at}: field `segmentation` must be polygons or an RLE, got {type(seg).__name__}")


def convert_instances(
    path: str,
    images: str | None,
    counts: Counts,
    *,
    source: str,
    flavour: Flavour | None = None,
    include_crowd: bool = False,
    data: dict | None = None,
) -> Iterator[Record]:
    flavour = flavour or Flavour()
    data = load_json(path) if data is None else data
    where = str(path)
    for key in ("images", "annotations", "categories"):
        require(data, key, list, where)
    categories = {}
    for k, cat in enumerate(data["categories"]):
        require(cat, "id", int, f"{where}: categories[{k}]")
        require(cat, "name", str, f"{where}: categories[{k}]")
        categories[cat["id"]] = cat
    sizes = {
        img.get("id"): (size_int(img.get("height")), size_int(img.get("width")))
        for img in data["images"]
        if isinstance(img, dict)
    }
    by_image: dict[Any, list[dict]] = {}
    for k, ann in enumerate(data["annotations"]):
        at = f"{where}: annotations[{k}] (id {ann.get('id') if isinstance(ann, dict) else None})"
        with counts.entry(at):
            image_id = require(ann, "image_id", (int, str), at)
            if ann.get("iscrowd", 0) and not include_crowd:
                counts.skip("crowd")
                continue
            if ann.get("category_id") not in categories:
                raise ConvertError(f"{at}: field `category_id` {ann.get('category_id')!r} is not among the categories")
            cat = categories[ann["category_id"]]
            texts = flavour.category_text(cat)
            region: dict[str, Any] = {k: v for k, v in texts.items() if k != "extra" and v}
            region["extra"] = {"annotation_id": ann.get("id"), "category_id": cat["id"], **texts.get("extra", {})}
            if flavour.annotation_extra is not None:
                region["extra"].update(flavour.annotation_extra(ann, at))
            seg = ann.get("segmentation")
            if flavour.empty_segmentation_skips and isinstance(seg, list) and not seg:
                counts.skip("empty_segmentation")
                continue
            if not flavour.boxes_only:
                mask = segmentation_mask(seg, at, sizes.get(image_id, (None, None)))
                if mask:
                    region["mask"] = mask
            if ann.get("bbox") is not None:
                box = xywh(ann["bbox"], at)
                if box[2] <= 0 or box[3] <= 0:
                    counts.skip("empty_box")
                    continue
                region["box"] = box
            if "mask" not in region and "box" not in region:
                counts.skip("no_mask_or_box")
                continue
            by_image.setdefault(image_id, []).append(region)
    for k, img in enumerate(data["images"]):
        at = f"{where}: images[{k}] (id {img.get('id') if isinstance(img, dict) else None})"
        with counts.entry(at):
            image_id = require(img, "id", (int, str), at)
            regions = by_image.pop(image_id, None)
            if not regions:
                counts.skip("image_without_regions")
                continue
            name = flavour.image_path(img, at)
            if name is None:
                counts.skip("image_ignored", len(regions))
                continue
            rec = {
                "id": f"{source}/{image_id}",
                "image": media_path(images, name),
                "source": source,
                "regions": regions,
            }
            h, w = sizes.get(image_id, (None, None))
            if h and w:
                rec.update(height=h, width=w)
            yield record_from(rec, at)
    if by_image:
        counts.skip("annotation_of_unknown_image", sum(len(r) for r in by_image.values()))


def convert(
    annotations: str, images: str | None, counts: Counts, *, include_crowd: bool = False, source: str | None = None
) -> Iterator[Record]:
    return convert_instances(annotations, images, counts, source=source or "coco", include_crowd=include_crowd)
