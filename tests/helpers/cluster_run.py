"""A training run that records what the cluster tests check, launched as 1 process or by torchrun.

    python -m tests.helpers.cluster_run OUT OVERRIDE [OVERRIDE ...]

Writes into the folder OUT:
  ``seen-rank<R>.json``   ``[[global step, [sample ids of one micro-batch]], ...]`` for this rank;
  ``state-<event>.pt``    (rank 0) every trainable parameter in full fp32 and its Adam ``exp_avg``,
                          the learning rate and the schedule's step, at ``resumed`` (right after a
                          resume), ``stopped`` (after a stop signal's checkpoint), and around an
                          injected non-finite step: ``attempt<K>`` at the start of attempt K.
Environment:
  ``PAM_TEST_NAN=K``          the K-th optimiser-step attempt gets a NaN loss (and so NaN gradients);
  ``PAM_TEST_STOP_AT=N``      SIGTERM to one rank (``PAM_TEST_STOP_RANK``, default the last) at the
                              start of global step N: every rank must stop after step N.
Exits like ``pam.train.run.run``: 0, or EXIT_STOPPED after a stop signal.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def full_state(trainer) -> dict:
    """Trainable parameters and Adam's first moments in full fp32, whatever the engine (a collective
    under ZeRO-3: every rank calls it)."""
    engine = trainer.engine
    named = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    params, moments = {}, {}
    if hasattr(engine, "engine"):  # DeepSpeed
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        for n, p in named:
            params[n] = safe_get_full_fp32_param(p).detach().cpu().clone()
            m = safe_get_full_optimizer_state(p, "exp_avg")
            moments[n] = None if m is None else m.detach().cpu().clone()
    else:
        for n, p in named:
            params[n] = p.detach().cpu().clone()
            m = engine.optimizer.state.get(p, {}).get("exp_avg")
            moments[n] = None if m is None else m.detach().cpu().clone()
    return {
        "params": params,
        "exp_avg": moments,
        "lr": engine.lr(),
        "schedule_step": int(engine.scheduler.last_epoch),
        "global_step": trainer.global_step,
    }


def main(out: str, overrides: list[str]) -> int:
    """The run; returns the exit code (0, or EXIT_STOPPED after a stop). A multi-process run exits here."""
    import torch
    from hydra import compose, initialize_config_dir

    from pam.train.distributed import setup_distributed
    from pam.train.hooks import HookBase
    from pam.train.trainer import Trainer
    from pam.utils.stop import EXIT_STOPPED

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    dist = setup_distributed(cfg.trainer.engine, cfg.trainer.get("dist_timeout_s", 600.0))
    trainer = Trainer(cfg, dist=dist)
    rank = dist.rank
    nan_at = int(os.environ.get("PAM_TEST_NAN", "0"))
    stop_at = int(os.environ.get("PAM_TEST_STOP_AT", "0"))
    stop_rank = int(os.environ.get("PAM_TEST_STOP_RANK", str(dist.world_size - 1)))
    seen: list = []

    def dump(event: str) -> None:
        state = full_state(trainer)
        if dist.is_main:
            torch.save(state, out / f"state-{event}.pt")

    class Recorder(HookBase):
        def before_stage(self, state) -> None:  # instruments the trainer itself (a test may)
            if state.step > 0:
                dump("resumed")
            next_batch = trainer.batches.next_batch

            def recording_next():
                batch = next_batch()
                seen.append([trainer.global_step + 1, list(batch.meta["ids"])])
                return batch

            trainer.batches.next_batch = recording_next
            if nan_at:
                attempts = {"n": 0}
                train_step = trainer.train_step
                poisoned = {"on": False}

                def poison(_module, _inputs, output):
                    if poisoned["on"]:
                        output.loss_sum = output.loss_sum * float("nan")
                    return output

                trainer.model.register_forward_hook(poison)

                def counting_step(micro_batches):
                    attempts["n"] += 1
                    if attempts["n"] in (nan_at, nan_at + 1):
                        dump(f"attempt{attempts['n']}")
                    poisoned["on"] = attempts["n"] == nan_at
                    return train_step(micro_batches)

                trainer.train_step = counting_step
            if stop_at:
                train_step_s = trainer.train_step

                def signalled_step(micro_batches):
                    if trainer.global_step + 1 == stop_at and rank == stop_rank and not trainer.stop.requested:
                        os.kill(os.getpid(), signal.SIGTERM)
                    return train_step_s(micro_batches)

                trainer.train_step = signalled_step

        def on_stop(self, state) -> None:
            dump("stopped")

    trainer.hooks.append(Recorder())
    trainer.train()
    (out / f"seen-rank{rank}.json").write_text(json.dumps(seen))
    print(f"RUN {'STOPPED' if trainer.stopped else 'COMPLETE'} rank {rank} step {trainer.global_step}", flush=True)
    if dist.distributed:
        trainer.close()  # exits (EXIT_STOPPED after a stop)
    sys.stdout.flush()
    return EXIT_STOPPED if trainer.stopped else 0


if __name__ == "__main__":
    import faulthandler

    faulthandler.register(signal.SIGUSR2, all_threads=True)  # `kill -USR2 PID`: where a hung run is
    sys.exit(main(sys.argv[1], sys.argv[2:]))
