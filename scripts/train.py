"""Train PAM: the same Hydra application as `pam train` (configs/train.yaml), kept for the launchers.

python scripts/train.py experiment=quickstart
torchrun --nproc_per_node 8 scripts/train.py model=pam_1.5b data=pam_release stage=stage2 trainer=deepspeed_zero2
"""

import sys

from pam.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
