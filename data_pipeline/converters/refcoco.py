"""RefCOCO / RefCOCO+ / RefCOCOg: the ``refs(unc).p`` / ``refs(umd).p`` pickle (or the same list as
JSON) together with the dataset's ``instances.json``.

Each ref becomes one region: the referred instance's mask and box, its COCO category, the first
referring sentence as ``short_caption`` and all sentences under ``extra.expressions``. Refs of one
image share a record. ``split`` keeps refs as ``refer.py``'s ``getRefIds(split=...)`` selects them:
``train`` / ``val`` / ``testAB``-style names exactly, ``testA`` / ``testB`` / ``testC`` every split
whose name holds that letter (so also ``testAB``), and ``test`` every split whose name holds
``test`` (``testA`` + ``testB`` for the UNC refs, ``test`` for UMD). ``--images`` is the folder of
the COCO ``train2014`` images (the instances' ``file_name`` is ``COCO_train2014_*.jpg``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, media_path, record_from, require, size_int, xywh
from .coco import image_file, name_text, segmentation_mask

SOURCES = ("refcoco", "refcoco+", "refcocog")


class _PlainUnpickler(pickle.Unpickler):
    """Loads only plain containers and scalars: the refs file needs nothing else, and nothing else runs."""

    def find_class(self, module: str, name: str):
        raise ConvertError(f"refs pickle refers to {module}.{name}; only plain lists/dicts/strings are accepted")


def load_refs(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"refs file not found: {path}")
    if path.endswith(".json"):
        refs = load_json(path)
    else:
        with open(path, "rb") as f:
            refs = _PlainUnpickler(f, encoding="latin1").load()  # the UNC files were pickled by Python 2
    if not isinstance(refs, list):
        raise ConvertError(f"{path}: refs must be a list of ref objects, got {type(refs).__name__}")
    return refs


SPLITS = ("train", "val", "test", "testA", "testB", "testC", "testAB", "testBC", "testAC")


def in_split(ref_split: Any, split: str) -> bool:
    """Whether a ref of ``ref_split`` is selected by ``split`` (``refer.py`` ``getRefIds``)."""
    if not isinstance(ref_split, str):
        return False
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def convert(
    annotations: str,
    images: str | None,
    counts: Counts,
    *,
    instances: str | None = None,
    split: str | None = None,
    source: str = "refcoco",
) -> Iterator[Record]:
    if instances is None:
        guess = os.path.join(os.path.dirname(annotations), "instances.json")
        if not os.path.isfile(guess):
            raise ValueError(
                f"refcoco needs --instances (the dataset's instances.json); none given and {guess} does not exist"
            )
        instances = guess
    if split is not None and split not in SPLITS:
        raise ValueError(f"refcoco --split must be one of {SPLITS} (as refer.py takes them), got {split!r}")
    refs = load_refs(annotations)
    inst = load_json(instances)
    for key in ("images", "annotations", "categories"):
        require(inst, key, list, instances)
    anns: dict[int, dict] = {}
    for k, a in enumerate(inst["annotations"]):
        at = f"{instances}: annotations[{k}] (id {a.get('id') if isinstance(a, dict) else None})"
        with counts.entry(at):
            require(a, "image_id", (int, str), at)
            anns[require(a, "id", int, at)] = a
    imgs = {i.get("id"): i for i in inst["images"] if isinstance(i, dict)}
    cats = {c.get("id"): c for c in inst["categories"] if isinstance(c, dict)}
    by_image: dict[Any, list[dict]] = {}
    for k, ref in enumerate(refs):
        where = f"{annotations}: refs[{k}] (ref_id {ref.get('ref_id') if isinstance(ref, dict) else None})"
        with counts.entry(where):
            ann_id = require(ref, "ann_id", int, where)
            sentences = require(ref, "sentences", list, where)
            if split is not None and not in_split(ref.get("split"), split):
                counts.skip("other_split")
                continue
            ann = anns.get(ann_id)
            if ann is None:
                counts.skip("ann_id_not_in_instances")
                continue
            texts = [s.get("raw") or s.get("sent") for s in sentences if isinstance(s, dict)]
            texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
            if not texts:
                counts.skip("no_sentence")
                continue
            region: dict[str, Any] = {
                "short_caption": texts[0],
                "extra": {
                    "ref_id": ref.get("ref_id"),
                    "ann_id": ann_id,
                    "split": ref.get("split"),
                    "expressions": texts,
                },
            }
            cat = cats.get(ann.get("category_id", ref.get("category_id")))
            if cat is not None and isinstance(cat.get("name"), str):
                region["category"] = name_text(cat["name"])
            img = imgs.get(ann["image_id"], {})
            at = f"{instances}: annotation id {ann_id}"
            mask = segmentation_mask(
                ann.get("segmentation"), at, (size_int(img.get("height")), size_int(img.get("width")))
            )
            if mask:
                region["mask"] = mask
            if ann.get("bbox"):
                region["box"] = xywh(ann["bbox"], at)
            if "mask" not in region and "box" not in region:
                counts.skip("no_mask_or_box")
                continue
            by_image.setdefault(ann["image_id"], []).append(region)
    for image_id, regions in by_image.items():
        img = imgs.get(image_id)
        if img is None:
            counts.skip("image_not_in_instances", len(regions))
            continue
        where = f"{instances}: image {image_id}"
        with counts.entry(where):
            rec = {
                "id": f"{source}/{image_id}",
                "image": media_path(images, image_file(img, where)),
                "source": source,
                "regions": regions,
            }
            for key in ("height", "width"):
                if size_int(img.get(key)) is not None:
                    rec[key] = size_int(img[key])
            yield record_from(rec, where)
