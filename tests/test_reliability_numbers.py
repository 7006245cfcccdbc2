"""Bad numbers: a NaN/Inf loss or gradient skips the optimiser step and is counted; after
``trainer.max_nonfinite_in_a_row`` such steps in a row the run stops with a clear message."""

from __future__ import annotations

import math

import pytest
import torch

from pam.train.guards import NonFiniteError, NonFiniteGuard, first_nonfinite_grad
from pam.train.hooks import HookBase
from pam.train.trainer import Trainer

from .test_train import (  # noqa: F401 (fixtures)
    ONE_STAGE,
    data_root,
    one_torch_thread,
    read_metrics,
    snapshot,
    tiny_cfg,
)

EXTRA = (ONE_STAGE, "data.val=null", "++trainer.max_nonfinite_in_a_row=2")


class InjectNonFinite(HookBase):
    """Makes chosen optimiser-step attempts (1-based) bad: ``loss`` returns a NaN summed loss,
    ``grad`` writes +Inf into one gradient after the backward pass. Records the weights at the start
    of every attempt."""

    def __init__(self, trainer: Trainer, bad: dict[int, str]):
        self.trainer, self.bad = trainer, bad
        self.calls = 0
        self.weights: dict[int, dict] = {}

    def before_stage(self, state) -> None:
        trainer = self.trainer  # a test instruments the trainer itself
        engine = trainer.engine
        forward_backward = engine.forward_backward

        def injected(batch, scale):
            attempt = self.calls // trainer.accum + 1
            if self.calls % trainer.accum == 0:
                self.weights[attempt] = snapshot(trainer.model)
            self.calls += 1
            out = forward_backward(batch, scale)
            kind = self.bad.get(attempt)
            if kind == "loss":
                return float("nan")
            if kind == "grad":
                p = trainer.model.perceiver.semantic_tokens.weight
                p.grad[0, 0] = float("inf")
            return out

        engine.forward_backward = injected


def test_nonfinite_loss_and_gradient_are_skipped_and_counted(tmp_path, data_root):  # noqa: F811
    trainer = Trainer(tiny_cfg(tmp_path, data_root, *EXTRA, "stage.max_steps=3"))
    inject = InjectNonFinite(trainer, {2: "loss", 4: "grad"})
    trainer.hooks.append(inject)
    trainer.train()

    assert trainer.global_step == 3 and inject.calls == 5 * trainer.accum  # 5 attempts, 2 skipped
    assert trainer.guard.total == 2 and trainer.guard.in_a_row == 0
    # a skipped attempt leaves every weight as it was
    for skipped in (2, 4):
        before, after = inject.weights[skipped], inject.weights[skipped + 1]
        assert all(torch.equal(before[k], after[k]) for k in before), f"attempt {skipped} changed the weights"
    assert any(
        not torch.equal(inject.weights[1][k], inject.weights[2][k]) for k in inject.weights[1]
    )  # a good one does not
    # the optimiser and the schedule advanced once per good step only
    steps = {int(s["step"]) for s in trainer.engine.optimizer.state_dict()["state"].values()}
    assert steps == {3}
    assert trainer.engine.scheduler.last_epoch == 3
    final = snapshot(trainer.model)
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
    rows = [r for r in read_metrics(tmp_path) if "train/loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["train/loss"]) for r in rows)
    assert [r.get("train/nonfinite_skipped", 0) for r in rows] == [0, 1, 2]


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(tmp_path, data_root):  # noqa: F811
    trainer = Trainer(tiny_cfg(tmp_path, data_root, *EXTRA, "stage.max_steps=5"))
    trainer.hooks.append(InjectNonFinite(trainer, {2: "loss", 3: "grad", 4: "loss", 5: "loss"}))
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite loss nan at step 2: 3 step\(s\) in a row had a NaN/Inf loss or gradient "
        r"\(limit trainer.max_nonfinite_in_a_row=2\)",
    ):
        trainer.train()
    assert trainer.global_step == 1 and trainer.guard.total == 3
    assert all(torch.isfinite(v).all() for v in snapshot(trainer.model).values() if v.is_floating_point())


def test_guard_names_the_parameter_and_resets_on_a_good_step():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model(torch.ones(1, 2)).sum().backward()
    assert first_nonfinite_grad(model.named_parameters()) is None
    model[1].weight.grad[0, 1] = float("nan")
    assert first_nonfinite_grad(model.named_parameters()) == "1.weight"

    class Engine:  # what the guard needs of an engine: the optimiser and the trainable params
        params = list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=0.1)

    guard = NonFiniteGuard(max_in_a_row=1)
    assert guard.check(1.0, Engine, model, step=7) is False and guard.in_a_row == 1
    assert all(p.grad is None for p in model.parameters())  # cleared: nothing of the bad step is kept
    assert guard.check(0.5, Engine, model, step=8) is True and guard.in_a_row == 0
    assert guard.check(float("inf"), Engine, model, step=9) is False
    with pytest.raises(NonFiniteError, match=r"non-finite loss inf at step 10: 2 step\(s\) in a row"):
        guard.check(float("inf"), Engine, model, step=10)
    assert guard.state_dict() == {"total": 3, "in_a_row": 2}
    with pytest.raises(NonFiniteError, match="this engine cannot skip a step"):  # DeepSpeed stepped already
        NonFiniteGuard(5).check(float("nan"), object(), model, step=1)
