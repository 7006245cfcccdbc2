"""`pam` command: small utilities around the library (training itself is scripts/train.py, a Hydra app).

    pam make-data --out data/quickstart          # the synthetic quick-start dataset
    pam score runs/quickstart/predictions.jsonl  # re-score a prediction file, no model needed
    pam collect-sweep multirun/ablation          # sweep.md + sweep.csv
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pam", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-data", help="write the synthetic quick-start dataset")
    make.add_argument("--out", required=True)
    make.add_argument("--seed", type=int, default=0)
    score = sub.add_parser("score", help="score a region prediction file")
    score.add_argument("predictions")
    sweep = sub.add_parser("collect-sweep", help="collect a Hydra multirun folder into one table")
    sweep.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    if args.command == "make-data":
        from .data.synthetic import SyntheticConfig, generate_quickstart

        print(json.dumps(generate_quickstart(args.out, SyntheticConfig(seed=args.seed)), indent=2))
    elif args.command == "score":
        from .eval.region_eval import score_predictions

        print(json.dumps(score_predictions(args.predictions), indent=2, sort_keys=True))
    else:
        from .train.sweep import collect_sweep, write_sweep_tables

        md, csv = write_sweep_tables(collect_sweep(args.sweep_dir), args.sweep_dir)
        print(md.read_text())
        print(f"wrote {md} and {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
