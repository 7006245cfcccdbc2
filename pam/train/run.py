"""A whole training run: prepare data, train the stage(s), evaluate, report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from .distributed import barrier, setup_distributed
from .trainer import Trainer

log = logging.getLogger("pam.train")


def prepare_data(cfg: DictConfig) -> None:
    """Generate the synthetic quick-start data when the data config asks for it and it is missing."""
    gen = cfg.data.get("generate")
    if not gen:
        return
    root = Path(cfg.data.root)
    if (root / "info.json").is_file():
        return
    from hydra.utils import instantiate

    from ..data.synthetic import generate_quickstart

    generate_quickstart(str(root), instantiate(gen, _convert_="all"))


def run(cfg: DictConfig) -> dict:
    info = setup_distributed(cfg.trainer.engine)
    if info.is_main:
        prepare_data(cfg)
    barrier(info)  # other ranks read the data only once rank 0 has written it
    trainer = Trainer(cfg)
    final = trainer.train()
    metrics = {}
    if trainer.cfg.evaluate_at_end and trainer.dist.is_main and "test" in cfg.data and cfg.data.test is not None:
        from ..eval.region_eval import predict_dataset, score_predictions
        from .report import write_report

        preds = predict_dataset(
            trainer.bundle, trainer._dataset("test"), trainer.run_dir / "predictions.jsonl", max_samples=trainer.cfg.eval_max_samples
        )
        metrics = score_predictions(preds)
        (trainer.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        write_report(trainer, final, metrics)
        print(json.dumps(metrics, indent=2, sort_keys=True), flush=True)
    elif trainer.dist.is_main:
        last = {}
        path = trainer.run_dir / "metrics.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                last.update(json.loads(line))
        metrics = {k: v for k, v in last.items() if k.startswith(("train/", "val/"))}
        (trainer.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    trainer.close()
    return metrics
