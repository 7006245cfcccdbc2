"""Verbs around data and runs: ``make-data``, ``collect-sweep`` (``score`` lives in :mod:`pam.cli.eval`)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    make = sub.add_parser("make-data", help="write the synthetic quick-start dataset")
    make.add_argument("--out", required=True)
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(func=_make_data)
    sweep = sub.add_parser("collect-sweep", help="collect a Hydra multirun folder into one table")
    sweep.add_argument("sweep_dir")
    sweep.set_defaults(func=_collect_sweep)


def _make_data(args: argparse.Namespace) -> int:
    from ..data.synthetic import SyntheticConfig, generate_quickstart

    print(json.dumps(generate_quickstart(args.out, SyntheticConfig(seed=args.seed)), indent=2))
    return 0


def _collect_sweep(args: argparse.Namespace) -> int:
    from ..train.sweep import collect_sweep, write_sweep_tables

    md, csv = write_sweep_tables(collect_sweep(args.sweep_dir), args.sweep_dir)
    print(md.read_text())
    print(f"wrote {md} and {csv}")
    return 0
