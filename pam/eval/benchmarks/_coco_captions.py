"""Region captions in the COCO-caption format of GLaMM/Osprey (RefCOCOg val, Visual Genome test).

``{"images": [{"id", "file_name", "height", "width"}], "annotations": [{"id", "image_id", "bbox":
xywh, "segmentation"?, "caption"}]}``. Each annotation is one item, its caption the reference.
PAM is prompted with the region's box (``use_mask: true`` uses the segmentation when present).
Scores x100 through pycocoevalcap after its PTB tokenizer: METEOR and CIDEr (CIDEr's IDF comes
from the scored set, so score the whole split at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig
from ..media import load_json
from ..registry import Benchmark
from ._common import describe_image_items, media_root, score_captions


@dataclass
class RegionCaptionConfig(BenchmarkConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task="short_caption", max_new_tokens=64, batch_size=8)
    )
    metrics: tuple[str, ...] = ("METEOR", "CIDEr")  # pycocoevalcap metrics (METEOR, CIDEr, ROUGE_L)
    use_mask: bool = False  # prompt with the segmentation instead of the box, when there is one
    image_root: str | None = None  # image folder; None = the annotation file's folder

    def validate(self) -> None:
        super().validate()
        bad = [m for m in self.metrics if m not in ("METEOR", "CIDEr", "ROUGE_L")]
        if bad or not self.metrics:
            raise ValueError(f"{self.name}.metrics: unknown {bad}; choose from METEOR, CIDEr, ROUGE_L")


class COCORegionCaptions(Benchmark):
    config_class = RegionCaptionConfig

    def read_items(self, data: str | Path) -> list[dict]:
        doc = load_json(data)
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("images"), list)
            or not isinstance(doc.get("annotations"), list)
        ):
            raise ValueError(f"{data}: expected a COCO-caption JSON with 'images' and 'annotations' lists")
        root = str(media_root(data, self.config.image_root))
        images = {}
        for k, img in enumerate(doc["images"]):
            if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
                raise ValueError(f"{data}: images[{k}] needs 'id' and 'file_name'")
            images[img["id"]] = img
        items, seen = [], set()
        for k, ann in enumerate(doc["annotations"]):
            where = f"{data}: annotations[{k}]"
            for key in ("id", "image_id", "bbox", "caption"):
                if key not in ann:
                    raise ValueError(f"{where}: missing {key!r}")
            if ann["image_id"] not in images:
                raise ValueError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
            if not isinstance(ann["caption"], str) or not ann["caption"].strip():
                raise ValueError(f"{where}: 'caption' must be a non-empty string")
            if ann["id"] in seen:
                raise ValueError(f"{where}: duplicate annotation id {ann['id']!r}")
            seen.add(ann["id"])
            img = images[ann["image_id"]]
            items.append(
                {
                    "id": ann["id"],
                    "root": root,
                    "image": img["file_name"],
                    "bbox": ann["bbox"],
                    "segmentation": ann.get("segmentation"),
                    "references": [ann["caption"]],
                }
            )
        if not items:
            raise ValueError(f"{data}: no annotations")
        items.sort(key=lambda it: it["image"])  # regions of one image together: one SAM 2 encode
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        texts = describe_image_items(items, generator, use_mask=self.config.use_mask)
        return [{"id": it["id"], "prediction": t} for it, t in zip(items, texts)]

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        return score_captions(predictions, items, self.config.metrics, self.name)
