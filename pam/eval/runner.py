"""Run a benchmark: read items, generate into a resumable predictions file (sharded over ranks),
merge once, score, write results. Scoring alone (:func:`score_file`) needs no model."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..utils.stop import StopRequested, StopSignal
from .predictions import (
    PredictionWriter,
    done_ids,
    list_ids,
    merge_predictions,
    read_predictions,
    shard_path,
)
from .registry import Benchmark, get_benchmark
from .results import write_results

log = logging.getLogger("pam.eval")
PREDICTIONS = "predictions.jsonl"


def dist_info() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def check_item_ids(items: Sequence[dict], name: str) -> list[Any]:
    ids = [it["id"] for it in items]
    seen, repeated = set(), []
    for i in ids:
        if i in seen:
            repeated.append(i)
        seen.add(i)
    if repeated:
        raise ValueError(f"{name}: item ids repeat: {list_ids(repeated)}")
    return ids


def generate_predictions(
    benchmark: Benchmark,
    items: Sequence[dict],
    generator,
    pred_path: str | Path,
    *,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    on_written: Callable[[dict], None] | None = None,
) -> Path:
    """Predict every item not yet in ``pred_path`` (or its shards); item ``i`` belongs to rank
    ``i % world_size``. Rows are appended and flushed one batch at a time; rank 0 then merges
    everything into ``pred_path`` in item order, checking nothing is missing or repeated.

    SIGTERM or SIGUSR1 stops it after the batch in progress: the rows written so far stay, a line
    says how many, and :class:`~pam.utils.stop.StopRequested` exits with ``EXIT_STOPPED`` (75); the
    same command resumes (pam/utils/stop.py)."""
    pred_path = Path(pred_path)
    ids = check_item_ids(items, benchmark.name)
    done = done_ids(pred_path)
    share = [it for i, it in enumerate(items) if i % world_size == rank]
    todo = [it for it in share if it["id"] not in done]
    target = pred_path if world_size == 1 else shard_path(pred_path, rank)
    batch = max(1, benchmark.config.generation.batch_size)
    bar = tqdm(
        total=len(share),
        initial=len(share) - len(todo),
        desc=f"{benchmark.name} rank {rank}",
        disable=not progress,
        dynamic_ncols=True,
    )
    written = 0
    try:
        with StopSignal(what="evaluation") as stop, PredictionWriter(target, also_done=done) as writer:
            for start in range(0, len(todo), batch):
                if stop.requested:  # between batches; every row so far is flushed
                    saved = len(share) - len(todo) + written
                    msg = (
                        f"{benchmark.name}: stopped on {stop.received[0]}; "
                        f"{saved} of {len(share)} predictions saved in {target}; re-run to resume"
                    )
                    print(msg, file=sys.stderr, flush=True)
                    raise StopRequested(msg)
                chunk = todo[start : start + batch]
                generator.seed(chunk[0]["id"])
                rows = benchmark.predict(chunk, generator)
                if [r.get("id") for r in rows] != [it["id"] for it in chunk]:
                    raise RuntimeError(
                        f"{benchmark.name}.predict returned ids {[r.get('id') for r in rows]} "
                        f"for items {[it['id'] for it in chunk]}"
                    )
                for row in rows:
                    writer.write(row)
                    if on_written is not None:
                        on_written(row)
                written += len(rows)
                bar.update(len(chunk))
    finally:
        bar.close()
    _barrier(world_size)
    if rank == 0:
        merge_predictions(pred_path, ids)
    _barrier(world_size)
    return pred_path


def _limit(items: list[dict], limit: int) -> list[dict]:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return items[:limit] if limit else items


def evaluate(
    benchmark: str | Benchmark,
    *,
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    overrides: dict | None = None,
    limit: int = 0,
    device: str = "cpu",
    judge=None,
    progress: bool = True,
    bundle=None,
) -> dict | None:
    """Generate with the checkpoint's model, score, write ``results.json``/``.md``; returns the
    result on rank 0 (None elsewhere). ``bundle`` skips loading ``checkpoint`` again."""
    from ..api import load_pam
    from .generation import PAMGenerator

    bench = benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark, overrides=overrides)
    rank, world = dist_info()
    out_dir = Path(out_dir)
    items = _limit(bench.read_items(data), limit)
    if bench.needs_judge and judge is None and rank == 0:
        judge = _judge_for(bench, out_dir)  # fail before hours of generation, not after
    bundle = bundle if bundle is not None else load_pam(checkpoint, device=device)
    generator = PAMGenerator(bundle, bench.config.generation)
    pred_path = generate_predictions(
        bench, items, generator, out_dir / PREDICTIONS, rank=rank, world_size=world, progress=progress
    )
    if rank != 0:
        return None
    scores = bench.score(read_predictions(pred_path), items, judge=judge)
    return write_results(
        out_dir,
        benchmark=bench.name,
        scores=scores,
        settings=bench.settings(),
        checkpoint=checkpoint,
        data=data,
        num_items=len(items),
    )


def _judge_for(bench: Benchmark, out_dir: Path):
    from .judge import make_judge

    return make_judge(bench.config.judge, cache_dir=out_dir / "judge_cache")


def score_file(
    benchmark: str | Benchmark,
    predictions: str | Path,
    *,
    data: str | Path | None = None,
    overrides: dict | None = None,
    judge=None,
    out_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    limit: int = 0,
) -> dict:
    """Scores of a predictions file (no model); with ``out_dir``, also write results files."""
    bench = benchmark if isinstance(benchmark, Benchmark) else get_benchmark(benchmark, overrides=overrides)
    items = None
    if bench.needs_data_to_score:
        if data is None:
            raise ValueError(f"scoring {bench.name} needs its annotation data (--data PATH)")
        items = _limit(bench.read_items(data), limit)
    if bench.needs_judge and judge is None:
        judge = _judge_for(bench, Path(out_dir or Path(predictions).parent))
    scores = bench.score(read_predictions(predictions), items, judge=judge)
    if out_dir is not None:
        write_results(
            out_dir,
            benchmark=bench.name,
            scores=scores,
            settings=bench.settings(),
            checkpoint=checkpoint,
            data=data,
            num_items=len(items) if items is not None else scores.get("num_predictions", 0),
        )
    return scores


def predict_dataset_items(
    bundle,
    dataset,
    out_path: str | Path,
    *,
    overrides: dict | None = None,
    max_samples: int = 0,
    progress: bool = False,
    resume: bool = False,
) -> Path:
    """Quickstart predictions for an already built dataset (the trainer's test split). Without
    ``resume``, earlier predictions at ``out_path`` (another model's) are removed first."""
    from .generation import PAMGenerator
    from .predictions import shard_paths

    if not resume:
        for old in [Path(out_path), *shard_paths(out_path)]:
            old.unlink(missing_ok=True)
    bench = get_benchmark("quickstart", overrides=overrides)
    items = _limit(bench.use_dataset(dataset), max_samples)
    generator = PAMGenerator(bundle, bench.config.generation)
    return generate_predictions(bench, items, generator, out_path, progress=progress)


def evaluate_dataset(
    bundle,
    dataset,
    out_dir: str | Path,
    *,
    overrides: dict | None = None,
    max_samples: int = 0,
    checkpoint: str | Path | None = None,
    resume: bool = False,
) -> dict:
    """The trainer's end-of-run evaluation: quickstart predictions for ``dataset`` into
    ``out_dir/predictions.jsonl``, scored, with ``results.json``/``.md``; returns the scores.
    ``resume`` keeps predictions already in ``out_dir`` (same model only)."""
    bench = get_benchmark("quickstart", overrides=overrides)
    pred = predict_dataset_items(
        bundle, dataset, Path(out_dir) / PREDICTIONS, overrides=overrides, max_samples=max_samples, resume=resume
    )
    scores = bench.score(read_predictions(pred), None)
    write_results(
        out_dir,
        benchmark=bench.name,
        scores=scores,
        settings=bench.settings(),
        checkpoint=checkpoint,
        data=getattr(dataset, "name", None),
        num_items=int(scores["num_predictions"]),
    )
    return scores
