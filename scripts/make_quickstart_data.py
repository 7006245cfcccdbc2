"""Write the synthetic quick-start dataset (see pam/data/synthetic.py for the layout and the knobs).

    python scripts/make_quickstart_data.py --out data/quickstart
    python scripts/make_quickstart_data.py --out data/hard --objects-per-image 3 --max-rotation 45 --allow-occlusion
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from pam.data.synthetic import SyntheticConfig, generate_quickstart

_TYPES = {"int": int, "float": float, "str": str}


def parse_args(argv: list[str] | None = None) -> tuple[str, SyntheticConfig]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    defaults = SyntheticConfig()
    for f in dataclasses.fields(SyntheticConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.type in _TYPES:
            parser.add_argument(flag, type=_TYPES[f.type], default=default, help=f"default: {default}")
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    return out, SyntheticConfig(**args)


def main(argv: list[str] | None = None) -> None:
    out, config = parse_args(argv)
    start = time.perf_counter()
    files = generate_quickstart(out, config)
    print(f"wrote {', '.join(sorted(files))} under {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
