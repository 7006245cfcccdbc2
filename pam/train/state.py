"""Training checkpoints: one manager saves and resumes every stateful part of a run.

Layout of a run folder::

    checkpoints/step-000200/     model/ (a PAM checkpoint folder), trainer_state.pt, info.json,
                                 deepspeed/ (ZeRO shards, DeepSpeed engine only), manifest.json
    checkpoints/best             a copy of the best step checkpoint (deleting old steps never breaks it)
    checkpoints/final-<stage>/   the stage's last weights

:class:`CheckpointManager` is handed ``states={name: object}`` (the engine, the batch stream, the
skip tracker, the non-finite guard, the :class:`TrainState`). Saving writes each object's
``state_dict()`` into ``trainer_state.pt`` under its name, and lets objects with ``save_sharded(folder)``
(DeepSpeed) write their own files; resuming hands each object its entry back (``load_state_dict``)
and calls ``load_sharded(folder)`` where it exists. There is no other resume path.

Every checkpoint is written into ``.step-NNNNNN.tmp-save`` by all ranks, then ``manifest.json`` (the
sha256 of every file, sharded state included) is written last by rank 0 and the folder is renamed
into place. A folder without a manifest was not written to the end; resuming picks the newest step
checkpoint whose checksums hold, and logs each damaged one it passes over, naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..checkpoints.integrity import CheckpointCorruptError, verify_manifest, write_manifest
from ..checkpoints.io import atomic_directory
from .config import CheckpointConfig
from .distributed import DistInfo, all_reduce_min, barrier

log = logging.getLogger("pam.train")

STEP_DIR = re.compile(r"^step-(\d+)$")
TRAINER_STATE = "trainer_state.pt"
OPTIONAL_STATES = ("skips", "nonfinite")  # older checkpoints were written without them


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the previous checkpoints are untouched."""


