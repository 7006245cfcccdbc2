"""``pam train``: the Hydra application over configs/train.yaml (``scripts/train.py`` is a shim of it).

Everything after ``train`` goes to Hydra unchanged: overrides, ``-m`` (multirun), ``--cfg job``,
``--hydra-help``. Only ``-h``/``--help`` is answered here, before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Train PAM with Hydra: compose configs/train.yaml, apply the overrides, run (pam.train.run).

config: configs/train.yaml, the root of the tree configs/ (docs/configs.md); its defaults list
picks one option per group:
  model=debug       configs/model/*.yaml     defaults: pam/modeling/config.py PAMConfig (model/schema)
  data=quickstart   configs/data/*.yaml      prompt defaults: pam/data/prompt_sampling.py (data/schema)
  stage=stage1      configs/stage/*.yaml     defaults: pam/train/config.py StageConfig (stage/schema)
  trainer=default   configs/trainer/*.yaml   defaults: pam/train/config.py TrainerConfig (trainer/schema)
  experiment=NAME   configs/experiment/*.yaml  (optional, # @package _global_ overrides)
A YAML file holds only what differs from its schema; `--cfg job` prints the composed config.

examples:
  pam train experiment=quickstart
  pam train model=pam_1.5b data=pam_release stage=stage2 trainer=deepspeed_zero2 model.sam2.checkpoint=...
  pam train -m experiment=ablation_sweep                      (multirun, one job per combination)
  pam train --cfg job experiment=quickstart                   (print the composed config and exit)
  torchrun --nproc_per_node 8 -m pam.cli train ...            (or scripts/train.py, same arguments)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train PAM: Hydra overrides of configs/train.yaml, -m for multirun",
        description=DESCRIPTION,
        usage="pam train [-m] [--cfg job] [KEY=VALUE | GROUP=OPTION ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=_train, passthrough=True)


def _train(args: argparse.Namespace) -> int:
    import hydra

    from ..train import config as _schemas  # noqa: F401  (registers the groups' schema defaults)
    from ..utils.config import CONFIG_DIR, check_renamed_overrides

    check_renamed_overrides(args.extra)  # a renamed key: one line naming the new one (exit 2), before Hydra's error

    saved = sys.argv
    sys.argv = ["pam train", *args.extra]  # Hydra reads its own command line
    try:
        hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")(_task)()
    finally:
        sys.argv = saved
    return 0


def _task(cfg) -> None:
    import logging

    from ..train.run import run_cli

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_cli(cfg)  # bad input: one line on stderr, exit code 2
