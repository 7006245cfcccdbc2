"""A whole training run: prepare data, train the stage(s), evaluate, report."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from .distributed import barrier, setup_distributed
from .sam2_teach import prepare_taught_sam2
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
    """Prepare the data, train every stage; the hooks evaluate and write the report. Returns the
    final metrics (also in metrics.json)."""
    info = setup_distributed(cfg.trainer.engine)  # the one place distributed is set up
    if info.is_main:
        prepare_data(cfg)
        prepare_taught_sam2(cfg)  # only with a `sam2_teach` section (the quick-start's debug SAM 2)
    barrier(info)  # other ranks read the data only once rank 0 has written it
    trainer = Trainer(cfg, dist=info)
    trainer.train()
    metrics = trainer.final_metrics
    trainer.close()
    return metrics
