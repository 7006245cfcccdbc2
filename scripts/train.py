"""Train PAM: a Hydra app over pam.train.run (configs/train.yaml).

    python scripts/train.py experiment=quickstart
    torchrun --nproc_per_node 8 scripts/train.py model=pam_1.5b data=pam_release stage=stage2 trainer=deepspeed_zero2
"""

import logging

import hydra
from omegaconf import DictConfig

from pam.train.run import run_cli


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_cli(cfg)  # bad input: one line on stderr, exit code 2


if __name__ == "__main__":
    main()
