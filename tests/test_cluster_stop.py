"""Graceful stop outside the training loop: the signal recorder, and ``pam eval`` stopping between
batches with its predictions kept, a one-line message and EXIT_STOPPED; the same call resumes.
(The training loop's stop is tested in tests/test_reliability_resume.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from pam.eval import generate_predictions, get_benchmark, read_predictions
from pam.utils.stop import EXIT_STOPPED, StopRequested, StopSignal


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory) -> Path:
    from pam.data.synthetic import SyntheticConfig, generate_quickstart

    root = tmp_path_factory.mktemp("quick")
    generate_quickstart(
        str(root),
        SyntheticConfig(num_train=1, num_val=1, num_test=3, num_train_videos=0, num_val_videos=0, num_test_videos=0),
    )
    return root


class SignallingGenerator:
    """Answers ``pred <id>``; sends this process ``sig`` while generating batch number ``at`` (1-based)."""

    def __init__(self, at: int = 0, sig: int = signal.SIGTERM):
        self.at, self.sig, self.calls = at, sig, 0

    def seed(self, item_id):
        pass

    def generate_samples(self, samples):
        from types import SimpleNamespace

        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.sig)
        return [SimpleNamespace(text=f"pred {s['id']}", score=0.5, mask=self.empty_mask(s)) for s in samples]

    @staticmethod
    def empty_mask(sample):
        """An all-background mask of the sample's ground-truth shape (the benchmark scores its IoU)."""
        import numpy as np
        import torch

        truth = sample.get("gt_mask")
        return torch.zeros(np.asarray(truth).shape if truth is not None else (1, 1), dtype=torch.bool)


def test_stop_signal_records_and_restores_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignal() as stop:
        assert not stop.requested and not stop.agreed()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # a second one: recorded, nothing else
        assert stop.received == ["SIGUSR1", "SIGTERM"] and stop.agreed()  # one process: agreed == requested
    assert signal.getsignal(signal.SIGUSR1) is before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_eval_stops_between_batches_then_resumes(tmp_path, quick_data, capsys, sig):
    bench = get_benchmark("quickstart", overrides={"generation": {"batch_size": 2}})
    items = bench.read_items(quick_data)
    assert len(items) == 6
    pred = tmp_path / "predictions.jsonl"
    with pytest.raises(StopRequested) as info:
        generate_predictions(bench, items, SignallingGenerator(at=2, sig=sig), pred, progress=False)
    assert info.value.code == EXIT_STOPPED
    name = signal.Signals(sig).name
    err = capsys.readouterr().err
    assert f"quickstart: stopped on {name}; 4 of 6 predictions saved in {pred}; re-run to resume" in err
    assert [r["id"] for r in read_predictions(pred)] == [it["id"] for it in items[:4]]  # the batch under way finished
    generator = SignallingGenerator()
    generate_predictions(bench, items, generator, pred, progress=False)
    assert generator.calls == 1  # only the last batch was left
    assert [r["prediction"] for r in read_predictions(pred)] == [f"pred {it['id']}" for it in items]
