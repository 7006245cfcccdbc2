"""Resuming on another number of ranks: the global batch is kept (accumulation recomputed, or a
start-up error naming the fields), no sample of the epoch is seen twice or missed (length grouping
included), weights and optimiser state carry over (DeepSpeed: through its universal checkpoint), and
the losses after the resume follow an uninterrupted run at the new world size.

The end-to-end runs stop on SIGTERM sent to ONE rank mid-epoch (so the stop is agreed by all),
then resume on the other world size; gloo on CPU. One direction per engine runs by default (the
slowest pairs are soak tests)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pam.data.sampler import RegionSampler
from pam.train.config import build_trainer_config
from pam.train.state import latest_checkpoint
from pam.utils.config import ConfigError
from pam.utils.stop import EXIT_STOPPED

from .helpers.cluster_launch import assert_same_state, launch, load_state, losses, make_data, run_here, seen


class Lengths:
    """A sized dataset with approx_lengths, for length grouping."""

    def __init__(self, n: int):
        self.lengths = list(np.random.default_rng(3).integers(5, 500, size=n))

    def __len__(self) -> int:
        return len(self.lengths)

    def approx_lengths(self):
        return self.lengths


def _take(samplers, per_rank: int) -> list[int]:
    out = []
    for s in samplers:
        it = iter(s)
        out += [next(it) for _ in range(per_rank)]
    return out


@pytest.mark.parametrize("before,after", [(2, 1), (1, 2), (2, 4), (4, 3)])
@pytest.mark.parametrize("group", [False, True])
def test_sampler_resumed_on_another_world_size_sees_each_sample_once(before, after, group):
    data = Lengths(48)
    kw = dict(seed=5, group_by_length=group, batch_size=2, group_size_multiplier=2)
    old = [RegionSampler(data, rank=r, world_size=before, **kw) for r in range(before)]
    for s in old:
        s.set_epoch(1)
    first = _take(old, 12 // before)  # 12 samples of the epoch, over all ranks
    state = old[0].state_dict(consumed_samples=12)
    assert state["world_size"] == before
    new = [RegionSampler(data, rank=r, world_size=after, **kw) for r in range(after)]
    for s in new:
        s.load_state_dict(state)
        s.set_epoch(1)
    assert len({len(s) for s in new}) == 1  # every rank the same number of steps
    rest = [i for s in new for i in s]
    counts = Counter(first + rest)
    pad = -(48 - 12) % after
    assert set(counts) == set(range(48)) and sum(counts.values()) == 48 + pad  # only wrap-around padding repeats
    if pad == 0:
        assert max(counts.values()) == 1
    # until the epoch ends, a checkpoint still names the order's world size; the next epoch is the new one's
    assert new[0].state_dict()["world_size"] == before
    new[0].set_epoch(2)
    assert new[0].state_dict()["world_size"] == after and new[0].total_size() == 48


def test_a_global_batch_the_new_world_size_cannot_keep_fails_at_start_up():
    cfg = build_trainer_config({"global_batch_size": 8, "micro_batch_size": 2})
    assert cfg.accumulation(1) == 4 and cfg.accumulation(2) == 2 and cfg.accumulation(4) == 1
    with pytest.raises(
        ConfigError,
        match=r"trainer.global_batch_size.*\(8\) must be a multiple of micro_batch_size x world_size \(2 x 3\)",
    ):
        cfg.accumulation(3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("ws") / "data")


# 4 steps are one epoch of the 16 regions; the stop comes in step 2. Without length grouping the
# order of an epoch is the same for every world size, so the uninterrupted run at the new world size
# trains on the same global batches and its losses can be compared step by step; length grouping
# across a world-size change is covered by the sampler test above.
STEPS = ("stage.max_steps=4", "trainer.checkpoint.every=0")

CASES = [
    pytest.param("ddp", 2, 1, id="ddp-2to1"),
    pytest.param("ddp", 1, 2, id="ddp-1to2", marks=pytest.mark.soak),
    pytest.param("zero2", 2, 1, id="zero2-2to1", marks=pytest.mark.soak),
    pytest.param("zero2", 1, 2, id="zero2-1to2", marks=pytest.mark.soak),
    pytest.param("zero3", 2, 1, id="zero3-2to1", marks=pytest.mark.soak),
    pytest.param("zero3", 1, 2, id="zero3-1to2", marks=pytest.mark.soak),
]


def _run(out, run_dir, data, engine: str, ranks: int) -> None:
    """A run to the end; one DDP rank runs in this process (cluster_launch.run_here)."""
    if engine == "ddp" and ranks == 1:
        run_here(out, run_dir, data, *STEPS)
        return
    proc = launch(out, run_dir, data, engine, ranks, *STEPS)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("engine,before,after", CASES)
def test_resume_on_another_world_size(tmp_path, data, engine, before, after):
    if engine != "ddp":
        pytest.importorskip("deepspeed")
    run = tmp_path / "run"
    stopped = launch(tmp_path / "a", run, data, engine, before, *STEPS, env={"PAM_TEST_STOP_AT": "2"})
    out = stopped.stdout + stopped.stderr
    assert stopped.returncode in (EXIT_STOPPED, 1), out[-4000:]  # torchrun reports its workers' 75 as 1
    assert out.count("RUN STOPPED") == before and "step 2" in out.split("RUN STOPPED")[-1][:40], out[-4000:]
    assert latest_checkpoint(run).name == "step-000002"
    assert sorted(seen(tmp_path / "a")) == [1, 2]  # every rank stopped after step 2, the signalled one too

    _run(tmp_path / "b", run, data, engine, after)
    # weights, Adam moments, learning rate and schedule right after the resume are the saved ones
    assert_same_state(load_state(tmp_path / "a", "stopped"), load_state(tmp_path / "b", "resumed"))

    reference_run = tmp_path / "reference"
    _run(tmp_path / "r", reference_run, data, engine, after)
    # the epoch's samples: the stopped part plus the resumed part are the uninterrupted run's, once each
    interrupted = seen(tmp_path / "a")
    interrupted.update(seen(tmp_path / "b"))
    assert sorted(interrupted) == [1, 2, 3, 4]
    all_ids = [i for ids in interrupted.values() for i in ids]
    ref_ids = [i for ids in seen(tmp_path / "r").values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 16 and Counter(all_ids) == Counter(ref_ids)
    # the loss curve after the resume follows the uninterrupted run at the new world size
    got, want = losses(run), losses(reference_run)
    assert sorted(got) == sorted(want) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert got[step] == pytest.approx(want[step], rel=1e-4, abs=1e-5), f"step {step}"