def save_error(target: Path, exc: OSError, last_good: Path | None) -> CheckpointSaveError:
    kept = f"the last good checkpoint {last_good} is kept" if last_good is not None else "no earlier checkpoint exists"
    reason = exc.strerror or str(exc)
    return CheckpointSaveError(
        exc.errno, f"could not write checkpoint {target}: {reason}; nothing was replaced and {kept}"
    )


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "key": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "gauss": (int(np_state[3]), float(np_state[4])),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["gauss"][0], n["gauss"][1]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainState:
    """The loop's counters, which hooks read and checkpoints carry.

    The RNG state travels with it; a loaded one is applied by :meth:`restore_rng` once the stage's
    loader has started (nothing done while starting may move the stream an uninterrupted run continues).
    """

    def __init__(self, run_dir: Path, dist: DistInfo):
        self.run_dir = Path(run_dir)
        self.dist = dist
        self.global_step = 0  # optimiser steps over all stages
        self.stage_step = 0  # optimiser steps in the current stage
        self.stage_index = 0
        self.stage_name = ""
        self.max_steps = 0  # of the current stage
        self._rng: dict | None = None

    @property
    def last_step_of_stage(self) -> bool:
        return self.stage_step == self.max_steps

    def state_dict(self) -> dict:
        return {
            "global_step": self.global_step,
            "stage_step": self.stage_step,
            "stage_index": self.stage_index,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.global_step, self.stage_step = int(state["global_step"]), int(state["stage_step"])
        self.stage_index = int(state.get("stage_index", self.stage_index))
        self._rng = state["rng"]

    def restore_rng(self) -> None:
        if self._rng is not None:
            set_rng_state(self._rng)
            self._rng = None


def list_step_checkpoints(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in ckpt_root.iterdir()
        if (m := STEP_DIR.match(p.name)) and (p / "info.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path, *, verify: bool = True) -> Path | None:
    """The newest step checkpoint of ``run_dir``; with ``verify``, the newest whose checksums hold
    (each damaged one passed over is logged with the reason, which names the file)."""
    steps = list_step_checkpoints(Path(run_dir) / "checkpoints")
    if not verify:
        return steps[-1] if steps else None
    for path in reversed(steps):
        try:
            verify_manifest(path)
        except CheckpointCorruptError as e:
            log.warning("skipping damaged checkpoint %s: %s", path, e)
            continue
        return path
    return None


def read_trainer_state(path: Path) -> dict:
    """``trainer_state.pt`` of a checkpoint folder (tensors and plain containers only)."""
    state = torch.load(Path(path) / TRAINER_STATE, map_location="cpu", weights_only=True)
    if "train" not in state and "global_step" in state:  # written before the loop counters had their own entry
        state["train"] = {k: state.pop(k) for k in ("global_step", "stage_step", "rng")}
    return state


class CheckpointManager:
    """Saves and resumes ``states`` (module docstring) in ``run_dir/checkpoints``, as ``cfg``
    (``trainer.checkpoint``) says: ``keep_last`` step checkpoints are kept, plus a copy of the best by
    ``best_metric`` (``best_mode`` min or max); ``resume`` picks the checkpoint :meth:`find_resume` returns.

    ``write_model(folder)`` writes the PAM model folder; every rank calls it (under ZeRO-3 the
    parameters are gathered collectively) and only the main rank writes. ``read_model(folder)`` loads
    it back (:meth:`load_model`, before an engine wraps the model). ``states`` may be given later,
    once the stage's parts exist (:meth:`track`).
    """

    def __init__(
        self,
        cfg: CheckpointConfig,
        run_dir: Path,
        *,
        states: dict | None = None,
        write_model: Callable[[Path], None] | None = None,
        read_model: Callable[[Path], None] | None = None,
        dist: DistInfo | None = None,
    ):
        self.cfg = cfg
        self.root = Path(run_dir) / "checkpoints"
        self.states = dict(states or {})
        self.write_model = write_model
        self.read_model = read_model
        self.dist = dist or DistInfo()
        self.best_value: float | None = None
        self.last_saved_step: int | None = None
        info = self.root / "best" / "info.json"
        if info.is_file():
            self.best_value = json.loads(info.read_text()).get("metrics", {}).get(cfg.best_metric)

    def track(self, states: dict) -> None:
        """Save and resume these objects from now on (a stage builds a new engine and batch stream)."""
        self.states = dict(states)

    # ------------------------------------------------------------------ finding a checkpoint
    def find_resume(self) -> Path | None:
        """``cfg.resume``: ``auto``, the newest intact step checkpoint (or None); ``never``, None; else
        that folder, which must be a verified training checkpoint."""
        mode = self.cfg.resume
        if mode == "never":
            return None
        if mode == "auto":
            return latest_checkpoint(self.root.parent)
        path = Path(mode)
        if not (path / TRAINER_STATE).is_file():
            raise FileNotFoundError(f"trainer.checkpoint.resume={mode}: not a training checkpoint (no {TRAINER_STATE})")
        verify_manifest(path)
        return path

    @staticmethod
    def resume_stage(path: Path | None) -> int:
        """The index of the stage that checkpoint ``path`` was written in (0 without one)."""
        return int(read_trainer_state(path)["train"].get("stage_index", 0)) if path is not None else 0

    # ------------------------------------------------------------------ save
    def save(self, step: int, metrics: dict) -> Path:
        """Every rank calls this. Writes ``step-NNNNNN`` atomically (module docstring) and prunes old ones."""
        path = self.root / f"step-{step:06d}"
        staging = self.root / f".{path.name}.tmp-save"
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        main = self.dist.is_main
        if main:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run killed inside a save
            staging.mkdir(parents=True)
        barrier(self.dist)
        error: OSError | None = None
        try:
            for obj in self.states.values():
                if hasattr(obj, "save_sharded"):
                    obj.save_sharded(staging)  # collective: every rank writes its shard
            state = {name: obj.state_dict() for name, obj in self.states.items()}
            if self.write_model is not None:
                self.write_model(staging / "model")
            if main:
                torch.save(state, staging / TRAINER_STATE)
                (staging / "info.json").write_text(
                    json.dumps({"step": step, "metrics": metrics}, indent=2, sort_keys=True)
                )
        except OSError as e:  # disk full, quota, I/O error
            error = e
        barrier(self.dist)  # every shard is on disk before the manifest hashes it
        if error is None and main:
            try:
                write_manifest(staging)  # last: a folder with a manifest was written to the end
                self._move_into_place(staging, path)
            except OSError as e:
                error = e
        if all_reduce_min(0.0 if error is not None else 1.0, self.dist) < 1.0:
            if main:
                shutil.rmtree(staging, ignore_errors=True)
            steps = list_step_checkpoints(self.root)
            exc = error or OSError(None, "another rank failed to write its part")
            raise save_error(path, exc, steps[-1] if steps else None) from error
        if main:
            self._maybe_best(path, metrics)
            for old in list_step_checkpoints(self.root)[: -self.cfg.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
                for derived in (self.root / ".universal").glob(f"{old.name}-*"):  # engine.universal_checkpoint's cache
                    shutil.rmtree(derived, ignore_errors=True)
        barrier(self.dist)
        self.last_saved_step = step
        return path

    @staticmethod
    def _move_into_place(staging: Path, path: Path) -> None:
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _maybe_best(self, path: Path, metrics: dict) -> None:
        value = metrics.get(self.cfg.best_metric)
        if value is None:
            return
        better = self.best_value is None or (
            value < self.best_value if self.cfg.best_mode == "min" else value > self.best_value
        )
        if better:
            self.best_value = value
            with atomic_directory(self.root / "best") as tmp:
                shutil.copytree(path, tmp, dirs_exist_ok=True)

    # ------------------------------------------------------------------ resume
    def load_model(self, path: Path) -> None:
        """The model weights of checkpoint ``path`` (``read_model``); called before the engine wraps
        (and, under ZeRO-3, partitions) the model, then :meth:`load` restores the rest."""
        if self.read_model is None:
            raise ValueError("CheckpointManager.load_model needs read_model")
        self.read_model(Path(path) / "model")

    def load(self, path: Path) -> None:
        """Hand every state its entry of ``path/trainer_state.pt``, then let sharded ones read their files."""
        path = Path(path)
        state = read_trainer_state(path)
        missing = [name for name in self.states if name not in state and name not in OPTIONAL_STATES]
        if missing:
            raise CheckpointCorruptError(f"{path}/{TRAINER_STATE}: no entry for {missing} (it has {sorted(state)})")
        for name, obj in self.states.items():
            if name not in state:
                log.warning("%s has no %r state; it starts fresh", path, name)
                continue
            obj.load_state_dict(state[name])
            if hasattr(obj, "load_sharded"):
                obj.load_sharded(path)
        log.info("resumed from %s at step %d", path, int(state["train"]["global_step"]) if "train" in state else -1)

    @staticmethod
    def load_trainer_state(path: Path) -> dict:
        return read_trainer_state(path)
