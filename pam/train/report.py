"""The short markdown report written at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..processing.collator import PAMCollator
from ..utils.visualize import overlay


@torch.no_grad()
def draw_examples(bundle, dataset, out_dir: Path, n: int = 4) -> list[Path]:
    """Predicted masks (and answers) for the first ``n`` image samples of ``dataset``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(n, len(dataset))):
        s = dataset[i]
        if s["media_type"] != "image":
            continue
        batch = PAMCollator(bundle.processor, for_generation=True)([s])
        r = bundle.model.generate(**batch, tokenizer=bundle.tokenizer, max_new_tokens=24)[0]
        p = s["prompt"]
        img = overlay(s["pixels"], r.mask.numpy(), box=p.get("box"), points=p.get("points"), labels=p.get("point_labels"), caption=r.text)
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
    (run / "summary.json").write_text(json.dumps({"final_checkpoint": str(final_checkpoint), "metrics": metrics}, indent=2))
    return path
