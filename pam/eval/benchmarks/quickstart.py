"""The synthetic quick-start test split: the end-of-training evaluation of the quick-start runs.

Data: a PAM-format JSONL (``test.jsonl`` written by ``pam make-data``), or a folder holding it.
Every (region, task, language) is one item; the task prompt comes from the item. Prediction rows
carry their reference, so ``pam score quickstart PRED`` needs no data. Scores (fractions):
``category_accuracy`` (category task), ``semantic_similarity`` (all rows) and, on English captions,
``caption_meteor``, ``caption_cider`` and ``caption_bleu_1..4``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BenchmarkConfig, GenerationConfig
from ..metrics import caption_metrics, category_accuracy, semantic_similarity
from ..registry import Benchmark, register

CAPTION_TASKS = ("short_caption", "detailed_caption", "video_caption")


@dataclass
class QuickstartConfig(BenchmarkConfig):
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(task=None, max_new_tokens=128, batch_size=8))
    tasks: tuple[str, ...] = ("category", "short_caption")  # tasks asked of every test region
    languages: tuple[str, ...] = ("en",)  # prompt languages
    data_seed: int = 0  # seeds the point/box prompt drawn for each region
    similarity_model: str | None = None  # local sentence-transformers folder; None = all-MiniLM-L6-v2


def dataset_item_id(dataset, index: int) -> str:
    """A sample's id without decoding it, where the dataset can tell (RegionDataset, mixtures of them)."""
    if hasattr(dataset, "sample_id"):
        return dataset.sample_id(index)
    if hasattr(dataset, "locate") and hasattr(dataset, "components"):
        k, j = dataset.locate(index)
        inner = dataset.components[k].dataset
        if hasattr(inner, "sample_id"):
            return f"{dataset.components[k].name}/{inner.sample_id(j)}"
    return str(index)


@register
class Quickstart(Benchmark):
    name = "quickstart"
    config_class = QuickstartConfig
    needs_data_to_score = False
    description = "synthetic quick-start test split (category accuracy, similarity, captions)"
    metrics = ("category_accuracy", "semantic_similarity", "caption_meteor", "caption_cider")
    notes = (
        "No official protocol: the synthetic split and its scoring are this repository's own. Scores are fractions "
        "(0 to 1); caption metrics are computed on English caption prompts only."
    )

    dataset = None

    def read_items(self, data: str | Path) -> list[dict]:
        from ...data.datasets import load_region_dataset

        path = Path(data)
        if path.is_dir():
            path = path / "test.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"quickstart data {path} does not exist (write it with `pam make-data --out DIR`)")
        cfg = self.config
        dataset = load_region_dataset(
            str(path), tasks=list(cfg.tasks), languages=list(cfg.languages), task_mode="all", seed=cfg.data_seed, name="quickstart",
            track_frames=cfg.generation.track_frames,
        )
        return self.use_dataset(dataset)

    def use_dataset(self, dataset) -> list[dict]:
        """Evaluate an already built dataset of region samples (the trainer's test split; its video
        clips are tracked as its own ``track_frames`` says)."""
        self.dataset = dataset
        return [{"id": dataset_item_id(dataset, i), "index": i} for i in range(len(dataset))]

    def predict(self, items: Sequence[dict], generator) -> list[dict]:
        if self.dataset is None:
            raise RuntimeError("quickstart.predict before read_items/use_dataset")
        samples = [self.dataset[it["index"]] for it in items]
        results = generator.generate_samples(samples)
        rows = []
        for it, s, r in zip(items, samples, results):
            rows.append(
                {
                    "id": it["id"],
                    "sample_id": s["id"],
                    "task": s.get("task"),
                    "language": s.get("language"),
                    "prediction": r.text,
                    "reference": s["turns"][-1]["content"],
                    "category": (s.get("meta") or {}).get("category"),
                    "mask_score": r.score,
                }
            )
        return rows

    def score(self, predictions: Sequence[dict], items: Sequence[dict] | None = None, judge=None) -> dict[str, float]:
        rows = list(predictions)
        if not rows:
            raise ValueError("quickstart: no predictions to score")
        for r in rows:
            for key in ("prediction", "reference", "task"):
                if not isinstance(r.get(key), str):
                    raise ValueError(f"quickstart prediction {r.get('id')!r}: {key!r} must be a string, got {r.get(key)!r}")
        out: dict[str, float] = {"num_predictions": float(len(rows))}
        cat = [r for r in rows if r["task"] == "category"]
        if cat:
            out["category_accuracy"] = category_accuracy([r["prediction"] for r in cat], [r["reference"] for r in cat])
        out["semantic_similarity"] = semantic_similarity([r["prediction"] for r in rows], [r["reference"] for r in rows], model_path=self.config.similarity_model)
        caps = [r for r in rows if r["task"] in CAPTION_TASKS and r.get("language", "en") == "en"]
        if caps:
            scores = caption_metrics([r["prediction"] for r in caps], [[r["reference"]] for r in caps], metrics=("METEOR", "CIDEr", "BLEU"))
            out.update({f"caption_{k}": v for k, v in scores.items()})
        return out
