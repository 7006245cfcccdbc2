"""The training loop: one or more stages over one model, with hooks for everything else.

``Trainer(cfg)`` takes the resolved Hydra config (``model``, ``data``, ``stage``, optional
``next_stage``, ``trainer``). Each stage sets what trains, its optimiser groups and schedule;
a following stage starts from the previous stage's final weights. Engines: a single process,
torchrun DDP, or DeepSpeed ZeRO-2/3 (launched by ``deepspeed`` or ``torchrun``).
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..api import build_pam
from ..checkpoints.pam_checkpoint import load_pam_weights, save_pam
from ..data.sampler import RegionSampler
from ..data.skips import SkipTracker
from ..modeling.config import PAMConfig
from ..processing.collator import PAMCollator
from ..utils.config import ConfigError
from ..utils.layout import IGNORE_INDEX
from ..utils.stop import EXIT_STOPPED, StopSignal
from .config import StageConfig, build_stage, build_trainer_config
from .data import BatchStream, build_dataset, has_split, loader_options
from .distributed import DistInfo, all_reduce_sum, barrier, setup_distributed, shutdown
from .engine import build_engine
from .freeze import apply_trainable_patterns, check_patterns, parameter_table
from .guards import NonFiniteGuard
from .hooks import TrainView, build_hooks
from .preflight import check_output_dir, instantiate_config
from .state import CheckpointManager, TrainState
from .validate import Validator

log = logging.getLogger("pam.train")


def _to_container(node):
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


class Trainer:
    def __init__(self, cfg: DictConfig, *, dist: DistInfo | None = None):
        # ---- validate everything before any work ----
        self.resolved_config = _to_container(cfg)
        self.cfg = build_trainer_config(self.resolved_config["trainer"])
        self.model_cfg = PAMConfig.from_dict(self.resolved_config["model"])
        stages = [("stage.", self.resolved_config["stage"])] + (
            [("next_stage.", self.resolved_config["next_stage"])] if self.resolved_config.get("next_stage") else []
        )
        self.stages: list[StageConfig] = [build_stage(s, prefix) for prefix, s in stages]
        self.data_cfg = cfg.data
        self.dist = (
            dist if dist is not None else setup_distributed(self.cfg.engine, self.cfg.dist_timeout_s)
        )  # set up once, by the caller when given
        self.engine_kind = (
            self.cfg.engine if self.cfg.engine != "auto" else ("ddp" if self.dist.distributed else "single")
        )
        self.accum = self.cfg.accumulation(self.dist.world_size)
        self.loader_options = loader_options(self.cfg.loader, self.dist.device)  # checked against the device now
        self.run_dir = Path(self.cfg.output_dir)
        # writable, with room, before any work
        check_output_dir(self.run_dir, min_free_gb=self.cfg.checkpoint.min_free_disk_gb)
        if self.dist.is_main:
            (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        self._seed(self.cfg.seed)
        # the data config is validated (files read, options typed) before the model is built
        self.train_set = self.dataset("train")
        self.val_set = self.dataset("val") if has_split(self.data_cfg, "val") else None
        self.skips = self._skip_tracker()
        self.guard = NonFiniteGuard(self.cfg.max_nonfinite_in_a_row)
        self.bundle = build_pam(self.model_cfg)
        self.model = self.bundle.model
        # a typo in a later stage's patterns must fail now, not after the earlier stages trained
        # (LoRA parameter names exist only once a LoRA stage has started)
        for (prefix, _), stage in zip(stages, self.stages):
            check_patterns(
                self.model, [p for p in stage.trainable if stage.lora is None or "lora_" not in p], stage.frozen, prefix
            )
        self.hooks = build_hooks(self.cfg, self.resolved_config)
        self.final_checkpoint: Path | None = None
        self.final_metrics: dict = {}
        self.cache = self._build_feature_cache() if self.cfg.feature_cache else None
        self.state = TrainState(self.run_dir, self.dist)
        self.stop = StopSignal(device=self.dist.device)
        self.stopped = False
        self.validator = Validator(
            self.cfg.validation,
            self.val_set,
            loader=self.cfg.loader,
            micro_batch_size=self.cfg.micro_batch_size,
            seed=self.cfg.seed,
            dist=self.dist,
        )
        self.ckpt = CheckpointManager(
            self.cfg.checkpoint,
            self.run_dir,
            write_model=self._write_model,
            read_model=lambda folder: load_pam_weights(self.model, folder),
            dist=self.dist,
        )

    # ----- building blocks ----------------------------------------------------------------------
    @staticmethod
    def _seed(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def dataset(self, split: str):
        """The data config's ``split`` (train, val, test), built for this model's token layout."""
        try:
            return instantiate_config(
                None, f"data.{split}", build=lambda: build_dataset(self.data_cfg, split, self.model_cfg.token_layout())
            )
        except FileNotFoundError as err:  # e.g. no experiment and no data: say how to get some
            root = self.data_cfg.get("root")
            hint = (
                f"; write it with `pam make-data --out {root}`, "
                "pick an experiment that generates it (experiment=quickstart), or set data.root"
                if root
                else ""
            )
            raise ConfigError(f"config `data.{split}`: {err}{hint}") from err

    def _build_feature_cache(self):
        """Encode every training/validation image once (rank 0), then serve features from disk."""
        from .feature_cache import FeatureCache

        cache = FeatureCache(self.cfg.feature_cache, self.model_cfg.sam2, self.model.sam2)
        if self.dist.is_main:
            self.model.sam2.to(self.dist.device)
            collate = PAMCollator(self.bundle.processor)
            for name, ds in (("train", self.train_set), ("val", self.val_set)):
                if ds is not None:
                    n = cache.build(self.model.sam2, ds, collate, batch_size=self.cfg.micro_batch_size, log=log.info)
                    log.info("feature cache %s: %d new images, %d cached in all", name, n, len(cache))
        barrier(self.dist)
        return (
            FeatureCache(self.cfg.feature_cache, self.model_cfg.sam2, self.model.sam2)
            if not self.dist.is_main
            else cache
        )

    def _with_cached_features(self, batch: dict) -> dict:
        if self.cache is None or batch["pixel_values"] is None:
            return batch
        feats = self.cache.lookup(batch.meta["image_keys"])
        if feats is None:  # an image the cache has not seen: SAM 2 encodes it live
            return batch
        return batch.replace_inputs(image_features=feats, pixel_values=None)

    def _on_device(self, batch):
        """``batch`` with cached SAM 2 features swapped in, its inputs copied to this rank's device
        (non-blocking: from pinned memory the copy overlaps with compute)."""
        return self._with_cached_features(batch).to(self.dist.device, non_blocking=True)

    def _skip_tracker(self) -> SkipTracker:
        """The data config's ``skips`` tracker (``data.max_bad_fraction`` is the one knob), else
        SkipTracker's defaults for a data config without one."""
        if "skips" in self.data_cfg and self.data_cfg.skips is not None:
            return instantiate_config(self.data_cfg.skips, "data.skips")
        return SkipTracker()

    def _train_sampler(self) -> RegionSampler:
        """The data config's sampler (a partial, e.g. with group_by_length), placed on this rank.

        Its seed is offset by the stage index so each stage sees its own order."""
        kwargs = dict(rank=self.dist.rank, world_size=self.dist.world_size)
        if "sampler" in self.data_cfg and self.data_cfg.sampler is not None:
            from hydra.utils import instantiate

            partial = instantiate(self.data_cfg.sampler)
            seed = partial.keywords.get("seed", self.cfg.seed) + self.stage_index
            return partial(dataset=self.train_set, **{**kwargs, "seed": seed, "batch_size": self.cfg.micro_batch_size})
        return RegionSampler(self.train_set, shuffle=True, seed=self.cfg.seed + self.stage_index, **kwargs)

    def _collator(self, stage: StageConfig) -> PAMCollator:
        return PAMCollator(self.bundle.processor, max_length=stage.max_length or self.model_cfg.max_length)

    def _prepare_stage(self, stage: StageConfig, init_from: str | Path | None) -> None:
        if init_from:
            load_pam_weights(self.model, init_from)
            log.info("stage %s starts from %s", stage.name, init_from)
        patterns = list(stage.trainable)
        if stage.lora is not None:
            self._apply_lora(stage)
            patterns.append("llm.*lora_*")
        trainable = apply_trainable_patterns(self.model, patterns, stage.frozen)
        if self.dist.is_main:
            print(
                f"== stage {stage.name}: {len(trainable)} trainable tensors\n"
                + parameter_table(self.model, {"sam2 (frozen)": self.model.sam2.model}),
                flush=True,
            )

    def _apply_lora(self, stage: StageConfig) -> None:
        from peft import LoraConfig, get_peft_model

        lora = stage.lora
        self.model.llm = get_peft_model(
            self.model.llm,
            LoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules)
            ),
        )

    # ----- the loop -----------------------------------------------------------------------------
    @property
    def global_step(self) -> int:
        return self.state.global_step

    @property
    def stage_step(self) -> int:
        return self.state.stage_step

    @property
    def stage_index(self) -> int:
        return self.state.stage_index

    def view(self, **extra) -> TrainView:
        """The read-only state hooks get at an event (pam/train/hooks.py)."""
        stage = getattr(self, "stage", None)
        return TrainView(
            step=self.global_step,
            stage=stage.name if stage is not None else "",
            stage_index=self.stage_index,
            stage_step=self.stage_step,
            max_steps=stage.max_steps if stage is not None else 0,
            run_dir=self.run_dir,
            is_main=self.dist.is_main,
            skipped=self.skips.num_skipped,
            skip_summary=self.skips.epoch_summary() if self.skips.num_skipped else "",
            final_checkpoint=self.final_checkpoint,
            save=self.save_checkpoint,
            evaluate=self.evaluate_test,
            **extra,
        )

    def train(self) -> Path | None:
        """Train every stage. Returns the last stage's final weights, or None when a stop signal ended
        the run early (``self.stopped``; a step checkpoint was written, see pam/utils/stop.py)."""
        resume = self.ckpt.find_resume()
        start_stage = self.ckpt.resume_stage(resume)
        final = None
        with self.stop:
            for i, stage in enumerate(self.stages):
                if i < start_stage:
                    continue
                self.state.stage_index = i
                # a later stage starts from the previous stage's final weights unless it names its own
                init_from = stage.init_from or (str(final) if i > 0 and final is not None else None)
                final = self._run_stage(stage, init_from, resume if i == start_stage else None)
                resume = None
                if self.stopped:
                    for h in self.hooks:
                        h.on_stop(self.view())
                    return None
        self.final_checkpoint = final
        for h in self.hooks:
            h.after_train(self.view())
        metrics_file = self.run_dir / "metrics.json"
        if self.dist.is_main and metrics_file.is_file():  # written by the final_evaluation hook
            self.final_metrics = json.loads(metrics_file.read_text())
        return final

    def stateful(self) -> dict:
        """The objects whose state a checkpoint carries, by their key in trainer_state.pt."""
        return {
            "engine": self.engine,
            "sampler": self.batches,
            "skips": self.skips,
            "nonfinite": self.guard,
            "train": self.state,
        }

    def _run_stage(self, stage: StageConfig, init_from: str | None, resume: Path | None) -> Path | None:
        self.stage = stage
        self.state.stage_name, self.state.max_steps = stage.name, stage.max_steps
        self._prepare_stage(stage, None if resume is not None else init_from)
        if resume is not None:  # the weights go in before the engine wraps (and, under ZeRO-3, partitions) them
            self.ckpt.load_model(resume)
        self.engine = build_engine(self.engine_kind, self.model, stage, self.cfg, self.dist, self.accum)
        collate = self._collator(stage)
        self.validator.start_stage(collate)
        self.batches = BatchStream(
            self.train_set,
            self._train_sampler(),
            collate,
            self.cfg.loader,
            micro_batch_size=self.cfg.micro_batch_size,
            world_size=self.dist.world_size,
            device=self.dist.device,
            on_new_epoch=self.skips.reset_epoch,
        )
        self.state.stage_step = 0
        self.ckpt.track(self.stateful())
        if resume is not None:
            self.ckpt.load(resume)
        for h in self.hooks:
            h.before_stage(self.view())
        self.batches.start()
        self.state.restore_rng()  # after the loader started (TrainState)
        while self.stage_step < stage.max_steps:
            micro_batches = []
            for _ in range(self.accum):
                batch = self.batches.next_batch()
                self.skips.update(batch.meta["skipped"], num_samples=len(batch.meta["ids"]))
                micro_batches.append(batch)
            metrics = self.train_step(micro_batches)
            if metrics is None:
                continue  # a NaN/Inf loss or gradient: no update, counted by the guard
            self.state.stage_step += 1
            self.state.global_step += 1
            self.skips.check()
            metrics["stage_index"] = self.stage_index
            if self.validator.should_validate(
                self.stage_step, stage.max_steps
            ):  # before the hooks: checkpoint and log see it
                metrics.update(self.validate())
            view = self.view()
            for h in self.hooks:
                h.after_step(view, metrics)
            if self.stop.agreed():  # every rank, every step: no rank stops alone
                if self.ckpt.last_saved_step != self.global_step:
                    self.save_checkpoint(metrics)
                self.stopped = True
                log.warning(
                    "stopped on %s after step %d; checkpoint %s",
                    ",".join(self.stop.received) or "another rank's signal",
                    self.global_step,
                    self.ckpt.root / f"step-{self.global_step:06d}",
                )
                self.batches.close()
                return None
        for h in self.hooks:
            h.after_stage(self.view())
        self.batches.close()  # the stage's loader workers end here
        self.validator.end_stage()
        final = self.run_dir / "checkpoints" / f"final-{stage.name}"
        self._write_model(final)
        barrier(self.dist)
        return final

    def train_step(self, micro_batches: list) -> dict:
        """One optimiser step over ``micro_batches`` (this rank's share of the global batch).

        The loss of a step is the mean over every label token of the global batch, however the
        batch is split over micro-batches and processes (so DDP == one process). Returns
        ``{"train/loss", "lr", "grad_norm"}``; ``lr`` is the rate this step trained at. Returns None
        when the loss or a gradient is not finite: the step is skipped (see pam/train/guards.py).
        """
        engine = self.engine
        tokens = all_reduce_sum(
            float(sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in micro_batches)), self.dist
        )
        scale = self.dist.world_size / max(tokens, 1.0)
        loss_sum = 0.0
        for micro, batch in enumerate(micro_batches):
            with engine.no_sync(micro < len(micro_batches) - 1):
                loss_sum += engine.forward_backward(self._on_device(batch), scale)
        loss = all_reduce_sum(loss_sum, self.dist) / max(tokens, 1.0)
        if not self.guard.check(
            loss, engine, self.model, self.global_step + 1
        ):  # before the update reaches the weights
            return None
        lr = engine.lr()
        grad_norm = engine.step()
        if not self.guard.after_update(loss, engine, self.global_step + 1):  # DeepSpeed skipped it itself
            return None
        metrics = {"train/loss": loss, "lr": lr, "grad_norm": grad_norm}
        if self.guard.total:
            metrics["train/nonfinite_skipped"] = self.guard.total
        return metrics

    def _write_model(self, folder: Path) -> None:
        with self.engine.gathered_parameters():
            if self.dist.is_main:
                save_pam(
                    self.model,
                    self.bundle.tokenizer,
                    folder,
                    metadata={"stage": self.stage.name, "step": self.global_step},
                )

    def save_checkpoint(self, metrics: dict) -> Path:
        """A step checkpoint of every stateful part (every rank calls this)."""
        return self.ckpt.save(self.global_step, metrics)

    def evaluate_test(self, max_samples: int = 0) -> dict | None:
        """The end-of-run benchmark (rank 0): generate on the test split with the final weights, score
        it (pam.eval's ``quickstart`` benchmark: predictions.jsonl, results.json/.md in the run folder)
        and write report.md and summary.json. None when the data config has no test split."""
        if not has_split(self.data_cfg, "test"):
            return None
        from ..eval import evaluate_dataset
        from .report import write_report

        metrics = evaluate_dataset(
            self.bundle, self.dataset("test"), self.run_dir, max_samples=max_samples, checkpoint=self.final_checkpoint
        )
        write_report(self, self.final_checkpoint, metrics)
        return metrics

    def validate(self) -> dict:
        """``{"val/loss"}`` on the validation split now (pam/train/validate.py)."""
        return self.validator.validate(self.model, autocast=self.engine.autocast, to_device=self._on_device)

    def close(self) -> None:
        """End the process group; a multi-process run leaves with ``os._exit`` (distributed.shutdown),
        with :data:`EXIT_STOPPED` after a stop signal."""
        shutdown(self.dist, exit_process=True, code=EXIT_STOPPED if self.stopped else 0)
