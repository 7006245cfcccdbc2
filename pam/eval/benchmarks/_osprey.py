"""LVIS and PACO region recognition in Osprey's val-1k format, scored as Osprey scores it.

The file is a JSON list; each entry has ``file_name``, ``height``, ``width``, ``categories`` (one
name per object) and ``annotations`` (``{"bbox": xywh, "segmentation": polygons or RLE}``), paired
with ``categories`` by index. Each object is one item; PAM is asked the ``category`` task with the
object's mask (``use_mask: false`` gives its box instead). Scores, micro-averaged over objects and
x100: ``semantic_similarity`` (cosine of all-MiniLM-L6-v2 embeddings) and ``semantic_iou`` (word
Jaccard), after the ``text_rule`` (see :mod:`pam.eval.text_rules`; default ``osprey``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig
from ..media import load_json
from ..predictions import match_predictions
from ..registry import Benchmark
from ..text_rules import TEXT_RULES, recognition_scores
from ._common import describe_image_items, media_root


@dataclass
class RecognitionConfig(BenchmarkConfig):
    generation: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(task="category", max_new_tokens=32, batch_size=8)
    )
    text_rule: str = "osprey"  # "osprey" (the paper's Table 1 script) or "videorefer"
    use_mask: bool = True  # prompt with the object's mask (Osprey does); false = its box
    image_root: str | None = None  # folder of the COCO images; None = the annotation file's folder
    similarity_model: str | None = None  # local sentence-transformers folder; None = all-MiniLM-L6-v2

    def validate(self) -> None:
        super().validate()
        if self.text_rule not in TEXT_RULES:
            raise ValueError(f"{self.name}.text_rule: expected one of {TEXT_RULES}, got {self.text_rule!r}")


class OspreyRecognition(Benchmark):
    config_class = RecognitionConfig
    official = {
        "repo": "CircleRadon/Osprey",
        "path": "osprey/eval/lvis_paco_eval.py",
        "commit": "deb0e57d7e771e8d2a8652236b0e348efb9b5c6a",
    }
    options = {
        "text_rule=videorefer": (
            "VideoRefer's clean-up (_ : , . ( ) to spaces on both texts, lower-cased) instead of Osprey's"
        ),
        "use_mask=false": "prompt with the object's box instead of its mask",
    }
    notes = (
        "The script's rules are followed: the answer keeps the text after its first ':' and loses '.', ':' and ','; "
        "the category loses '_' and ':'; similarity embeds both texts as they are, IoU compares lower-cased word sets; "
        "means over objects. Osprey generates with sampling at temperature 0.2; PAM decodes greedily by default."
    )
    metrics = ("semantic_similarity", "semantic_iou")

    def read_items(self, data: str | Path) -> list[dict]:
        entries = load_json(data)
        if not isinstance(entries, list):
            raise ValueError(f"{data}: expected a JSON list of images (Osprey's val-1k format)")
        root = str(media_root(data, self.config.image_root))
        items = []
        for k, entry in enumerate(entries):
            where = f"{data}: entry {k}"
            for key in ("file_name", "height", "width", "categories", "annotations"):
                if key not in entry:
                    raise ValueError(f"{where}: missing {key!r}")
            cats, anns = entry["categories"], entry["annotations"]
            if not isinstance(cats, list) or not isinstance(anns, list) or len(cats) != len(anns):
                raise ValueError(f"{where}: 'categories' and 'annotations' must be lists of equal length")
            for i, (cat, ann) in enumerate(zip(cats, anns)):
                if not isinstance(cat, str) or not cat.strip():
                    raise ValueError(f"{where}: category {i} must be a non-empty string, got {cat!r}")
                if not isinstance(ann, dict) or ("segmentation" not in ann and "bbox" not in ann):
                    raise ValueError(f"{where}: annotation {i} needs a segmentation or a bbox")
                items.append(
                    {
                        "id": f"{k}/{i}",
                        "root": root,
                        "image": entry["file_name"],
                        "height": entry["height"],
                        "width": entry["width"],
                        "category": cat,
                        "segmentation": ann.get("segmentation"),
                        "bbox": ann.get("bbox"),
                    }
                )
        if not items:
            raise ValueError(f"{data}: no objects")
        return items

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        texts = describe_image_items(items, generator, use_mask=self.config.use_mask)
        return [{"id": it["id"], "prediction": t} for it, t in zip(items, texts)]

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None, judge=None) -> dict[str, float]:
        rows = match_predictions(predictions, [it["id"] for it in items], self.name)
        preds = [r.get("prediction") for r in rows]
        bad = [r["id"] for r, p in zip(rows, preds) if not isinstance(p, str)]
        if bad:
            raise ValueError(f"{self.name}: predictions without a 'prediction' string: {bad[:10]}")
        per = recognition_scores(
            preds, [it["category"] for it in items], rule=self.config.text_rule, model_path=self.config.similarity_model
        )
        n = len(items)
        return {
            "semantic_similarity": 100.0 * sum(per["semantic_similarity"]) / n,
            "semantic_iou": 100.0 * sum(per["semantic_iou"]) / n,
            "num_items": n,
        }
