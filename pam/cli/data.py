"""Verbs around data and runs: ``data`` (the data_pipeline verbs), ``make-data``, ``collect-sweep``
(``score`` lives in :mod:`pam.cli.eval`)."""

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
            parser.add_argument(
                flag, type=int, nargs=2, default=default, metavar=("H", "W"), help=f"default: {default}"
            )
        elif f.type == "tuple[tuple[int, int], ...]":
            parser.add_argument(
                flag,
                type=_size,
                nargs="*",
                default=default,
                metavar="HxW",
                help=f"default: {' '.join(f'{h}x{w}' for h, w in default)}",
            )
        else:
            raise TypeError(f"SyntheticConfig.{f.name}: no command-line flag for type {f.type}")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 240x320), got {text!r}") from None
    return h, w


DATA_VERBS = "convert, refine, filter, translate, variants, stream, merge, prompts"
DATA_EPILOG = (
    "No config group: every option is a flag, its default in data_pipeline/cli.py (docs/data_pipeline.md). "
    "`python -m data_pipeline VERB ...` is the same command."
)


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help=f"build region data: {DATA_VERBS} (pam data VERB --help)", add_help=False)
    data.set_defaults(func=_data, passthrough=True)
    # its flags come from SyntheticConfig, whose module imports torch: they are added when the verb runs
    make = sub.add_parser("make-data", help="write the synthetic quick-start dataset", add_help=False)
    make.set_defaults(func=_make_data, passthrough=True)
    sweep = sub.add_parser(
        "collect-sweep",
        help="collect a Hydra multirun folder into sweep.md and sweep.csv",
        description="One row per run: its status (complete once it wrote metrics.json), the config values "
        "that differ between runs, and its final metrics. The sweep comes from `pam train -m ...` (docs/configs.md).",
    )
    sweep.add_argument("sweep_dir", type=Path, help="the multirun folder holding one folder per job")
    sweep.add_argument("--out-dir", type=Path, default=None, help="where to write (default: sweep_dir)")
    sweep.set_defaults(func=_collect_sweep)


def _data(args: argparse.Namespace) -> int:
    """Dispatch to data_pipeline's own parser and main, shown as ``pam data``."""
    from data_pipeline import cli

    parser = cli.build_parser()
    parser.prog, parser.epilog = "pam data", DATA_EPILOG
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, verb in action.choices.items():
                verb.prog, verb.epilog = f"pam data {name}", DATA_EPILOG
    parser.parse_args(args.extra)  # --help and usage errors, under the name `pam data`
    return cli.main(args.extra)


def _make_data_parser() -> argparse.ArgumentParser:
    make = argparse.ArgumentParser(
        prog="pam make-data",
        description="Write the synthetic quick-start dataset, e.g.\n"
        "  pam make-data --out data/hard --objects-per-image 3 --max-rotation 45 --allow-occlusion\n"
        "No config group: the flags are the fields of pam/data/synthetic.py SyntheticConfig, whose defaults they show\n"
        "(in training, an experiment's data.generate node sets them: configs/experiment/quickstart.yaml).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    make.add_argument("--out", required=True, help="output folder")
    _add_synthetic_flags(make)
    return make


def _make_data(args: argparse.Namespace) -> int:
    from ..data.synthetic import SyntheticConfig, generate_quickstart

    args = _make_data_parser().parse_args(args.extra)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticConfig)}
    options = {
        k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
        for k, v in options.items()
    }
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
