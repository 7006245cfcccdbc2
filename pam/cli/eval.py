"""Verbs around evaluation: ``eval``, ``score``, ``eval-table``.

    pam eval --list
    pam eval lvis --checkpoint CKPT --data lvis_val_1k_category.json --out runs/eval/lvis [--set generation.max_new_tokens=16]
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


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge-url", help="OpenAI-compatible endpoint of the judge LLM (sets judge.base_url)")
    p.add_argument("--judge-model", help="judge model name, or a local folder with --judge-backend transformers")
    p.add_argument("--judge-backend", choices=("openai", "transformers"), help="judge client kind")


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="generate with a PAM checkpoint on a benchmark, then score")
    ev.add_argument("benchmark", nargs="?", help="benchmark name (see --list)")
    ev.add_argument("--list", action="store_true", help="print the registered benchmarks and exit")
    ev.add_argument("--checkpoint", help="PAM checkpoint folder")
    ev.add_argument("--data", help="the benchmark's official annotation file or folder")
    ev.add_argument("--out", help="output folder: predictions.jsonl, results.json, results.md")
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override, e.g. generation.max_new_tokens=64")
    ev.add_argument("--limit", type=int, default=0, help="evaluate only the first N items (0 = all)")
    ev.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda:<LOCAL_RANK> if available, else cpu)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    _judge_args(ev)
    ev.set_defaults(func=_eval)

    sc = sub.add_parser("score", help="score a predictions file without the model")
    sc.add_argument("paths", nargs="+", metavar="[BENCHMARK] PRED", help="benchmark name and predictions file; a lone file is scored as quickstart")
    sc.add_argument("--data", help="the benchmark's annotation file or folder")
    sc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    sc.add_argument("--out", help="also write results.json/.md here")
    sc.add_argument("--limit", type=int, default=0, help="score the first N items only (as evaluated with --limit)")
    _judge_args(sc)
    sc.set_defaults(func=_score)

    tb = sub.add_parser("eval-table", help="merge eval runs into one table beside the paper's PAM-3B figures")
    tb.add_argument("runs", nargs="+", help="run folders or results.json files")
    tb.add_argument("--out", help="also write the markdown table to this file")
    tb.add_argument("--by", choices=("run", "checkpoint"), default="run", help="a column per run folder (default), or per checkpoint (its runs of different benchmarks merged)")
    tb.set_defaults(func=_eval_table)


def _overrides(args: argparse.Namespace) -> dict:
    from ..eval.config import parse_overrides

    over = parse_overrides(args.overrides)
    judge = {k: v for k, v in (("base_url", args.judge_url), ("model", args.judge_model), ("backend", args.judge_backend)) if v}
    if judge:
        over.setdefault("judge", {}).update(judge)
    return over


def _eval(args: argparse.Namespace) -> int:
    from ..eval import list_benchmarks

    if args.list:
        from ..eval import benchmark_class

        for name in list_benchmarks():
            print(f"{name}\t{benchmark_class(name).description}")
        return 0
    missing = [f"--{k}" for k in ("checkpoint", "data", "out") if getattr(args, k) is None]
    if args.benchmark is None or missing:
        raise UsageError("usage: pam eval BENCHMARK --checkpoint DIR --data PATH --out DIR (or pam eval --list); missing: " + ", ".join((["BENCHMARK"] if args.benchmark is None else []) + missing))
    from ..eval import get_benchmark
    from ..eval.runner import evaluate

    bench = get_benchmark(args.benchmark, overrides=_overrides(args))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    started = False
    if world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
            started = True
    device = args.device or _default_device()
    result = evaluate(bench, checkpoint=args.checkpoint, data=args.data, out_dir=args.out, limit=args.limit, device=device, progress=not args.no_progress)
    if result is not None:
        print(json.dumps({"benchmark": result["benchmark"], "scores": result["scores"], "out": args.out}, indent=2))
    if started:
        import torch.distributed as dist

        dist.destroy_process_group()
        # gloo sometimes aborts at interpreter exit after correct work (ENVIRONMENT.md): leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
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
