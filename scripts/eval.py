"""Evaluate PAM on a benchmark: a Hydra app over pam.eval (configs/evaluate.yaml + configs/eval/NAME.yaml).

    python scripts/eval.py eval=lvis checkpoint=CKPT data_path=lvis_val_1k_category.json out=runs/eval/lvis
    torchrun --nproc_per_node 8 scripts/eval.py eval=refcocog checkpoint=CKPT data_path=... out=...
"""

import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from pam.cli import main as pam_cli


@hydra.main(config_path="../configs", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    eval_cfg = OmegaConf.to_container(cfg.eval, resolve=True)
    name = eval_cfg.pop("name")
    argv = ["eval", name, "--checkpoint", str(cfg.checkpoint), "--data", str(cfg.data_path), "--out", str(cfg.out), "--limit", str(cfg.limit)]
    for key, value in _flatten(eval_cfg):
        argv += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: the CLI parses it back
    if cfg.device:
        argv += ["--device", str(cfg.device)]
    if not cfg.progress:
        argv.append("--no-progress")
    code = pam_cli(argv)
    if code:
        sys.exit(code)


def _flatten(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


if __name__ == "__main__":
    main()
