"""A training run that SIGKILLs itself at a chosen point, for the kill-and-resume tests.

    python -m tests.helpers.kill_run OVERRIDE [OVERRIDE ...]

``PAM_TEST_KILL`` picks the point (unset: run to the end):
  ``step:N``  after global step N is fully done (checkpoint, metrics line);
  ``save:N``  inside the atomic save of step N's checkpoint, after the model, trainer state and
              info.json are written and before the manifest and the rename;
  ``weights:N`` inside that save, half-way through writing model.safetensors;
  ``term:N``  sends itself SIGTERM at the start of global step N (before its first forward pass): the
              run must finish step N, save, and exit with EXIT_STOPPED;
  ``term2:N`` as ``term:N``, and a second SIGTERM inside the save that follows, before its manifest.
Nothing in the library knows about this: the script patches the functions it kills in.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(overrides: list[str]) -> None:
    import torch
    from hydra import compose, initialize_config_dir

    import pam.checkpoints.pam_checkpoint as pam_checkpoint
    import pam.train.state as state
    from pam.train.hooks import HookBase
    from pam.train.trainer import Trainer

    torch.set_num_threads(1)  # as the in-process reference run in the tests
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    kind, _, at = os.environ.get("PAM_TEST_KILL", "").partition(":")
    at = int(at) if at else -1
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    trainer = Trainer(cfg)

    class KillAfterStep(HookBase):
        def after_step(self, state, metrics) -> None:
            if kind == "step" and state.step == at:
                _die()

    trainer.hooks.append(KillAfterStep())
    if kind == "save":
        write_manifest = state.write_manifest

        def dying_manifest(folder):
            if trainer.global_step == at and Path(folder).name.startswith(".step-"):
                _die()
            return write_manifest(folder)

        state.write_manifest = dying_manifest
    if kind == "weights":
        save_tensors = pam_checkpoint.save_tensors

        def dying_save(tensors, path, metadata=None):
            save_tensors(tensors, path, metadata)
            if trainer.global_step == at and Path(path).name == "model.safetensors" and ".step-" in str(path):
                data = Path(path).read_bytes()
                Path(path).write_bytes(data[: len(data) // 2])
                _die()

        pam_checkpoint.save_tensors = dying_save
    if kind in ("term", "term2"):
        train_step = trainer.train_step

        def signalled_step(micro_batches):
            if trainer.global_step + 1 == at and not trainer.stop.requested:
                os.kill(os.getpid(), signal.SIGTERM)
            return train_step(micro_batches)

        trainer.train_step = signalled_step
    if kind == "term2":
        write_manifest = state.write_manifest

        def signalled_manifest(folder):
            if Path(folder).name == f".step-{at:06d}.tmp-save":
                os.kill(os.getpid(), signal.SIGTERM)
            return write_manifest(folder)

        state.write_manifest = signalled_manifest
    trainer.train()
    if trainer.stopped:
        from pam.utils.stop import EXIT_STOPPED

        print("RUN STOPPED", trainer.global_step, flush=True)
        sys.exit(EXIT_STOPPED)
    print("RUN COMPLETE", trainer.global_step, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
