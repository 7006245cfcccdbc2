"""Evaluate PAM on a benchmark: the same as `pam eval` (configs/evaluate.yaml + the eval group).

python scripts/eval.py eval=lvis checkpoint=CKPT data_path=lvis_val_1k_category.json out=runs/eval/lvis
torchrun --nproc_per_node 8 scripts/eval.py eval=refcocog checkpoint=CKPT data_path=... out=...
"""

import sys

from pam.cli import main

sys.exit(main(["eval", *sys.argv[1:]]))
