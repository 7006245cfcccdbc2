"""The training loader: epoch seeding with (persistent) workers, resume, pinned PAMBatch, option checks.

Samples are compared by signature: the sample id (which names the drawn task in ``task_mode=random``),
the prompt type and the drawn prompt's numbers, all of which depend on ``(seed, epoch, index)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory as torch_pin_memory

from pam.data.datasets import load_region_dataset
from pam.data.mixture import MixtureDataset
from pam.data.sampler import RegionSampler
from pam.data.synthetic import SyntheticConfig, generate_quickstart
from pam.modeling.sam2_types import ImageFeatures, RegionPrompt
from pam.processing.collator import PAMBatch, PAMCollator
from pam.train.config import LoaderConfig, build_trainer_config
from pam.train.data import BatchStream, loader_options
from pam.train.state import latest_checkpoint
from pam.train.trainer import Trainer
from pam.utils.config import ConfigError

from .test_train import (  # noqa: F401 (fixtures)
    ONE_STAGE,
    CrashBeforeStep,
    data_root,
    losses_by_step,
    one_torch_thread,
    tiny_cfg,
)

BATCH = 3


@pytest.fixture(scope="module")
def qs_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader_data")
    cfg = SyntheticConfig(
        num_train=10,
        num_val=0,
        num_test=0,
        num_train_videos=0,
        num_val_videos=0,
        num_test_videos=0,
        image_size=(64, 64),
        other_size_fraction=0.0,
    )
    generate_quickstart(str(root), cfg)
    return root


def make_dataset(root) -> MixtureDataset:
    """A mixture whose epoch changes both which samples an epoch holds (7 of 10) and the drawn task and prompt."""
    ds = load_region_dataset(str(root / "train.jsonl"), task_mode="random", tasks=["category", "short_caption"], seed=3)
    return MixtureDataset([{"name": "qs", "dataset": ds, "num_samples": 7}], seed=3)


def signature(sample: dict) -> tuple:
    p = sample["prompt"]
    numbers = tuple(
        tuple(np.round(np.asarray(p[k], dtype=np.float64), 4).ravel().tolist())
        for k in ("points", "box")
        if p[k] is not None
    )
    mask = None if p["mask"] is None else int(np.asarray(p["mask"]).sum())
    return (sample["id"], sample["meta"]["prompt_type"], numbers, mask)


def signature_collate(samples: list[dict]) -> PAMBatch:
    """A stand-in collator: the batch's only content is each sample's signature."""
    return PAMBatch({}, {"ids": [s["id"] for s in samples], "signatures": [signature(s) for s in samples]})


def reference_epochs(root, epochs: int) -> list[list[tuple]]:
    """Samples of each epoch read directly in this process, the documented way: set_epoch, then index."""
    ds = make_dataset(root)
    sampler = RegionSampler(ds, shuffle=True, seed=5, rank=0, world_size=1)
    out = []
    for e in range(epochs):
        sampler.set_epoch(e)
        out.append([signature(ds[i]) for i in sampler])
    return out


def stream(root, **loader) -> BatchStream:
    ds = make_dataset(root)
    return BatchStream(
        ds,
        RegionSampler(ds, shuffle=True, seed=5, rank=0, world_size=1),
        signature_collate,
        LoaderConfig(**loader),
        micro_batch_size=BATCH,
        world_size=1,
    )


def take_epochs(s: BatchStream, epochs: int) -> list[list[tuple]]:
    out: list[list[tuple]] = [[] for _ in range(epochs)]
    while True:
        batch = s.next_batch()
        if s.epoch >= epochs:
            break
        out[s.epoch].extend(batch.meta["signatures"])
    s.close()
    return out


PERSISTENT = dict(num_workers=2, persistent_workers=True, prefetch_factor=2)


def test_persistent_workers_draw_each_epoch_like_the_main_process(qs_data):
    ref = reference_epochs(qs_data, 3)
    # the epochs hold different draws (not only another order), so a worker left at epoch 0 would show
    assert len({tuple(sorted(e)) for e in ref}) == 3
    assert [len(e) for e in ref] == [7, 7, 7]
    assert take_epochs(stream(qs_data), 3) == ref  # no workers
    assert take_epochs(stream(qs_data, **PERSISTENT), 3) == ref
    assert take_epochs(stream(qs_data, num_workers=2, persistent_workers=False), 3) == ref


def test_resume_mid_epoch_with_persistent_workers_gives_the_remaining_batches(qs_data):
    total = 8  # 3 batches an epoch (3 + 3 + 1): ends inside the third epoch
    whole = stream(qs_data, **PERSISTENT)
    expected = [whole.next_batch().meta["signatures"] for _ in range(total)]
    whole.close()

    first = stream(qs_data, **PERSISTENT)
    got = [first.next_batch().meta["signatures"] for _ in range(4)]  # one batch into epoch 1
    state = first.state_dict()
    first.close()
    assert state["epoch"] == 1 and state["consumed"] == BATCH

    resumed = stream(qs_data, **PERSISTENT)
    resumed.load_state_dict(state)
    resumed.start()
    got += [resumed.next_batch().meta["signatures"] for _ in range(total - 4)]
    resumed.close()
    assert got == expected


# ------------------------------------------------------------------------------- pinned PAMBatch
def a_batch() -> PAMBatch:
    prompt = RegionPrompt(
        point_coords=torch.tensor([[1.0, 2.0]]), point_labels=torch.tensor([1]), box=torch.tensor([0.0, 0.0, 4.0, 4.0])
    )
    inputs = {
        "input_ids": torch.tensor([[1, 2, 3]]),
        "pixel_values": torch.rand(1, 3, 8, 8),
        "videos": [None, torch.rand(2, 3, 8, 8)],
        "prompts": [prompt, RegionPrompt(mask_input=torch.rand(1, 4, 4))],
        "image_features": ImageFeatures(torch.rand(1, 2, 2, 2), [torch.rand(1, 1, 4, 4)]),
        "orig_sizes": [(8, 8)],
    }
    return PAMBatch(inputs, {"ids": ["a"], "gt_masks": [np.ones((8, 8), bool)]})


def tensors_of(batch: PAMBatch) -> list[torch.Tensor]:
    m = batch.model_inputs
    p0, p1 = m["prompts"]
    return [
        m["input_ids"],
        m["pixel_values"],
        m["videos"][1],
        p0.point_coords,
        p0.point_labels,
        p0.box,
        p1.mask_input,
        m["image_features"].image_embed,
        m["image_features"].high_res_feats[0],
    ]


def test_pam_batch_pins_every_model_input_through_the_dataloader_protocol(monkeypatch):
    """Pinning needs CUDA here, so ``Tensor.pin_memory`` is replaced by a recording copy; torch's
    own pin_memory walk (what the DataLoader's pinning thread calls) must reach the batch's method."""
    batch = a_batch()
    seen = []

    def fake_pin(t):
        seen.append(t)
        return t.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    pinned = torch_pin_memory(batch)
    assert isinstance(pinned, PAMBatch) and pinned.meta is batch.meta  # meta kept, not flattened into a dict
    originals = tensors_of(batch)
    assert [id(t) for t in seen] == [id(t) for t in originals]  # every tensor, once
    for old, new in zip(originals, tensors_of(pinned)):
        assert new is not old and torch.equal(new, old)
    assert pinned["videos"][0] is None and pinned["orig_sizes"] == [(8, 8)]


def test_pam_batch_to_moves_every_model_input():
    moved = a_batch().to("meta", non_blocking=True)
    assert all(t.device.type == "meta" for t in tensors_of(moved))
    assert isinstance(moved.meta["gt_masks"][0], np.ndarray)  # metadata stays on the host


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_pam_batch_really_pins_on_cuda():
    pinned = a_batch().pin_memory()
    assert all(t.is_pinned() for t in tensors_of(pinned))
    on_gpu = pinned.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    for a, b in zip(tensors_of(pinned), tensors_of(on_gpu)):
        assert b.is_cuda and torch.equal(a, b.cpu())


def test_real_collated_batch_pins(monkeypatch, debug_bundle, three_region_samples):
    batch = PAMCollator(debug_bundle.processor)(three_region_samples)
    count = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: count.append(1) or t)
    pinned = torch_pin_memory(batch)
    # input_ids, attention_mask, labels, pixel_values, region_image_index, plus each prompt's tensors
    prompt_tensors = sum(
        sum(getattr(p, f) is not None for f in ("point_coords", "point_labels", "box", "mask_input"))
        for p in batch["prompts"]
    )
    assert len(count) == 5 + prompt_tensors and pinned.meta["ids"] == batch.meta["ids"]


# ------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "fields,name",
    [
        ({"num_workers": -1}, "trainer.loader.num_workers"),
        ({"prefetch_factor": 4}, "trainer.loader.prefetch_factor"),  # without workers
        ({"num_workers": 2, "prefetch_factor": 0}, "trainer.loader.prefetch_factor"),
        ({"persistent_workers": True}, "trainer.loader.persistent_workers"),  # without workers
        ({"pin_memory": "yes"}, "trainer.loader.pin_memory"),
    ],
)
def test_bad_loader_options_fail_naming_the_field(fields, name):
    with pytest.raises(ConfigError, match=rf"`{name}`"):
        build_trainer_config({"loader": fields})


def test_loader_defaults_follow_workers_and_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert loader_options(LoaderConfig(), cpu) == {
        "num_workers": 0,
        "pin_memory": False,
        "persistent_workers": False,
        "prefetch_factor": None,
    }
    assert loader_options(LoaderConfig(num_workers=4), cuda) == {
        "num_workers": 4,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": 2,
    }
    assert (
        loader_options(
            LoaderConfig(num_workers=4, persistent_workers=False, prefetch_factor=6, pin_memory=False), cuda
        )["prefetch_factor"]
        == 6
    )
    with pytest.raises(ConfigError, match=r"`trainer\.loader\.pin_memory`.*cpu"):
        loader_options(LoaderConfig(pin_memory=True), cpu)


# ------------------------------------------------------------------------------- the trainer
def test_trainer_resume_with_persistent_workers_equals_uninterrupted(tmp_path, data_root):  # noqa: F811
    """Two persistent workers; 16 regions at 4 per step, so epoch 1 starts at step 5. A run stopped in
    step 6 resumes from step 5: its new workers start in epoch 1, the uninterrupted run's workers
    crossed into it, and both must log the same losses and end with the same weights."""
    extra = (
        ONE_STAGE,
        "stage.max_steps=6",
        "trainer.checkpoint.every=5",
        "trainer.checkpoint.keep_last=1",
        "trainer.checkpoint.resume=auto",
        "data.val=null",
        "trainer.loader.num_workers=2",
    )

    a = Trainer(tiny_cfg(tmp_path / "a", data_root, *extra))
    assert a.loader_options == {"num_workers": 2, "pin_memory": False, "persistent_workers": True, "prefetch_factor": 2}
    a.train()
    b = Trainer(tiny_cfg(tmp_path / "b", data_root, *extra))
    b.hooks.append(CrashBeforeStep(b, 0, 6))
    with pytest.raises(KeyboardInterrupt):
        b.train()
    b.batches.close()
    assert latest_checkpoint(tmp_path / "b").name == "step-000005"
    b2 = Trainer(tiny_cfg(tmp_path / "b", data_root, *extra))
    b2.train()

    loss_a, loss_b = losses_by_step(tmp_path / "a"), losses_by_step(tmp_path / "b")
    assert sorted(loss_a) == sorted(loss_b) == list(range(1, 7))
    for step in loss_a:
        assert loss_b[step] == pytest.approx(loss_a[step], abs=1e-6, rel=0), f"step {step}"
    wa, wb = a.model.state_dict(), b2.model.state_dict()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")


def test_bad_loader_option_stops_the_trainer_at_start(tmp_path, data_root):  # noqa: F811
    with pytest.raises(ConfigError, match=r"`trainer\.loader\.prefetch_factor`"):
        Trainer(tiny_cfg(tmp_path, data_root, "trainer.loader.prefetch_factor=4"))
    assert not (tmp_path / "config.yaml").exists()  # nothing was started
