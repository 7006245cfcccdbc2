"""Verbs around data and runs: ``make-data``, ``collect-sweep`` (``score`` lives in :mod:`pam.cli.eval`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

_TYPES = {"int": int, "float": float, "str": str}


def _add_synthetic_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of ``SyntheticConfig`` (``--objects-per-image 3``, ``--allow-occlusion``)."""
    from ..data.synthetic import SyntheticConfig

    defaults = SyntheticConfig()
    for f in dataclasses.fields(SyntheticConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.type in _TYPES:
            parser.add_argument(flag, type=_TYPES[f.type], default=default, help=f"default: {default}")
        elif f.type == "tuple[int, int]":
            parser.add_argument(flag, type=int, nargs=2, default=default, metavar=("H", "W"), help=f"default: {default}")
        elif f.type == "tuple[tuple[int, int], ...]":
            parser.add_argument(flag, type=_size, nargs="*", default=default, metavar="HxW", help=f"default: {' '.join(f'{h}x{w}' for h, w in default)}")
        else:
            raise TypeError(f"SyntheticConfig.{f.name}: no command-line flag for type {f.type}")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 240x320), got {text!r}") from None
    return h, w


def register(sub: argparse._SubParsersAction) -> None:
    make = sub.add_parser(
        "make-data",
        help="write the synthetic quick-start dataset",
        description="Write the synthetic quick-start dataset (layout and knobs: pam/data/synthetic.py), e.g.\n"
        "  pam make-data --out data/hard --objects-per-image 3 --max-rotation 45 --allow-occlusion",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    make.add_argument("--out", required=True, help="output folder")
    _add_synthetic_flags(make)
    make.set_defaults(func=_make_data)
    sweep = sub.add_parser(
        "collect-sweep",
        help="collect a Hydra multirun folder into sweep.md and sweep.csv",
        description="One row per run: its status (complete once it wrote metrics.json), the config values "
        "that differ between runs, and its final metrics.",
    )
    sweep.add_argument("sweep_dir", type=Path, help="the multirun folder holding one folder per job")
    sweep.add_argument("--out-dir", type=Path, default=None, help="where to write (default: sweep_dir)")
    sweep.set_defaults(func=_collect_sweep)


def _make_data(args: argparse.Namespace) -> int:
    from ..data.synthetic import SyntheticConfig, generate_quickstart

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticConfig)}
    options = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v for k, v in options.items()}
    start = time.perf_counter()
    files = generate_quickstart(args.out, SyntheticConfig(**options))
    print(json.dumps({"out": args.out, "files": files, "seconds": round(time.perf_counter() - start, 2)}, indent=2))
    return 0


def _collect_sweep(args: argparse.Namespace) -> int:
    from ..train.sweep import collect_sweep, write_sweep_tables

    table = collect_sweep(args.sweep_dir)
    md, csv = write_sweep_tables(table, args.out_dir or args.sweep_dir)
    print(table.to_markdown(), end="")
    print(f"wrote {md} and {csv}")
    return 0
