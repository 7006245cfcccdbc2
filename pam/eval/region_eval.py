"""Generate answers for a region dataset into a prediction file, then score that file.

The two steps are separate so scoring can be re-run without the model. A prediction row holds
the sample id, task, language, the model's answer, the reference answer and the category.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..processing.collator import PAMCollator
from .benchmarks import read_predictions, write_predictions
from .metrics import caption_metrics, category_accuracy, semantic_similarity

CAPTION_TASKS = ("short_caption", "detailed_caption", "video_caption")


@torch.no_grad()
def predict_dataset(bundle, dataset, out_path: str | Path, *, batch_size: int = 8, max_new_tokens: int = 48, max_samples: int = 0) -> Path:
    model = bundle.model
    model.eval()
    indices = list(range(len(dataset)))[: max_samples or None]
    subset = torch.utils.data.Subset(dataset, indices)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=lambda s: (s, PAMCollator(bundle.processor, for_generation=True)(s)))
    rows = []
    for samples, batch in loader:
        results = model.generate(**batch, tokenizer=bundle.tokenizer, max_new_tokens=max_new_tokens)
        for s, r in zip(samples, results):
            rows.append(
                {
                    "id": s["id"],
                    "task": s.get("task"),
                    "language": s.get("language"),
                    "prediction": r.text,
                    "reference": s["turns"][-1]["content"],
                    "category": (s.get("meta") or {}).get("category"),
                    "mask_score": r.score,
                }
            )
    return write_predictions(out_path, rows)


def score_predictions(path: str | Path) -> dict[str, float]:
    """Category accuracy (category task), semantic similarity (all), caption metrics (captions)."""
    rows = read_predictions(path)
    if not rows:
        raise ValueError(f"{path}: no predictions to score")
    out: dict[str, float] = {"num_predictions": float(len(rows))}
    cat = [r for r in rows if r["task"] == "category"]
    if cat:
        out["category_accuracy"] = category_accuracy([r["prediction"] for r in cat], [r["reference"] for r in cat])
    out["semantic_similarity"] = semantic_similarity([r["prediction"] for r in rows], [r["reference"] for r in rows])
    caps = [r for r in rows if r["task"] in CAPTION_TASKS and r.get("language", "en") == "en"]
    if caps:
        scores = caption_metrics([r["prediction"] for r in caps], [[r["reference"]] for r in caps], metrics=("METEOR", "CIDEr", "BLEU"))
        out.update({f"caption_{k}": v for k, v in scores.items()})
    return out
