"""Mixtures (ratios, counts), the sampler (order, DDP slices, resume, length grouping), Hydra configs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf.errors import MissingMandatoryValue

import pam.train.config  # noqa: F401  (registers the schema defaults the YAML files extend)
from pam.data.mixture import MixtureComponent, MixtureDataset, resolve_counts
from pam.data.sampler import RegionSampler
from pam.data.skips import SkipTracker
from pam.data.synthetic import SyntheticConfig, generate_quickstart

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Toy:
    """A sized dataset whose items name themselves; lengths grow with the index."""

    def __init__(self, name: str, n: int):
        self.name, self.n, self.epoch = name, n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        assert 0 <= i < self.n
        return {"id": f"{self.name}{i}", "meta": {}}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def approx_lengths(self) -> list[int]:
        return [10 * (i + 1) for i in range(self.n)]


def _names(ds, indices):
    return [ds.component_of(int(i)) for i in indices]


def test_weights_give_the_requested_proportions():
    mix = MixtureDataset(
        [
            {"name": "a", "dataset": Toy("a", 1000), "weight": 0.7},
            {"name": "b", "dataset": Toy("b", 50), "weight": 0.2},
            {"name": "c", "dataset": Toy("c", 300), "weight": 0.1},
        ],
        epoch_size=2000,
        seed=3,
    )
    assert len(mix) == 2000 and mix.counts == [1400, 400, 200]
    sampler = RegionSampler(mix, seed=0)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        seen = Counter(s["meta"]["component"] for s in (mix[i] for i in sampler))
        assert {k: v / 2000 for k, v in seen.items()} == pytest.approx({"a": 0.7, "b": 0.2, "c": 0.1}, abs=0.005)
        # the first 200 draws of a shuffled epoch are already close to the ratios
        first = Counter(_names(mix, list(sampler.global_order())[:200]))
        assert abs(first["a"] / 200 - 0.7) < 0.12
    # oversampling repeats evenly (b: every item 8 times; a: all once, 400 twice); c is subsampled without repeats
    ids = Counter(mix[i]["id"] for i in range(len(mix)))
    assert all(ids[f"b{i}"] == 8 for i in range(50))
    assert Counter(ids[f"a{i}"] for i in range(1000)) == {1: 600, 2: 400}
    assert Counter(ids[f"c{i}"] for i in range(300)) == {1: 200, 0: 100}


def test_counts_percentages_and_epoch_redraws():
    mix = MixtureDataset(
        [
            MixtureComponent("a", Toy("a", 10), num_samples=4),
            MixtureComponent("b", Toy("b", 8), num_samples="50%"),
            MixtureComponent("c", Toy("c", 3), num_samples="all"),
            MixtureComponent("d", Toy("d", 2), num_samples=5),
        ],
        seed=1,
    )
    assert mix.counts == [4, 4, 3, 5] and len(mix) == 16
    first = [mix[i]["id"] for i in range(len(mix))]
    assert Counter(first)["d0"] + Counter(first)["d1"] == 5 and {Counter(first)["d0"], Counter(first)["d1"]} == {2, 3}
    mix.set_epoch(1)
    assert all(c.dataset.epoch == 1 for c in mix.components)
    assert [mix[i]["id"] for i in range(len(mix))] != first  # another epoch, another subset
    mix.set_epoch(0)
    assert [mix[i]["id"] for i in range(len(mix))] == first  # and deterministic
    with pytest.raises(ValueError, match="do not mix"):
        resolve_counts([1, 2], [1.0, None], [None, 3], None, ["a", "b"])
    with pytest.raises(ValueError, match="num_samples"):
        MixtureDataset([MixtureComponent("a", Toy("a", 3), num_samples="lots")])


def test_sampler_order_is_deterministic_and_covers_the_data():
    data = Toy("x", 103)
    a, b = RegionSampler(data, seed=5), RegionSampler(data, seed=5)
    assert list(a) == list(b) and sorted(a) == list(range(103))
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(RegionSampler(data, shuffle=False)) == list(range(103))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_get_disjoint_slices_of_one_order(world_size):
    data = Toy("x", 101)
    samplers = [RegionSampler(data, seed=2, rank=r, world_size=world_size) for r in range(world_size)]
    for s in samplers:
        s.set_epoch(4)
    parts = [list(s) for s in samplers]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(samplers[0])
    flat = [i for step in zip(*parts) for i in step]
    order = samplers[0].global_order()
    assert flat == list(order) and len(order) % world_size == 0
    assert set(flat) == set(range(101))  # wrap-around padding repeats a few, drops none
    dropped = [
        list(RegionSampler(data, seed=2, rank=r, world_size=world_size, drop_last=True)) for r in range(world_size)
    ]
    assert sum(len(d) for d in dropped) == 101 // world_size * world_size
    if world_size > 1:
        assert not set(dropped[0]) & set(dropped[1])


@pytest.mark.parametrize("world_size, group", [(1, False), (2, False), (2, True)])
def test_restored_sampler_yields_the_same_next_indices(world_size, group):
    mix = MixtureDataset(
        [{"name": "a", "dataset": Toy("a", 70), "weight": 2.0}, {"name": "b", "dataset": Toy("b", 30), "weight": 1.0}],
        epoch_size=150,
        seed=9,
    )
    kwargs = dict(seed=11, world_size=world_size, group_by_length=group, batch_size=4, group_size_multiplier=2)
    runs = [RegionSampler(mix, rank=r, **kwargs) for r in range(world_size)]
    for s in runs:
        s.set_epoch(2)
    iters = [iter(s) for s in runs]
    consumed = [[next(it) for _ in range(20)] for it in iters]
    state = runs[0].state_dict()
    assert state == {"epoch": 2, "consumed": 20 * world_size, "seed": 11, "world_size": world_size}
    rest = [list(it) for it in iters]
    order = runs[0].global_order()
    for r in range(world_size):
        assert consumed[r] + rest[r] == [int(i) for i in order[r::world_size]]
    # a fresh process: new dataset objects, new samplers, state loaded
    mix2 = MixtureDataset(
        [{"name": "a", "dataset": Toy("a", 70), "weight": 2.0}, {"name": "b", "dataset": Toy("b", 30), "weight": 1.0}],
        epoch_size=150,
        seed=9,
    )
    resumed = [RegionSampler(mix2, rank=r, **kwargs) for r in range(world_size)]
    for s in resumed:
        s.load_state_dict(state)
        s.set_epoch(2)  # a training loop calling set_epoch for the resumed epoch keeps the position
    assert mix2.epoch == 2
    for r, s in enumerate(resumed):
        assert len(s) == len(rest[r])
        nxt = list(s)
        assert nxt == rest[r]
        assert [mix2[i]["id"] for i in nxt] == [mix[i]["id"] for i in rest[r]]
    # the next epoch starts from the beginning again
    for s in resumed:
        s.set_epoch(3)
    assert len(list(resumed[0])) == len(runs[0])
    # consumed_samples overrides the sampler's count (DataLoader prefetch)
    assert runs[0].state_dict(consumed_samples=8)["consumed"] == 8
    with pytest.raises(ValueError, match="seed"):
        RegionSampler(mix, seed=1).load_state_dict(state)


def test_length_grouping_batches_similar_lengths():
    data = Toy("x", 400)
    lengths = np.array(data.approx_lengths())
    plain = np.array(list(RegionSampler(data, seed=0, batch_size=8)))
    grouped_sampler = RegionSampler(data, seed=0, batch_size=8, group_by_length=True, group_size_multiplier=10)
    grouped = np.array(list(grouped_sampler))
    assert sorted(grouped) == list(range(400))

    def spread(order):
        return np.mean([np.ptp(lengths[order[k : k + 8]]) for k in range(0, 400, 8)])

    assert spread(grouped) < spread(plain) / 4
    with pytest.raises(ValueError, match="approx_lengths"):
        RegionSampler(object.__new__(type("NoLen", (), {"__len__": lambda self: 3})), group_by_length=True)


@pytest.fixture(scope="module")
def quick_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick_cfg")
    generate_quickstart(
        str(out),
        SyntheticConfig(num_train=16, num_val=4, num_test=2, num_train_videos=4, num_val_videos=2, num_test_videos=1),
    )
    return str(out)


@pytest.mark.parametrize("name", ["quickstart", "quickstart_video"])
def test_hydra_configs_build(name, quick_root):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=[f"+data={name}", f"data.root={quick_root}"])
    train, val = instantiate(cfg.data.train), instantiate(cfg.data.val)
    sampler = instantiate(cfg.data.sampler)(dataset=train, rank=0, world_size=1)
    assert isinstance(train, MixtureDataset) and isinstance(sampler, RegionSampler)
    assert isinstance(instantiate(cfg.data.skips), SkipTracker)
    sampler.set_epoch(0)
    sample = train[next(iter(sampler))]
    assert sample["language"] in ("en", "zh") and sample["skipped"] == []
    if name == "quickstart_video":
        assert train.counts == [300, 100] and Counter(c.name for c in train.components) == {
            "synthetic_images": 1,
            "synthetic_videos": 1,
        }
        assert {val[i]["media_type"] for i in range(len(val))} == {"image", "video"}
    else:
        assert len(train) == 16 and {val[i]["media_type"] for i in range(len(val))} == {"image"}


def test_release_config_requires_paths():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=["+data=pam_release"])
    with pytest.raises(Exception) as err:
        instantiate(cfg.data.train)
    # the first mandatory value the build reaches: the shared image root, named by its full key
    assert isinstance(err.value, MissingMandatoryValue) and "data.train.dataset_defaults.root" in str(err.value)


def test_build_mixture_merges_shared_dataset_options(quick_root):
    from pam.data.mixture import build_mixture

    shared = {"format": "pam", "tasks": ["category"], "languages": ["en"], "task_mode": "all", "seed": 3}
    mix = build_mixture(
        {
            "a": {"dataset": {"path": f"{quick_root}/val.jsonl"}},
            "b": {"num_samples": 1, "dataset": {"path": f"{quick_root}/test.jsonl", "tasks": ["short_caption"]}},
            "dropped": None,
        },
        dataset_defaults=shared,
    )
    assert [c.name for c in mix.components] == ["a", "b"] and mix.counts[1] == 1
    a, b = (c.dataset for c in mix.components)
    assert (
        a.config.tasks == ("category",) and b.config.tasks == ("short_caption",) and a.config.seed == b.config.seed == 3
    )
    with pytest.raises(ValueError, match="mixture component a: unknown field"):
        build_mixture({"a": {"dataset": {"path": f"{quick_root}/val.jsonl"}, "wieght": 1.0}}, dataset_defaults=shared)
