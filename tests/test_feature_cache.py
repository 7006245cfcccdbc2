"""The SAM 2 feature cache keys images by file, not by how the data root is spelled."""

from __future__ import annotations

import os

import pytest
import torch

from pam.data.datasets import load_region_dataset
from pam.data.synthetic import SyntheticConfig, generate_quickstart
from pam.processing.collator import PAMCollator
from pam.train.feature_cache import FeatureCache

from .helpers import debug_config

NUM_IMAGES = 2


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Quick-start data (two regions per image, so regions share an image) in ``real``, reachable
    through a symlink and through a path with ``..``."""
    base = tmp_path_factory.mktemp("fc")
    real = base / "real"
    cfg = SyntheticConfig(
        num_train=NUM_IMAGES,
        num_val=0,
        num_test=0,
        num_train_videos=2,
        num_val_videos=0,
        num_test_videos=0,
        image_size=(64, 64),
        other_size_fraction=0.0,
        video_size=(32, 32),
        min_video_frames=4,
        max_video_frames=4,
        min_event_frames=2,
        objects_per_image=2,
    )
    generate_quickstart(str(real), cfg)
    (base / "link").symlink_to(real, target_is_directory=True)
    (base / "other").mkdir()
    return {
        "real": str(real),
        "symlink": str(base / "link"),
        "dotdot": os.path.join(str(base / "other"), "..", "link", "images", ".."),
    }


def dataset(root: str, split: str = "train"):
    return load_region_dataset(os.path.join(root, f"{split}.jsonl"), root=root, tasks=["category"])


class CountingSAM2:
    """The debug SAM 2 with its encoder calls counted."""

    def __init__(self, sam2):
        self.inner, self.images = sam2, 0

    def encode_images(self, pixels):
        self.images += pixels.shape[0]
        return self.inner.encode_images(pixels)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_same_images_through_another_root_spelling_are_not_encoded_again(tmp_path, data, debug_bundle):
    sam2 = CountingSAM2(debug_bundle.model.sam2)
    collate = PAMCollator(debug_bundle.processor)
    sam2_cfg = debug_config().sam2

    cache = FeatureCache(tmp_path / "cache", sam2_cfg, debug_bundle.model.sam2)
    assert cache.build(sam2, dataset(data["real"]), collate, batch_size=4) == NUM_IMAGES
    assert sam2.images == NUM_IMAGES  # regions of one image share one encode
    reference = {}
    for s in dataset(data["real"]):
        reference[s["id"]] = s["image_key"]

    for spelling in ("symlink", "dotdot"):
        ds = dataset(data[spelling])
        assert ds.records[0].image.startswith(
            os.path.abspath(data[spelling])
        )  # the records do carry the other spelling
        reopened = FeatureCache(tmp_path / "cache", sam2_cfg, debug_bundle.model.sam2)
        assert reopened.build(sam2, ds, collate, batch_size=4) == 0, spelling
        assert sam2.images == NUM_IMAGES, spelling  # no new encode
        keys = [s["image_key"] for s in ds]
        assert keys == [reference[s["id"]] for s in ds]
        got, want = reopened.lookup(keys), cache.lookup([reference[s["id"]] for s in ds])
        assert got is not None and reopened.misses == 0
        assert torch.equal(got.image_embed, want.image_embed)
        assert all(torch.equal(a, b) for a, b in zip(got.high_res_feats, want.high_res_feats))


def test_video_keys_do_not_depend_on_the_root_spelling(data):
    """Both video kinds (an mp4 and a folder of frame files) give one key per clip, whatever the spelling."""
    keys = {name: [s["image_key"] for s in dataset(root, "train_video")] for name, root in data.items()}
    assert len(keys["real"]) == 2 and all("#" in k for k in keys["real"])
    assert keys["symlink"] == keys["dotdot"] == keys["real"]
