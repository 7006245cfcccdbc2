"""Training throughput: samples/s and peak RSS for stage 1 and stage 2, feature cache on/off,
gradient checkpointing on/off.

Each configuration is one ``scripts/train.py experiment=quickstart`` run (stage 1 then stage 2,
``--steps`` steps each, no final evaluation) in a subprocess. Steady samples/s per stage comes from
the run's ``metrics.jsonl`` (``samples_per_s`` is cumulative from the stage's start): the time
between the end of the stage's first step and the end of its second-to-last step, which leaves out
the first step's warm-up and the last step's validation and checkpoint. Peak RSS is the
subprocess's maximum resident set over the whole run (both stages; stage 2, which trains the LLM
too, sets it). The quick-start data and the SAM 2 feature cache are built once under ``--work``
and reused; building them is not timed (the first run pays for it in its wall time).

    python scripts/bench_train.py --model debug --steps 4 --out bench_train.json

``--data-loader`` times the data path alone instead (no model): batches/s of the training
``BatchStream`` over the quick-start train split (decode, prompt draw, preprocessing, tokenising,
collating), for each of ``--loader-configs`` (workers 0, 2 workers recreated each epoch, 2
persistent workers), over ``--epochs`` epochs; pinned memory is on only with CUDA (``--device``).

    python scripts/bench_train.py --data-loader --epochs 3 --out bench_loader.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> (feature cache, gradient checkpointing)
    "cache_gc-off": (True, False),
    "cache_gc-on": (True, True),
    "nocache_gc-off": (False, False),
    "nocache_gc-on": (False, True),
}


LOADER_CONFIGS = {  # name -> (num_workers, persistent_workers)
    "workers0": (0, False),
    "workers2": (2, False),
    "workers2_persistent": (2, True),
}


def loader_bench(args, work: Path) -> list[dict]:
    """Batches/s of the training data path for each ``--loader-configs`` entry (see the docstring)."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from pam.api import tokenizer_for
    from pam.data.sampler import RegionSampler
    from pam.modeling.config import PAMConfig
    from pam.processing.collator import PAMCollator
    from pam.processing.processor import PAMProcessor
    from pam.train.config import LoaderConfig
    from pam.train.data import BatchStream, build_dataset, loader_options
    from pam.train.run import prepare_data

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quickstart", f"model={args.model}", f"data.root={work / 'data'}"])
    prepare_data(cfg)  # the quick-start data, as `pam make-data` writes it (once, not timed)
    model_cfg = PAMConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    collate = PAMCollator(PAMProcessor(config=model_cfg, tokenizer=tokenizer_for(model_cfg)))
    dataset = build_dataset(cfg.data, "train", model_cfg.token_layout())
    device = torch.device(args.device)
    rows = []
    for name in args.loader_configs.split(","):
        workers, persistent = LOADER_CONFIGS[name]
        loader = LoaderConfig(num_workers=workers, persistent_workers=persistent)
        options = loader_options(loader, device)
        stream = BatchStream(
            dataset,
            RegionSampler(dataset, seed=0, rank=0, world_size=1),
            collate,
            loader,
            micro_batch_size=args.batch,
            world_size=1,
            device=device,
        )
        first, rest, counts = [], [], []  # per epoch: seconds to its first batch, seconds for the others, batches
        t = time.perf_counter()
        start_epoch, n = 0, 0
        while True:
            batch = stream.next_batch()
            if device.type == "cuda":
                batch = batch.to(device, non_blocking=True)
            now = time.perf_counter()
            if stream.epoch != start_epoch:  # this batch opened a new epoch
                counts.append(n)
                start_epoch, n = stream.epoch, 0
                if stream.epoch == args.epochs:
                    break
            if n == 0:
                first.append(now - t)
                rest.append(0.0)
            else:
                rest[-1] += now - t
            n += 1
            t = now
        stream.close()
        total_batches, total_s = sum(counts), sum(first) + sum(rest)
        rows.append(
            {
                "config": name,
                "num_workers": workers,
                "persistent_workers": options["persistent_workers"],
                "pin_memory": options["pin_memory"],
                "prefetch_factor": options["prefetch_factor"],
                "epochs": args.epochs,
                "batches": total_batches,
                "batches_per_s": round(total_batches / total_s, 2),
                "steady_batches_per_s": round((total_batches - len(counts)) / sum(rest), 2),
                "first_batch_s_epoch0": round(first[0], 3),
                "first_batch_s_later_epochs": round(sum(first[1:]) / max(len(first) - 1, 1), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def md_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def on_off(flag) -> str:
    return "on" if flag else "off"


def loader_markdown(rows: list[dict]) -> str:
    headers = [
        "config",
        "workers",
        "persistent",
        "pinned",
        "batches/s (all)",
        "batches/s (within epochs)",
        "first batch s, epoch 0",
        "first batch s, later epochs",
    ]
    return md_table(
        headers,
        [
            [
                r["config"],
                r["num_workers"],
                on_off(r["persistent_workers"]),
                on_off(r["pin_memory"]),
                f"{r['batches_per_s']:.2f}",
                f"{r['steady_batches_per_s']:.2f}",
                f"{r['first_batch_s_epoch0']:.3f}",
                f"{r['first_batch_s_later_epochs']:.3f}",
            ]
            for r in rows
        ],
    )


def steady_rate(rows: list[dict], batch: int) -> float:
    """Samples/s from the end of the stage's first step to the end of its second-to-last step."""
    if len(rows) < 3:
        raise ValueError(
            f"need >= 3 logged steps per stage to time the steady state, got {len(rows)}; use --steps 3 or more"
        )
    first, last = rows[0], rows[-2]
    # cumulative rate r after k steps means k * batch samples took k * batch / r seconds
    elapsed = lambda row, k: k * batch / row["samples_per_s"]  # noqa: E731
    k_last = len(rows) - 1
    return (k_last - 1) * batch / (elapsed(last, k_last) - elapsed(first, 1))


def run_one(name: str, cache: bool, gc: bool, args, work: Path) -> dict:
    out = work / name
    overrides = [
        "experiment=quickstart",
        f"model={args.model}",
        f"trainer.output_dir={out}",
        f"data.root={work / 'data'}",
        f"stage.max_steps={args.steps}",
        f"next_stage.max_steps={args.steps}",
        f"trainer.global_batch_size={args.batch}",
        f"trainer.micro_batch_size={args.batch}",
        "trainer.logging.every=1",
        "trainer.evaluation.enabled=false",
        "trainer.logging.progress_bar=false",
        "trainer.checkpoint.resume=never",
        "trainer.logging.wandb.mode=disabled",
        f"trainer.feature_cache={work / 'feature_cache' if cache else 'null'}",
        f"model.llm.gradient_checkpointing={str(gc).lower()}",
    ]
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves: its own peak RSS, not all children's
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    wall = time.time() - t0
    if code != 0:
        raise RuntimeError(f"{name}: train.py exited {code}:\n{log[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    result = {"config": name, "feature_cache": cache, "gradient_checkpointing": gc, "wall_s": round(wall, 1)}
    for stage in ("stage1", "stage2"):
        stage_rows = sorted(
            (r for r in rows if r.get("stage") == stage and "samples_per_s" in r), key=lambda r: r["step"]
        )
        result[f"{stage}_samples_per_s"] = round(steady_rate(stage_rows, args.batch), 3)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    return result


def markdown(rows: list[dict]) -> str:
    headers = [
        "config",
        "feature cache",
        "grad. checkpointing",
        "stage 1 samples/s",
        "stage 2 samples/s",
        "peak RSS MB (run)",
        "wall s",
    ]
    return md_table(
        headers,
        [
            [
                r["config"],
                on_off(r["feature_cache"]),
                on_off(r["gradient_checkpointing"]),
                f"{r['stage1_samples_per_s']:.2f}",
                f"{r['stage2_samples_per_s']:.2f}",
                r["peak_rss_mb"],
                r["wall_s"],
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="debug", help="configs/model/<name>.yaml")
    ap.add_argument("--steps", type=int, default=4, help="steps per stage (>= 3)")
    ap.add_argument("--batch", type=int, default=8, help="regions per step (global = micro batch)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {list(CONFIGS)}")
    ap.add_argument(
        "--work", default="/tmp/pam_bench_train", help="run folders, quick-start data and feature cache (reused)"
    )
    ap.add_argument("--out", default="bench_train.json")
    ap.add_argument(
        "--data-loader", action="store_true", help="time the data path alone (no model), see --loader-configs"
    )
    ap.add_argument("--loader-configs", default=",".join(LOADER_CONFIGS), help=f"comma list of {list(LOADER_CONFIGS)}")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per loader config (--data-loader)")
    ap.add_argument("--device", default="cpu", help="--data-loader: cuda pins batches and copies them to the GPU")
    args = ap.parse_args(argv)
    if args.data_loader:
        unknown = [n for n in args.loader_configs.split(",") if n not in LOADER_CONFIGS]
        if unknown or args.epochs < 2:
            ap.error(f"--loader-configs must be among {list(LOADER_CONFIGS)} (got unknown {unknown}) and --epochs >= 2")
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        rows = loader_bench(args, work)
        result = {
            "model": args.model,
            "batch": args.batch,
            "epochs": args.epochs,
            "device": args.device,
            "rows": rows,
            "markdown": loader_markdown(rows),
        }
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(result["markdown"])
        return result
    if args.steps < 3:
        ap.error("--steps must be >= 3")
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"unknown --configs {unknown}; choose from {list(CONFIGS)}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        rows.append(run_one(name, *CONFIGS[name], args, work))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "model": args.model,
        "steps_per_stage": args.steps,
        "batch": args.batch,
        "rows": rows,
        "markdown": markdown(rows),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(result["markdown"])
    return result


if __name__ == "__main__":
    main()
