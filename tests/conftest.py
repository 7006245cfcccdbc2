"""Shared fixtures: the debug-size PAM built offline, and small region samples (builders live in tests/helpers)."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest
import torch

from .helpers import debug_config, image_sample, region_mask


@pytest.fixture(scope="session")
def debug_bundle():
    from pam.api import build_pam

    torch.manual_seed(0)
    bundle = build_pam(debug_config())
    bundle.model.eval()
    return bundle


@pytest.fixture
def three_region_samples():
    return [
        image_sample("points", {"points": np.array([[100.0, 80.0], [150.0, 100.0]]), "point_labels": np.array([1, 0])}, "tomato"),
        image_sample("box", {"box": np.array([50.0, 40.0, 190.0, 130.0])}, "a red rectangle on the left", task="short_caption"),
        image_sample("mask", {"mask": region_mask()}, "blueberry"),
    ]
