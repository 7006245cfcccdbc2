"""Training checkpoints: weights + optimiser + scheduler + RNG + sampler + step, kept K at a time.

Layout of a run folder::

    checkpoints/step-000200/     model/ (a PAM checkpoint folder), trainer_state.pt, info.json
    checkpoints/best -> step-...  (a copy, so deleting old steps never breaks it)
    checkpoints/final/           the stage's last weights

Every checkpoint directory is written to a temporary name and renamed into place, with a
``manifest.json`` of sha256 checksums written last; resuming picks the newest step checkpoint whose
checksums verify, and logs each damaged one it passes over.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from ..checkpoints.integrity import CheckpointCorruptError, verify_manifest, write_manifest
from ..checkpoints.io import atomic_directory
from .preflight import save_error

log = logging.getLogger("pam.train")

STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]), "gauss": (int(np_state[3]), float(np_state[4]))},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["gauss"][0], n["gauss"][1]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_step_checkpoints(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_root.iterdir() if (m := STEP_DIR.match(p.name)) and (p / "info.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path, *, verify: bool = True) -> Path | None:
    """The newest step checkpoint of ``run_dir``; with ``verify``, the newest whose checksums hold
    (each damaged one passed over is logged with the reason)."""
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


class CheckpointManager:
    def __init__(self, run_dir: Path, *, keep_last: int, best_metric: str, best_mode: str):
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.best_value: float | None = None
        info = self.root / "best" / "info.json"
        if info.is_file():
            self.best_value = json.loads(info.read_text()).get("metrics", {}).get(best_metric)

    def save(self, step: int, write_model, trainer_state: dict, metrics: dict) -> Path:
        """``write_model(folder)`` writes the PAM checkpoint; the rest is trainer state."""
        path = self.root / f"step-{step:06d}"
        try:
            with atomic_directory(path) as tmp:
                write_model(tmp / "model")
                torch.save(trainer_state, tmp / "trainer_state.pt")
                (tmp / "info.json").write_text(json.dumps({"step": step, "metrics": metrics}, indent=2, sort_keys=True))
                write_manifest(tmp)  # last: a folder with a manifest was written to the end
        except OSError as e:  # disk full, quota, I/O error: the temporary folder is gone, old ones stay
            steps = list_step_checkpoints(self.root)
            raise save_error(path, e, steps[-1] if steps else None) from e
        self._maybe_best(path, metrics)
        for old in list_step_checkpoints(self.root)[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def _maybe_best(self, path: Path, metrics: dict) -> None:
        value = metrics.get(self.best_metric)
        if value is None:
            return
        better = self.best_value is None or (value < self.best_value if self.best_mode == "min" else value > self.best_value)
        if better:
            self.best_value = value
            with atomic_directory(self.root / "best") as tmp:
                shutil.copytree(path, tmp, dirs_exist_ok=True)

    @staticmethod
    def load_trainer_state(path: Path) -> dict:
        return torch.load(Path(path) / "trainer_state.pt", map_location="cpu", weights_only=True)
