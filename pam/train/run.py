"""A whole training run: prepare data, train the stage(s), evaluate, report."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from ..utils.stop import EXIT_STOPPED
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
    final metrics (also in metrics.json). After a stop signal (pam/utils/stop.py) the process exits
    with ``EXIT_STOPPED`` once the checkpoint is written."""
    info = setup_distributed(
        cfg.trainer.engine, cfg.trainer.get("dist_timeout_s", 600.0)
    )  # the one place distributed is set up
    if info.is_main:
        prepare_data(cfg)
        prepare_taught_sam2(cfg)  # only with a `sam2_teach` section (the quick-start's debug SAM 2)
    barrier(info)  # other ranks read the data only once rank 0 has written it
    trainer = Trainer(cfg, dist=info)
    trainer.train()
    metrics = trainer.final_metrics
    trainer.close()  # a multi-process run exits here
    if trainer.stopped:
        raise SystemExit(EXIT_STOPPED)
    return metrics


def run_cli(cfg: DictConfig) -> dict:
    """:func:`run` for a command line (the Hydra task): bad input found before training (a config
    value, a missing data or output folder) ends with one line on stderr and exit code 2."""
    from ..data.schema import SchemaError
    from ..utils.config import ConfigError
    from .preflight import OutputDirError

    try:
        return run(cfg)
    except (ConfigError, SchemaError, OutputDirError, FileNotFoundError) as err:
        print(f"pam train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
