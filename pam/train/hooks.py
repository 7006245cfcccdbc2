"""Side effects around the training step: logging, validation, checkpoints, plots.

Each hook sees the trainer and the step's metrics; the loop itself knows nothing about them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .config import HOOK_NAMES, wandb_mode

log = logging.getLogger("pam.train")


class HookBase:
    def before_stage(self, trainer) -> None: ...

    def after_step(self, trainer, metrics: dict) -> None: ...

    def after_stage(self, trainer) -> None: ...

    def after_train(self, trainer) -> None: ...

    def on_stop(self, trainer) -> None:
        """The run stopped early on a signal (a checkpoint was written); after_train does not run."""


class MetricsLogger(HookBase):
    """JSON-lines metrics file, tqdm progress bar and wandb (``trainer.wandb.mode`` when set, else
    ``$WANDB_MODE``, else offline; disabled imports nothing and writes no ``wandb/``), on rank 0."""

    def __init__(self, trainer):
        self.path = Path(trainer.run_dir) / "metrics.jsonl"
        self.bar = None
        self.wandb = None
        self.t0 = time.time()
        self.samples = 0
        cfg = trainer.cfg.wandb
        mode = wandb_mode(cfg)  # trainer.wandb.mode when set, else $WANDB_MODE, else offline
        if trainer.dist.is_main and mode != "disabled":
            import wandb

            self.wandb = wandb.init(
                project=cfg.project,
                name=cfg.name or Path(trainer.run_dir).name,
                mode=mode,
                dir=str(trainer.run_dir),
                config=trainer.resolved_config,
                tags=list(cfg.tags),
                resume="allow",
            )

    def write(self, trainer, row: dict) -> None:
        if not trainer.dist.is_main:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def before_stage(self, trainer) -> None:
        self.t0, self.samples = time.time(), 0
        if trainer.dist.is_main and self.path.is_file():
            # rows past the step we start from were written by an interrupted run after the checkpoint
            # this one resumed from: drop them, or those steps would appear twice
            lines = self.path.read_text().splitlines(keepends=True)
            kept = [
                line for line in lines if not line.strip() or json.loads(line).get("step", 0) <= trainer.global_step
            ]
            if len(kept) != len(lines):
                self.path.write_text("".join(kept))
        if trainer.dist.is_main and trainer.cfg.progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(
                total=trainer.stage.max_steps, initial=trainer.stage_step, desc=trainer.stage.name, dynamic_ncols=True
            )

    def after_step(self, trainer, metrics: dict) -> None:
        self.samples += trainer.cfg.global_batch_size
        rate = self.samples / max(time.time() - self.t0, 1e-9)
        metrics["samples_per_s"] = rate
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{metrics['train/loss']:.4f}", lr=f"{metrics['lr']:.2e}", sps=f"{rate:.1f}")
        if (
            trainer.stage_step % trainer.cfg.log_every == 0
            or trainer.stage_step == trainer.stage.max_steps
            or any(k.startswith("val/") for k in metrics)
        ):
            self.write(trainer, {"step": trainer.global_step, "stage": trainer.stage.name, **metrics})

    def after_stage(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def after_train(self, trainer) -> None:
        if self.wandb is not None:
            self.wandb.finish()

    def on_stop(self, trainer) -> None:
        self.after_stage(trainer)
        self.after_train(trainer)


class Checkpointing(HookBase):
    """Step checkpoints every ``save_every`` steps and at each stage's end (plus the best one)."""

    def after_step(self, trainer, metrics: dict) -> None:
        every = trainer.cfg.save_every
        if (every and trainer.stage_step % every == 0) or trainer.stage_step == trainer.stage.max_steps:
            trainer.save_checkpoint(metrics)


class CurvesPlot(HookBase):
    def after_train(self, trainer) -> None:
        if not trainer.dist.is_main:
            return
        from .plots import plot_curves

        path = Path(trainer.run_dir) / "metrics.jsonl"
        if path.is_file():
            plot_curves(str(path), str(Path(trainer.run_dir) / "curves.png"))


class SkipReport(HookBase):
    """Counts skipped samples; a summary per stage, and a loud failure past max_bad_fraction."""

    def after_step(self, trainer, metrics: dict) -> None:
        if trainer.skips.num_skipped:
            metrics["data/skipped"] = trainer.skips.num_skipped

    def after_stage(self, trainer) -> None:
        if trainer.dist.is_main and trainer.skips.num_skipped:
            log.warning("skipped samples in stage %s: %s", trainer.stage.name, trainer.skips.epoch_summary())


class FinalEvaluation(HookBase):
    """At the end of the run, on rank 0: generate on the test split and score it (pam.eval), write
    metrics.json, report.md and summary.json. Without a test split (or with
    ``trainer.evaluate_at_end=false``) metrics.json holds the last logged train/val metrics."""

    def after_train(self, trainer) -> None:
        if not trainer.dist.is_main:
            return
        from ..utils.jsonl import iter_jsonl_objects
        from .data import has_split

        run = Path(trainer.run_dir)
        if trainer.cfg.evaluate_at_end and has_split(trainer.data_cfg, "test"):
            from ..eval import evaluate_dataset
            from .report import write_report

            # the registry's `quickstart` benchmark: predictions.jsonl, results.json/.md in the run folder
            metrics = evaluate_dataset(
                trainer.bundle,
                trainer.dataset("test"),
                run,
                max_samples=trainer.cfg.eval_max_samples,
                checkpoint=trainer.final_checkpoint,
            )
            (run / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
            write_report(trainer, trainer.final_checkpoint, metrics)
            print(json.dumps(metrics, indent=2, sort_keys=True), flush=True)
        else:
            last: dict = {}
            path = run / "metrics.jsonl"
            if path.is_file():
                for _, row in iter_jsonl_objects(path):
                    last.update(row)
            metrics = {k: v for k, v in last.items() if k.startswith(("train/", "val/"))}
            (run / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        trainer.final_metrics = metrics


# hooks by the names `trainer.hooks` lists; they run in that order at every event
HOOKS = {
    "checkpointing": lambda trainer: Checkpointing(),
    "skip_report": lambda trainer: SkipReport(),
    "metrics_logger": MetricsLogger,
    "curves_plot": lambda trainer: CurvesPlot(),
    "final_evaluation": lambda trainer: FinalEvaluation(),
}


if tuple(HOOKS) != HOOK_NAMES:
    raise ImportError(
        f"pam/train/hooks.py:HOOKS {tuple(HOOKS)} and pam/train/config.py:HOOK_NAMES {HOOK_NAMES} must list the same hooks"
    )


def build_hooks(names: list[str], trainer) -> list[HookBase]:
    unknown = [n for n in names if n not in HOOKS]
    if unknown:
        raise ValueError(f"trainer.hooks: unknown hook(s) {unknown}; expected some of {sorted(HOOKS)}")
    return [HOOKS[name](trainer) for name in names]
