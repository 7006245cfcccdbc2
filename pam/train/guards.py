"""Bad numbers: a step whose loss or gradient is not finite is skipped and counted.

The check runs after the backward passes and before the optimiser step, so a NaN or Inf never
reaches the weights or the optimiser's moments. ``trainer.max_nonfinite_in_a_row`` such steps in a
row are skipped; the next one stops the run with :class:`NonFiniteError`. A skipped step does not
advance the step counter or the learning-rate schedule; its batches are consumed.

Under DeepSpeed ZeRO-2/3 the optimiser steps inside ``forward_backward`` (DeepSpeed owns the
accumulation boundary), and DeepSpeed itself leaves weights, optimiser moments and schedule alone
when the global gradient norm is NaN/Inf (its overflow path, in fp32, bf16 and fp16 alike). The
guard then counts the step from ``engine.step_applied()`` (:meth:`NonFiniteGuard.after_update`), with
the same limit and message as for the other engines.
"""

from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger("pam.train")


class NonFiniteError(FloatingPointError):
    """Too many optimiser steps in a row had a non-finite loss or gradient."""


def first_nonfinite_grad(named_params) -> str | None:
    """Name of the first parameter whose gradient holds a NaN or Inf, else None (one device sync)."""
    named = [(n, p.grad) for n, p in named_params if p.grad is not None]
    if not named:
        return None
    ok = torch.stack([torch.isfinite(g).all() for _, g in named])
    if bool(ok.all()):
        return None
    return named[int((~ok).nonzero()[0])][0]


class NonFiniteGuard:
    def __init__(self, max_in_a_row: int):
        if max_in_a_row < 0:
            raise ValueError(f"max_in_a_row must be >= 0, got {max_in_a_row}")
        self.max_in_a_row = max_in_a_row
        self.total = 0  # steps skipped over the run
        self.in_a_row = 0

    def check(self, loss: float, engine, model, step: int) -> bool:
        """True when the step may update the weights; False when it was skipped (gradients cleared).

        Raises :class:`NonFiniteError` once more than ``max_in_a_row`` steps in a row were bad."""
        if getattr(engine, "skips_nonfinite_itself", False):
            return True  # judged after its step: after_update
        what = None
        if not math.isfinite(loss):
            what = f"loss {loss}"
        elif hasattr(engine, "params"):
            name = first_nonfinite_grad((n, p) for n, p in model.named_parameters() if p.requires_grad)
            if name is not None:
                what = f"gradient of {name}"
        if what is None:
            self.in_a_row = 0
            return True
        can_skip = hasattr(engine, "optimizer") and hasattr(engine, "params")
        self._count(what, step, can_skip)
        engine.optimizer.zero_grad(set_to_none=True)
        log.warning("skipping step %d: non-finite %s (%d in a row, %d in all)", step, what, self.in_a_row, self.total)
        return False

    def after_update(self, loss: float, engine, step: int) -> bool:
        """For an engine that skips non-finite steps itself (DeepSpeed): True when its update was
        applied, False when it skipped one (counted; raises past the limit like :meth:`check`)."""
        if not getattr(engine, "skips_nonfinite_itself", False):
            return True
        if engine.step_applied():
            if not math.isfinite(loss):
                raise NonFiniteError(
                    f"non-finite loss {loss} at step {step}, yet the engine applied the update (finite gradients)"
                )
            self.in_a_row = 0
            return True
        what = f"loss {loss}" if not math.isfinite(loss) else "gradient (DeepSpeed found a NaN/Inf norm)"
        self._count(what, step, True)
        log.warning("skipped step %d: non-finite %s (%d in a row, %d in all)", step, what, self.in_a_row, self.total)
        return False

    def _count(self, what: str, step: int, can_skip: bool) -> None:
        self.total += 1
        self.in_a_row += 1
        if self.in_a_row > self.max_in_a_row or not can_skip:
            raise NonFiniteError(
                f"non-finite {what} at step {step}: {self.in_a_row} step(s) in a row had a NaN/Inf loss or gradient "
                f"(limit trainer.max_nonfinite_in_a_row={self.max_in_a_row}"
                + ("" if can_skip else "; this engine cannot skip a step")
                + "). Lower the learning rate, check the data, or use fp32/bf16."
            )

    def state_dict(self) -> dict:
        return {"total": self.total, "in_a_row": self.in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.in_a_row = int(state["total"]), int(state["in_a_row"])
