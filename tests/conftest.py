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

from pam.modeling.sam2_build import import_sam2

from .helpers import debug_config, image_sample, region_mask

# sam2's import initialises Hydra's global state; import it once here, the way pam does (and clears it),
# so a test module that imports sam2 directly never leaves Hydra initialised for the next one
import_sam2()


@pytest.fixture(scope="session")
def debug_bundle():
    from pam.api import build_pam

    torch.manual_seed(0)
    bundle = build_pam(debug_config())
    bundle.model.eval()
    return bundle


@pytest.fixture(scope="session")
def debug_checkpoint(debug_bundle, tmp_path_factory):
    """The debug bundle exported once as a PAM checkpoint folder (read-only for tests)."""
    from pam.checkpoints.pam_checkpoint import export_pam

    return export_pam(debug_bundle.model, debug_bundle.tokenizer, tmp_path_factory.mktemp("ckpt") / "pam-debug")


@pytest.fixture
def three_region_samples():
    return [
        image_sample(
            "points", {"points": np.array([[100.0, 80.0], [150.0, 100.0]]), "point_labels": np.array([1, 0])}, "tomato"
        ),
        image_sample(
            "box", {"box": np.array([50.0, 40.0, 190.0, 130.0])}, "a red rectangle on the left", task="short_caption"
        ),
        image_sample("mask", {"mask": region_mask()}, "blueberry"),
    ]


@pytest.fixture(scope="session", autouse=True)
def loopback_only_network():
    """Tests may talk to servers on this machine only: a connection or a name lookup for any other
    address raises ``NetworkBlocked`` (an OSError, so offline fallbacks still work) and is listed in
    ``tests.helpers.netguard.BLOCKED``; test_reliability_security checks the guard itself."""
    from .helpers import netguard

    with netguard.loopback_only():
        yield


def pytest_terminal_summary(terminalreporter):
    from .helpers import netguard

    if netguard.BLOCKED:
        terminalreporter.write_line(
            f"network guard refused {len(netguard.BLOCKED)} non-loopback attempt(s): "
            f"{sorted(set(netguard.BLOCKED))[:10]}",
            yellow=True,
        )
