"""Collect a Hydra multirun sweep into sweep.md and sweep.csv.

Usage:
    python scripts/collect_sweep.py multirun/2025-01-31/12-00-00 [--out-dir DIR]

One row per run: its status ("complete" once it wrote metrics.json, else "incomplete"), the config
values that differ between runs, and its final metrics. The tables go to the sweep folder unless
--out-dir is given; the markdown table is also printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pam.train.sweep import collect_sweep, write_sweep_tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the multirun folder holding one folder per job")
    parser.add_argument("--out-dir", type=Path, default=None, help="where to write (default: sweep_dir)")
    args = parser.parse_args()
    table = collect_sweep(args.sweep_dir)
    md_path, csv_path = write_sweep_tables(table, args.out_dir or args.sweep_dir)
    print(table.to_markdown(), end="")
    print(f"wrote {md_path} and {csv_path}")


if __name__ == "__main__":
    main()
