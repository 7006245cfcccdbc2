"""Verbs around evaluation: ``eval``, ``score``, ``eval-table``.

pam eval --list | --table [--out docs/evaluation.md]
pam eval lvis --checkpoint CKPT --data lvis_val_1k_category.json --out runs/eval/lvis generation.max_new_tokens=16
pam eval eval=lvis checkpoint=CKPT data_path=lvis_val_1k_category.json out=runs/eval/lvis   (the same)
torchrun --nproc_per_node 8 -m pam.cli eval refcocog --checkpoint CKPT --data ... --out ...
pam score lvis runs/eval/lvis/predictions.jsonl --data lvis_val_1k_category.json
pam score runs/quickstart/predictions.jsonl          (one path: the quickstart benchmark)
pam eval-table runs/eval/greedy runs/eval/beam4        (a column per run folder)
pam eval-table --by checkpoint runs/eval/lvis runs/eval/refcocog   (a column per checkpoint)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import UsageError

EVAL_DESCRIPTION = """Generate with a PAM checkpoint on a benchmark, then score the predictions.

config: configs/evaluate.yaml (run settings: checkpoint, data_path, out, limit, device, progress)
with one option of the eval group: the benchmark's config class, registered with the benchmark
(defaults: its *Config dataclass in pam/eval/benchmarks/; generation: pam/eval/config.py
GenerationConfig). Overrides are Hydra's: KEY=VALUE of the benchmark's fields
(generation.max_new_tokens=16, judge.model=..., image_root=...), or of the root (checkpoint=...,
limit=10); `--set KEY=VALUE` is the same. The flags below set the root keys. See docs/configs.md.
"""


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint of the judge LLM (sets judge.base_url)")
    p.add_argument("--judge-model", help="judge model name, or a local folder with --judge-backend transformers")
    p.add_argument("--judge-backend", choices=("openai", "transformers"), help="judge client kind")


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="generate with a PAM checkpoint on a benchmark, then score",
        description=EVAL_DESCRIPTION,
        usage="pam eval [BENCHMARK] [KEY=VALUE ...] [--checkpoint DIR --data PATH --out DIR] [opts] | --list | --table",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("benchmark", nargs="?", help="benchmark name (see --list); or eval=NAME among the overrides")
    ev.add_argument("--list", action="store_true", help="print the registered benchmarks and exit")
    ev.add_argument(
        "--table", action="store_true", help="print the docs' benchmark table (with --out FILE: rewrite FILE's table)"
    )
    ev.add_argument("--checkpoint", help="PAM checkpoint folder (checkpoint=)")
    ev.add_argument("--data", help="the benchmark's official annotation file or folder (data_path=)")
    ev.add_argument("--out", help="output folder: predictions.jsonl, results.json, results.md (out=)")
    ev.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override, as KEY=VALUE alone",
    )
    ev.add_argument("--limit", type=int, default=None, help="evaluate only the first N items (limit=; default 0 = all)")
    ev.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 (device=; default: cuda:<LOCAL_RANK> if available, else cpu)"
    )
    ev.add_argument("--no-progress", action="store_true", help="no progress bar (progress=false)")
    _judge_args(ev)
    ev.set_defaults(func=_eval, passthrough="overrides")

    sc = sub.add_parser(
        "score",
        help="score a predictions file without the model",
        description="Score a predictions file without the model. config: the benchmark's eval option, as for "
        "`pam eval` "
        "(defaults: its *Config dataclass in pam/eval/benchmarks/NAME.py); --set KEY=VALUE overrides a field.",
    )
    sc.add_argument(
        "paths",
        nargs="+",
        metavar="[BENCHMARK] PRED",
        help="benchmark name and predictions file; a lone file is scored as quickstart",
    )
    sc.add_argument("--data", help="the benchmark's annotation file or folder")
    sc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sc.add_argument("--out", help="also write results.json/.md here")
    sc.add_argument("--limit", type=int, default=0, help="score the first N items only (as evaluated with --limit)")
    _judge_args(sc)
    sc.set_defaults(func=_score)

    tb = sub.add_parser(
        "eval-table",
        help="merge eval runs into one table beside the paper's PAM-3B figures",
        description="Merge eval runs into one table; the paper's PAM-3B figures come from each benchmark's "
        "registration.",
    )
    tb.add_argument("runs", nargs="+", help="run folders or results.json files")
    tb.add_argument("--out", help="also write the markdown table to this file")
    tb.add_argument(
        "--by",
        choices=("run", "checkpoint"),
        default="run",
        help="a column per run folder (default), or per checkpoint (its runs of different benchmarks merged)",
    )
    tb.set_defaults(func=_eval_table)


def _judge(args: argparse.Namespace) -> dict:
    return {
        k: v
        for k, v in (("base_url", args.judge_url), ("model", args.judge_model), ("backend", args.judge_backend))
        if v
    }


def _overrides(args: argparse.Namespace) -> dict:
    from ..eval.config import parse_overrides

    over = parse_overrides(args.overrides)
    if _judge(args):
        over.setdefault("judge", {}).update(_judge(args))
    return over


ROOT_KEYS = ("eval", "checkpoint", "data_path", "out", "limit", "device", "progress", "hydra")


def _tree_override(text: str) -> str:
    """A command-line override on the evaluate tree: root keys as given, the rest under ``eval.``."""
    from ..eval.config import eval_override

    key = text.lstrip("+~").split("=", 1)[0]
    return text if key.split(".", 1)[0] in ROOT_KEYS else eval_override(text)


def compose_eval(args: argparse.Namespace):
    """The composed evaluate tree (OmegaConf) and the benchmark built from its eval node."""
    from omegaconf import OmegaConf

    from ..eval import benchmark_class, get_benchmark, list_benchmarks
    from ..eval.config import EVAL_ROOT, config_from_node
    from ..utils.config import compose_config, merge_dicts

    if args.benchmark and "=" in args.benchmark:  # `pam eval eval=lvis ...`: an override, not a name
        args.extra, args.benchmark = [args.benchmark, *args.extra], None
    texts = [*args.overrides, *args.extra]
    bad = [t for t in texts if "=" not in t and not t.startswith("~")]
    if bad:
        raise UsageError(f"expected KEY=VALUE overrides, got {' '.join(bad)}")
    choice = [f"eval={args.benchmark}"] if args.benchmark else []
    list_benchmarks()  # registers every benchmark's eval option
    cfg = compose_config(EVAL_ROOT, [*choice, *(_tree_override(t) for t in texts)])
    flags = {
        "checkpoint": args.checkpoint,
        "data_path": args.data,
        "out": args.out,
        "limit": args.limit,
        "device": args.device,
    }
    flags["progress"] = False if args.no_progress else None
    for key, value in flags.items():
        if value is not None:
            OmegaConf.update(cfg, key, value, merge=False)
    missing = [k for k in ("checkpoint", "data_path", "out") if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise UsageError(
            "usage: pam eval BENCHMARK --checkpoint DIR --data PATH --out DIR [KEY=VALUE ...] (or pam eval --list); "
            "missing: " + ", ".join(f"--{'data' if k == 'data_path' else k} ({k}=)" for k in missing)
        )
    node = OmegaConf.to_container(cfg.eval, resolve=True)
    name = node.get("name") or (args.benchmark or "")
    if _judge(args):
        node = merge_dicts(node, {"judge": _judge(args)})
    config = config_from_node(name, benchmark_class(name).config_class, node)
    return cfg, get_benchmark(name, config=config)


def _eval(args: argparse.Namespace) -> int:
    from ..eval import list_benchmarks

    if args.list:
        from ..eval import benchmark_class

        for name in list_benchmarks():
            cls = benchmark_class(name)
            metrics = ", ".join(cls.metrics or tuple(cls.paper)) or "-"
            print(f"{name}\t{cls.description}\tmetrics: {metrics}\tofficial: {cls.official.get('repo', '-')}")
        return 0
    if args.table:
        return _table(args.out)
    from ..eval.runner import evaluate

    cfg, bench = compose_eval(args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    started = False
    if world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
            started = True
    device = cfg.device or _default_device()
    result = evaluate(
        bench,
        checkpoint=cfg.checkpoint,
        data=cfg.data_path,
        out_dir=cfg.out,
        limit=cfg.limit,
        device=device,
        progress=cfg.progress,
    )
    if result is not None:
        print(json.dumps({"benchmark": result["benchmark"], "scores": result["scores"], "out": cfg.out}, indent=2))
    if started:
        import torch.distributed as dist

        dist.destroy_process_group()
        # gloo sometimes aborts at interpreter exit after correct work (ENVIRONMENT.md): leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _table(out: str | None) -> int:
    from pathlib import Path

    from ..eval.registry import benchmark_table, replace_table

    table = benchmark_table()
    if out is None:
        print(table, end="")
        return 0
    path = Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such document (it must hold the table's begin/end markers)")
    path.write_text(replace_table(path.read_text(), table))
    print(f"wrote the benchmark table into {path}")
    return 0


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def _score(args: argparse.Namespace) -> int:
    from ..eval.runner import score_file

    if len(args.paths) == 1:
        name, pred = "quickstart", args.paths[0]
    elif len(args.paths) == 2:
        name, pred = args.paths
    else:
        raise UsageError("usage: pam score [BENCHMARK] PRED --data PATH")
    scores = score_file(name, pred, data=args.data, overrides=_overrides(args), out_dir=args.out, limit=args.limit)
    print(json.dumps(scores, indent=2, sort_keys=True))
    return 0


def _eval_table(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..eval.results import eval_table

    table = eval_table(args.runs, by=args.by)
    if args.out:
        Path(args.out).write_text(table)
    print(table, end="")
    return 0
