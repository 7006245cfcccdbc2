"""RefCOCO / RefCOCO+ / RefCOCOg: the ``refs(unc).p`` / ``refs(umd).p`` pickle (or the same list as
JSON) together with the dataset's ``instances.json``.

Each ref becomes one region: the referred instance's mask and box, its COCO category, the first
referring sentence as ``short_caption`` and all sentences under ``extra.expressions``. Refs of one
image share a record. ``split`` keeps one split (``train``, ``val``, ``testA``, ``testB``, ``test``).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from typing import Any

from pam.data.schema import Record

from ..records import ConvertError, Counts, load_json, media_path, record_from, require
from .coco import image_file, name_text

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


def convert(
    annotations: str, images: str | None, counts: Counts, *, instances: str | None = None, split: str | None = None, source: str = "refcoco"
) -> Iterator[Record]:
    if instances is None:
        guess = os.path.join(os.path.dirname(annotations), "instances.json")
        if not os.path.isfile(guess):
            raise ValueError(f"refcoco needs --instances (the dataset's instances.json); none given and {guess} does not exist")
        instances = guess
    refs = load_refs(annotations)
    inst = load_json(instances)
    for key in ("images", "annotations", "categories"):
        require(inst, key, list, instances)
    anns = {a["id"]: a for a in inst["annotations"]}
    imgs = {i["id"]: i for i in inst["images"]}
    cats = {c["id"]: c for c in inst["categories"]}
    by_image: dict[Any, list[dict]] = {}
    for k, ref in enumerate(refs):
        where = f"{annotations}: refs[{k}] (ref_id {ref.get('ref_id') if isinstance(ref, dict) else None})"
        ann_id = require(ref, "ann_id", int, where)
        sentences = require(ref, "sentences", list, where)
        if split is not None and ref.get("split") != split:
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
            "extra": {"ref_id": ref.get("ref_id"), "ann_id": ann_id, "split": ref.get("split"), "expressions": texts},
        }
        cat = cats.get(ann.get("category_id", ref.get("category_id")))
        if cat is not None:
            region["category"] = name_text(cat["name"])
        seg = ann.get("segmentation")
        if isinstance(seg, list):
            seg = [p for p in seg if isinstance(p, list) and len(p) >= 6] or None
        if seg:
            region["mask"] = seg
        if ann.get("bbox"):
            region["box"] = [float(c) for c in ann["bbox"]]
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
        rec = {"id": f"{source}/{image_id}", "image": media_path(images, image_file(img, where)), "source": source, "regions": regions}
        for key in ("height", "width"):
            if isinstance(img.get(key), int):
                rec[key] = img[key]
        yield record_from(rec, where)
