"""Bad data at scale: a generated dataset with 5 % bad records, one or more of every fault kind,
is read, sampled and trained through one whole epoch; the skips counted per kind equal the
injected counts. Records with wrong types never reach the sampler: the reader drops them
(``on_error="skip"``) and logs each one."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from pam.data.datasets import load_region_dataset
from pam.data.sampler import RegionSampler
from pam.data.schema import MaskAnnotation
from pam.data.skips import SkipTracker
from pam.data.synthetic import SyntheticConfig, generate_quickstart

GOOD = 153
# reason the dataset reports -> records injected; "wrong_types" is dropped by the reader
INJECTED = Counter(
    {
        "corrupt_image": 1,
        "corrupt_video": 1,
        "bad_rle": 1,
        "empty_mask": 1,
        "missing_media": 2,
        "box_outside_image": 1,
        "wrong_types": 1,
    }
)


def _bad_lines(root: Path, good: dict) -> list[dict]:
    h, w = good["height"], good["width"]
    rle = good["regions"][0]["mask"]
    region = {"category": "thing"}
    bad = root / "bad"
    bad.mkdir()
    jpeg = io.BytesIO()
    Image.open(root / good["image"]).convert("RGB").save(jpeg, format="JPEG")
    (bad / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (bad / "unreadable.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    empty = MaskAnnotation.from_mask(np.zeros((h, w), bool)).to_json()
    return [
        {"id": "bad/truncated_jpeg", "image": "bad/truncated.jpg", "regions": [{"mask": rle, **region}]},
        {"id": "bad/unreadable_mp4", "video": "bad/unreadable.mp4", "regions": [{"masks": {"0": rle}, **region}]},
        {"id": "bad/rle", "image": good["image"], "regions": [{"mask": {"size": [h, w], "counts": ""}, **region}]},
        {"id": "bad/empty_mask", "image": good["image"], "regions": [{"mask": empty, **region}]},
        {"id": "bad/missing_image", "image": "bad/nowhere.png", "regions": [{"mask": rle, **region}]},
        {
            "id": "bad/missing_frame",
            "frames": [good["image"], "bad/gone.png"],
            "regions": [{"masks": {"0": rle}, **region}],
        },
        {"id": "bad/wrong_types", "image": 42, "regions": [{"box": "left", **region}]},
        {
            "id": "bad/box_outside",
            "image": good["image"],
            "regions": [{"box": [w + 50.0, h + 50.0, 10.0, 10.0], **region}],
        },
    ]


@pytest.fixture(scope="module")
def faulty_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faulty")
    generate_quickstart(
        str(root),
        SyntheticConfig(num_train=GOOD, num_val=2, num_test=2, num_train_videos=0, num_val_videos=0, num_test_videos=0),
    )
    lines = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    bad = _bad_lines(root, lines[0])
    assert len(bad) == sum(INJECTED.values())
    step = len(lines) // len(bad)  # spread out: a bad index's retry lands on a good record
    for k, rec in enumerate(bad):
        lines.insert(k * (step + 1) + step // 2, rec)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert len(lines) == GOOD + len(bad) and len(bad) / len(lines) == pytest.approx(0.05, abs=0.001)
    return root


def _expected_skips() -> Counter:
    return Counter({k: v for k, v in INJECTED.items() if k != "wrong_types"})


def test_one_epoch_over_five_percent_bad_records_counts_each_kind(faulty_root, caplog):
    with caplog.at_level(logging.WARNING):
        ds = load_region_dataset(
            str(faulty_root / "train.jsonl"), on_error="skip", tasks=["category"], languages=["en"], task_mode="random"
        )
    dropped = [r for r in caplog.records if "dropping invalid record" in r.getMessage()]
    assert len(dropped) == INJECTED["wrong_types"] and "bad/wrong_types" in dropped[0].getMessage()
    assert len(ds) == GOOD + sum(_expected_skips().values())  # 160: every other bad record is sampled

    sampler = RegionSampler(ds, shuffle=True, seed=0)
    sampler.set_epoch(0)
    tracker = SkipTracker(max_bad_fraction=0.05, min_seen=100)
    seen_ids = []
    for batch in DataLoader(ds, batch_size=8, sampler=sampler, collate_fn=list):
        tracker.update([s["skipped"] for s in batch], num_samples=len(batch))
        tracker.check()  # 7 of 160 is under the 5 % limit: the run goes on
        seen_ids += [s["meta"]["record_id"] for s in batch]
    assert tracker.counts == _expected_skips()
    assert tracker.num_seen == len(ds) and not any(i.startswith("bad/") for i in seen_ids)
    skipped_ids = sorted(e for ids in tracker.examples.values() for e in ids)
    assert [i.split("/r0")[0] for i in skipped_ids] == sorted(
        f"bad/{n}"
        for n in (
            "truncated_jpeg",
            "unreadable_mp4",
            "rle",
            "empty_mask",
            "missing_image",
            "missing_frame",
            "box_outside",
        )
    )
    print(f"injected {dict(INJECTED)}; skipped {dict(tracker.counts)} + {len(dropped)} dropped at read")


@pytest.mark.soak
def test_training_through_the_faulty_epoch_reaches_the_end(faulty_root, tmp_path, caplog):
    """The Trainer over the same data: 20 steps x 8 regions = exactly one epoch of the 160 samples."""
    from pam.train.trainer import Trainer

    from .test_train import ONE_STAGE, TINY, compose_train, losses_by_step

    overrides = [
        *TINY,
        ONE_STAGE,
        f"trainer.output_dir={tmp_path}",
        f"data.root={faulty_root}",
        "trainer.feature_cache=null",
        "data.val=null",
        "data.tasks=[category]",
        "data.languages=[en]",
        "++data.dataset.on_error=skip",
        "stage.max_steps=20",
        "trainer.global_batch_size=8",
        "trainer.micro_batch_size=8",
        "trainer.logging.every=5",
    ]
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(compose_train(overrides))
        final = trainer.train()
    assert trainer.global_step == 20 and (final / "model.safetensors").is_file()
    assert trainer.skips.counts == _expected_skips() and trainer.skips.num_seen == 160
    assert sum("dropping invalid record" in r.getMessage() for r in caplog.records) == INJECTED["wrong_types"]
    assert sorted(losses_by_step(tmp_path)) == [5, 10, 15, 20]
