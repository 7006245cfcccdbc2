"""The short markdown report written at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

from ..inference.generation import GenerationSettings
from ..inference.predictor import PAMPredictor
from ..inference.results import RegionResult
from ..utils.visualize import overlay

EXAMPLE_TOKENS = 24  # greedy tokens per example answer


def example_predictions(bundle, dataset, n: int = 4) -> list[tuple[int, dict, RegionResult]]:
    """``(index, sample, result)`` for the image samples among the first ``n`` of ``dataset``:
    the predictor's greedy answer (``EXAMPLE_TOKENS`` at most) to each sample's user turn, its
    mask and score."""
    was_training = bundle.model.training
    predictor = PAMPredictor(bundle, generation=GenerationSettings.greedy(EXAMPLE_TOKENS), vision_dtype="float32")
    out = []
    try:
        for i in range(min(n, len(dataset))):
            s = dataset[i]
            if s["media_type"] != "image":
                continue
            turns = s["turns"][:-1] if s["turns"][-1]["role"] == "assistant" else s["turns"]
            [r] = predictor.generate_samples([{**s, "turns": turns}])
            out.append((i, s, r))
    finally:
        bundle.model.train(was_training)
    return out


def draw_examples(bundle, dataset, out_dir: Path, n: int = 4) -> list[Path]:
    """Predicted masks (and answers) for the first ``n`` image samples of ``dataset``
    (:func:`example_predictions`), drawn over their images."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s, r in example_predictions(bundle, dataset, n):
        p = s["prompt"]
        img = overlay(
            s["pixels"], r.mask, box=p.get("box"), points=p.get("points"), labels=p.get("point_labels"), caption=r.text
        )
        path = out_dir / f"example_{i}.png"
        img.save(path)
        paths.append(path)
    return paths


def write_report(trainer, final_checkpoint: Path, metrics: dict) -> Path:
    run = Path(trainer.run_dir)
    examples = draw_examples(trainer.bundle, trainer.dataset("test"), run / "examples")
    lines = [
        f"# PAM run: {run.name}",
        "",
        f"- run folder: `{run}`",
        f"- final checkpoint: `{final_checkpoint}`",
        f"- stages: {', '.join(s.name + f' ({s.max_steps} steps)' for s in trainer.stages)}",
        "- training curves: ![curves](curves.png)",
        "",
        "## Held-out metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())],
        "",
        "## Predicted masks and answers",
        "",
        *[f"![{p.stem}]({p.relative_to(run)})" for p in examples],
        "",
        "Predictions: `predictions.jsonl`; metrics: `metrics.json`; config: `config.yaml`.",
    ]
    path = run / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (run / "summary.json").write_text(
        json.dumps({"final_checkpoint": str(final_checkpoint), "metrics": metrics}, indent=2)
    )
    return path
