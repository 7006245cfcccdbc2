"""RefCOCOg val region captions in either official layout (``layout: auto`` tells them apart).

- ``glamm``: GLaMM's ``finetune_refcocog_val_captions.json``: COCO ``images`` and ``annotations``, the
  reference ``caption`` on each annotation (see :mod:`._coco_captions`).
- ``osprey``: Osprey's ``finetune_refcocog_val_with_mask.json``, read as CircleRadon/Osprey
  ``osprey/eval/refcocog_eval.py`` reads it: every annotation of an image is one region, with its
  ``segmentation`` and no caption; the reference is the image's ``caption``; the image file is the last
  ``_``-separated part of ``file_name``. Answers get Osprey's clean-up before scoring: stripped, only the
  text after the first ``:`` (up to a second one) kept when there is a ``:``, and ``.`` written ``.\\n``.

Scores x100 through pycocoevalcap after its PTB tokenizer: METEOR and CIDEr.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..media import load_json
from ..registry import register
from ._coco_captions import COCORegionCaptions, RegionCaptionConfig
from ._common import media_root, score_captions

LAYOUTS = ("auto", "glamm", "osprey")


@dataclass
class RefCOCOgConfig(RegionCaptionConfig):
    layout: str = "auto"  # "glamm" (caption on annotations), "osprey" (caption on images) or "auto" (from the file)

    def validate(self) -> None:
        super().validate()
        if self.layout not in LAYOUTS:
            raise ValueError(f"refcocog.layout: expected one of {LAYOUTS}, got {self.layout!r}")


def osprey_cleanup(answer: str) -> str:
    """Osprey's refcocog_eval.py clean-up of a generated answer."""
    answer = answer.strip()
    if ":" in answer:
        answer = answer.split(":")[1]
    return answer.replace(".", ".\n")


def detect_layout(doc: dict) -> str:
    anns, images = doc.get("annotations") or [], doc.get("images") or []
    if anns and all(isinstance(a, dict) and "caption" in a for a in anns):
        return "glamm"
    if any(isinstance(i, dict) and "caption" in i for i in images):
        return "osprey"
    return "glamm"  # the GLaMM reader names the missing field


def _bbox_of(segmentation, height: int, width: int, where: str) -> list[float]:
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        box = [float(v) for v in mask_utils.toBbox(rle)]
    except Exception as err:  # pycocotools raises several types on bad polygons / RLE
        raise ValueError(f"{where}: field 'segmentation' cannot be decoded ({err})") from err
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"{where}: field 'segmentation' is empty")
    return box


@register
class RefCOCOg(COCORegionCaptions):
    name = "refcocog"
    config_class = RefCOCOgConfig
    paper = {"meteor": 26.9, "cider": 143.1}  # PAM-3B, paper tables
    description = "RefCOCOg region captions: METEOR / CIDEr"
    official = {
        "repo": "CircleRadon/Osprey",
        "path": "osprey/eval/refcocog_eval.py",
        "commit": "deb0e57d7e771e8d2a8652236b0e348efb9b5c6a",
    }
    options = {
        "layout=glamm": (
            "GLaMM's finetune_refcocog_val_captions.json (caption on each annotation), scored as "
            "mbzuai-oryx/groundingLMM eval/region_captioning/evaluate.py @ e74865f; picked by auto when every "
            "annotation has a caption"
        ),
        "use_mask=true": "prompt with the segmentation instead of the box (Osprey's own script prompts with the mask)",
    }
    notes = (
        "Osprey's README scores its outputs with 'CaptionMetrics' without saying how it tokenises; the harness uses "
        "pycocoevalcap's COCO pipeline (PTB tokenizer), the one GLaMM's layout is scored with, on the answers after "
        "Osprey's clean-up. Osprey generates with sampling at temperature 0.2; PAM decodes greedily by default."
    )
    metrics = ("meteor", "cider")

    def read_items(self, data: str | Path) -> list[dict]:
        doc = load_json(data)
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("images"), list)
            or not isinstance(doc.get("annotations"), list)
        ):
            raise ValueError(f"{data}: expected a COCO JSON with 'images' and 'annotations' lists")
        layout = self.config.layout if self.config.layout != "auto" else detect_layout(doc)
        if layout == "glamm":
            return super().read_items(data)
        return self._read_osprey(data, doc)

    def _read_osprey(self, data: str | Path, doc: dict) -> list[dict]:
        root = str(media_root(data, self.config.image_root))
        images = {}
        for k, img in enumerate(doc["images"]):
            where = f"{data}: images[{k}]"
            if not isinstance(img, dict):
                raise ValueError(f"{where}: expected an object")
            for key in ("id", "file_name", "height", "width", "caption"):
                if key not in img:
                    raise ValueError(f"{where}: field {key!r} is missing")
            if not isinstance(img["caption"], str) or not img["caption"].strip():
                raise ValueError(f"{where}: field 'caption' must be a non-empty string")
            if not isinstance(img["file_name"], str):
                raise ValueError(f"{where}: field 'file_name' has a bad value {img['file_name']!r}")
            images[img["id"]] = img
        items, seen = [], set()
        for k, ann in enumerate(doc["annotations"]):
            where = f"{data}: annotations[{k}]"
            if not isinstance(ann, dict):
                raise ValueError(f"{where}: expected an object")
            for key in ("id", "image_id", "segmentation"):
                if key not in ann:
                    raise ValueError(f"{where}: field {key!r} is missing")
            if ann["image_id"] not in images:
                raise ValueError(f"{where}: field 'image_id' {ann['image_id']!r} is not in 'images'")
            if ann["id"] in seen:
                raise ValueError(f"{where}: field 'id' {ann['id']!r} repeats")
            seen.add(ann["id"])
            img = images[ann["image_id"]]
            seg = ann["segmentation"]
            if not isinstance(seg, (list, dict)):
                raise ValueError(f"{where}: field 'segmentation' has a bad value {seg!r}")
            bbox = ann.get("bbox") or _bbox_of(seg, int(img["height"]), int(img["width"]), where)
            items.append(
                {
                    "id": ann["id"],
                    "root": root,
                    "image": img["file_name"].split("_")[-1],
                    "bbox": bbox,
                    "segmentation": seg,
                    "references": [img["caption"]],
                    "cleanup": "osprey",
                }
            )
        if not items:
            raise ValueError(f"{data}: no annotations")
        items.sort(key=lambda it: it["image"])
        return items

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        by_item = {it["id"]: it for it in items}
        cleaned = []
        for row in predictions:
            item = by_item.get(row.get("id"))
            if item is not None and item.get("cleanup") == "osprey" and isinstance(row.get("prediction"), str):
                row = {**row, "prediction": osprey_cleanup(row["prediction"])}
            cleaned.append(row)
        return score_captions(cleaned, items, self.config.metrics, self.name)
