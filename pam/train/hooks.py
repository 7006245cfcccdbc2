"""Side effects around the training step: logging, checkpoints, plots, the final evaluation.

A hook never sees the trainer. At every event it gets a :class:`TrainView`: a frozen snapshot of the
loop's counters and the run's constants, with the few actions a hook may take as callbacks
(``save`` a checkpoint, ``evaluate`` the test split). Each hook is built from its own section of the
trainer config (:data:`HOOKS`); the loop itself knows nothing about them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import HOOK_NAMES, EvaluationConfig, LoggingConfig, TrainerConfig, wandb_mode

log = logging.getLogger("pam.train")


def _no_action(*_args, **_kwargs):
    raise RuntimeError("this action is not available at this event")


@dataclass(frozen=True)
class TrainView:
    """What a hook sees of the run at one event (read-only; a new one is made for every event)."""

    step: int  # optimiser steps done over all stages
    stage: str  # the current stage's name
    stage_index: int
    stage_step: int  # optimiser steps done in the current stage
    max_steps: int  # of the current stage
    run_dir: Path
    is_main: bool  # rank 0: the one that writes files
    skipped: int = 0  # bad samples skipped so far in this epoch
    skip_summary: str = ""  # their reasons, one line
    final_checkpoint: Path | None = None  # the last stage's weights, once training is over
    # actions: save(metrics) writes a step checkpoint (every rank calls it); evaluate(max_samples) runs
    # the end-of-run benchmark on the test split and returns its metrics (None without a test split)
    save: Callable[[dict], Path] = field(default=_no_action, repr=False)
    evaluate: Callable[[int], dict | None] = field(default=_no_action, repr=False)

    @property
    def last_step_of_stage(self) -> bool:
        return self.stage_step == self.max_steps


class HookBase:
    def before_stage(self, state: TrainView) -> None: ...

    def after_step(self, state: TrainView, metrics: dict) -> None: ...

    def after_stage(self, state: TrainView) -> None: ...

    def after_train(self, state: TrainView) -> None: ...

    def on_stop(self, state: TrainView) -> None:
        """The run stopped early on a signal (a checkpoint was written); after_train does not run."""


class MetricsLogger(HookBase):
    """``trainer.logging``: a JSON-lines metrics file, a tqdm progress bar and wandb (``wandb.mode``
    when set, else ``$WANDB_MODE``, else offline; disabled imports nothing and writes no ``wandb/``),
    on rank 0. ``global_batch_size`` gives the samples-per-second rate; ``run_config`` goes to wandb."""

    def __init__(self, cfg: LoggingConfig, *, global_batch_size: int, run_config: dict | None = None):
        self.cfg = cfg
        self.global_batch_size = global_batch_size
        self.run_config = run_config or {}
        self.path: Path | None = None
        self.bar = None
        self.wandb = None
        self.t0 = time.time()
        self.samples = 0

    def start(self, state: TrainView) -> None:
        """Open the run's outputs (once, at the first stage)."""
        self.path = Path(state.run_dir) / "metrics.jsonl"
        mode = wandb_mode(self.cfg.wandb)
        if state.is_main and mode != "disabled" and self.wandb is None:
            import wandb

            self.wandb = wandb.init(
                project=self.cfg.wandb.project,
                name=self.cfg.wandb.name or Path(state.run_dir).name,
                mode=mode,
                dir=str(state.run_dir),
                config=self.run_config,
                tags=list(self.cfg.wandb.tags),
                resume="allow",
            )

    def write(self, state: TrainView, row: dict) -> None:
        if not state.is_main:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def before_stage(self, state: TrainView) -> None:
        if self.path is None:
            self.start(state)
        self.t0, self.samples = time.time(), 0
        if state.is_main and self.path.is_file():
            # rows past the step we start from were written by an interrupted run after the checkpoint
            # this one resumed from: drop them, or those steps would appear twice
            lines = self.path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= state.step]
            if len(kept) != len(lines):
                self.path.write_text("".join(kept))
        if state.is_main and self.cfg.progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.stage_step, desc=state.stage, dynamic_ncols=True)

    def after_step(self, state: TrainView, metrics: dict) -> None:
        self.samples += self.global_batch_size
        rate = self.samples / max(time.time() - self.t0, 1e-9)
        metrics["samples_per_s"] = rate
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{metrics['train/loss']:.4f}", lr=f"{metrics['lr']:.2e}", sps=f"{rate:.1f}")
        if (
            state.stage_step % self.cfg.every == 0
            or state.last_step_of_stage
            or any(k.startswith("val/") for k in metrics)
        ):
            self.write(state, {"step": state.step, "stage": state.stage, **metrics})

    def after_stage(self, state: TrainView) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def after_train(self, state: TrainView) -> None:
        if self.wandb is not None:
            self.wandb.finish()

    def on_stop(self, state: TrainView) -> None:
        self.after_stage(state)
        self.after_train(state)


