"""The ``pam`` command: one entry point, one module per group of verbs.

Each module in ``VERB_MODULES`` defines ``register(subparsers)``, which adds its verbs; every verb
sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Heavy imports happen inside the verbs, so ``pam --help`` and argument errors are instant.

A verb that sets ``passthrough=True`` receives the arguments it does not declare, in order, as
``args.extra``: Hydra overrides and flags for ``pam train``, a data_pipeline command line for ``pam
data``; ``passthrough="overrides"`` takes ``key=value`` words only (``pam eval``). Other verbs
reject them, as argparse does.

Bad input (``UsageError`` and the library's typed errors listed in ``USER_ERRORS``) ends with one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb modules, in the order their verbs appear in `pam --help`
VERB_MODULES = ("pam.cli.train", "pam.cli.data", "pam.cli.predict", "pam.cli.eval", "pam.cli.serve")


FLAGS_ONLY = (
    "config: no config group; every option is a flag, its default in {module}. A checkpoint carries its own "
    "model config (pam_config.json; defaults: pam/modeling/config.py PAMConfig). The tree: docs/configs.md."
)
CONFIG_HELP = {
    "convert-upstream": "config: --base-config takes a model option (configs/model/*.yaml, composed by Hydra) or a "
    "pam_config.json; default: pam/modeling/config.py PAMConfig (the paper's values). The tree: docs/configs.md.",
    "eval-table": "config: none; it reads results.json files, which hold each run's composed eval config "
    "(pam/eval/results.py).",
    "collect-sweep": "config: none; it reads each job's .hydra/config.yaml and metrics.json, as `pam train -m` "
    "writes them (pam/train/sweep.py; multirun: docs/configs.md).",
}


class UsageError(Exception):
    """Bad command-line input; printed as one line, exit code 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [UsageError, FileNotFoundError, ValueError]
    return tuple(errors)


def check_device(value: str | None, flag: str = "--device") -> None:
    """A device the verb cannot use is a usage error before any model loads: ``cuda`` on a machine
    without a CUDA GPU, ``cuda:3`` with fewer GPUs, or a name torch does not know. ``flag`` is
    ``--device`` or a Hydra-style key (``device``, shown as ``device=cuda``)."""
    if value is None or value in ("auto", "cpu"):
        return
    import torch

    sep = " " if flag.startswith("-") else "="
    shown, cpu = f"{flag}{sep}{value}", f"{flag}{sep}cpu"
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise UsageError(f"{shown}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"{shown}: this machine has no CUDA GPU (torch sees none); use {cpu}")
        if device.index is not None and device.index >= count:
            raise UsageError(f"{shown}: this machine has {count} CUDA GPU(s), numbered 0..{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"{shown}: MPS is not available on this machine; use {cpu}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pam",
        description="Perceive Anything Model: training, data, inference, evaluation and serving. Configs: configs/ "
        "(docs/configs.md); `pam VERB --help` names each verb's config group and where its defaults live.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERB_MODULES:
        known = set(sub.choices)
        importlib.import_module(name).register(sub)
        for verb in set(sub.choices) - known:
            verb_parser = sub.choices[verb]
            if "config:" not in (verb_parser.epilog or "") + (verb_parser.description or ""):
                config = CONFIG_HELP.get(verb, FLAGS_ONLY.format(module=name.replace(".", "/") + ".py"))
                verb_parser.epilog = f"{verb_parser.epilog}\n\n{config}" if verb_parser.epilog else config
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    passthrough = getattr(args, "passthrough", False)
    unknown = [a for a in extra if passthrough == "overrides" and a.startswith("-")] if passthrough else extra
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra = extra
    try:
        check_device(getattr(args, "device", None))
        if passthrough == "overrides":  # `pam eval ... device=cuda`
            for word in sys.argv[1:] if argv is None else argv:
                if word.startswith("device="):
                    check_device(word.partition("=")[2] or None, "device")
        return int(args.func(args) or 0)
    except _user_errors() as err:
        print(f"pam {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        from ..clients import ChatError

        if not isinstance(err, ChatError):
            raise
        # a judge/VLM endpoint failed after its retries: not a usage error, and answers already
        # received stay in the client's cache, so a re-run asks only for the rest
        print(f"pam {args.command}: chat endpoint failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