class Checkpointing(HookBase):
    """Step checkpoints every ``trainer.checkpoint.every`` steps and at each stage's end (plus the best one)."""

    def __init__(self, due: Callable[[int, int], bool]):
        self.due = due  # CheckpointConfig.due(stage_step, max_steps)

    def after_step(self, state: TrainView, metrics: dict) -> None:
        if self.due(state.stage_step, state.max_steps):
            state.save(metrics)


class CurvesPlot(HookBase):
    def after_train(self, state: TrainView) -> None:
        if not state.is_main:
            return
        from .plots import plot_curves

        path = Path(state.run_dir) / "metrics.jsonl"
        if path.is_file():
            plot_curves(str(path), str(Path(state.run_dir) / "curves.png"))


class SkipReport(HookBase):
    """Counts skipped samples; a summary per stage (the loop fails loudly past max_bad_fraction)."""

    def after_step(self, state: TrainView, metrics: dict) -> None:
        if state.skipped:
            metrics["data/skipped"] = state.skipped

    def after_stage(self, state: TrainView) -> None:
        if state.is_main and state.skipped:
            log.warning("skipped samples in stage %s: %s", state.stage, state.skip_summary)


class FinalEvaluation(HookBase):
    """``trainer.evaluation``: at the end of the run, on rank 0, ``state.evaluate`` generates on the
    test split and scores it (metrics.json, report.md and summary.json). Without a test split (or
    with ``enabled: false``) metrics.json holds the last logged train/val metrics."""

    def __init__(self, cfg: EvaluationConfig):
        self.cfg = cfg

    def after_train(self, state: TrainView) -> None:
        if not state.is_main:
            return
        from ..utils.jsonl import iter_jsonl_objects

        run = Path(state.run_dir)
        metrics = state.evaluate(self.cfg.max_samples) if self.cfg.enabled else None
        if metrics is not None:
            print(json.dumps(metrics, indent=2, sort_keys=True), flush=True)
        else:
            last: dict = {}
            path = run / "metrics.jsonl"
            if path.is_file():
                for _, row in iter_jsonl_objects(path):
                    last.update(row)
            metrics = {k: v for k, v in last.items() if k.startswith(("train/", "val/"))}
        (run / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))


# hooks by the names `trainer.hooks` lists, each built from its section of the trainer config and
# the resolved run config; they run in that order at every event
HOOKS: dict[str, Callable[[TrainerConfig, dict], HookBase]] = {
    "checkpointing": lambda cfg, run_config: Checkpointing(cfg.checkpoint.due),
    "skip_report": lambda cfg, run_config: SkipReport(),
    "metrics_logger": lambda cfg, run_config: MetricsLogger(
        cfg.logging, global_batch_size=cfg.global_batch_size, run_config=run_config
    ),
    "curves_plot": lambda cfg, run_config: CurvesPlot(),
    "final_evaluation": lambda cfg, run_config: FinalEvaluation(cfg.evaluation),
}


if tuple(HOOKS) != HOOK_NAMES:
    raise ImportError(
        f"pam/train/hooks.py:HOOKS {tuple(HOOKS)} and pam/train/config.py:HOOK_NAMES {HOOK_NAMES} "
        "must list the same hooks"
    )


def build_hooks(cfg: TrainerConfig, run_config: dict | None = None) -> list[HookBase]:
    """The hooks ``cfg.hooks`` names, in that order."""
    unknown = [n for n in cfg.hooks if n not in HOOKS]
    if unknown:
        raise ValueError(f"trainer.hooks: unknown hook(s) {unknown}; expected some of {sorted(HOOKS)}")
    return [HOOKS[name](cfg, run_config or {}) for name in cfg.hooks]
