"""The quick-start's parts: the taught debug SAM 2 (a real SAM 2 checkpoint whose masks outline the
prompted shape and whose tracking follows a moving shape), the quickstart benchmark's mask, tracking
and event-boundary figures (held above floors on generated data), their scoring against hand-computed
values, and start-up checks of `pam make-data`."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pam.data.synthetic import SyntheticConfig, generate_quickstart
from pam.eval.benchmarks.quickstart import Quickstart, boundary_errors, boundary_matches, mask_iou

from .helpers import debug_config
from .helpers.tracking_sam2 import taught_sam2_checkpoint

REPO = Path(__file__).resolve().parents[1]
SIZE = 128  # SAM 2 input side in these tests: teaching takes ~15 s on 2 CPU cores


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """The debug SAM 2 (at 128 px) taught and saved, then loaded through model.sam2.checkpoint."""
    from pam.api import build_pam

    result, path = taught_sam2_checkpoint(SIZE)  # taught once per pytest process
    torch.manual_seed(1)  # another random init: everything must come from the checkpoint
    bundle = build_pam(debug_config(**{"sam2.image_size": SIZE, "sam2.checkpoint": str(path)}))
    bundle.model.eval()
    return result, path, bundle


def test_taught_sam2_is_an_official_format_checkpoint(taught):
    from pam.modeling.sam2_build import build_sam2_model

    result, path, bundle = taught
    assert result.prompted_iou > 0.8 and result.tracked_iou > 0.8, result
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert list(blob) == ["model"]
    loaded = bundle.model.sam2.model.state_dict()
    assert sorted(blob["model"]) == sorted(loaded)
    assert all(torch.equal(blob["model"][k], loaded[k]) for k in loaded)
    # the memory attention's residual branches are zero (tracked features = the frame's own) ...
    layer = bundle.model.sam2.model.memory_attention.layers[0]
    assert not layer.linear2.weight.any() and not layer.self_attn.out_proj.weight.any()
    # ... and the decoder differs from a random one
    torch.manual_seed(0)
    random = build_sam2_model(debug_config(**{"sam2.image_size": SIZE}).sam2).state_dict()
    key = "sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.weight"
    assert not torch.equal(random[key], loaded[key])


@pytest.fixture(scope="module")
def quickstart_scores(taught, tmp_path_factory):
    """The quickstart benchmark (masks, per-event clips, streams) on a few generated test images and
    clips, through the real predictor; the LLM is random, so only the SAM 2 figures mean anything."""
    from pam.eval.generation import PAMGenerator

    _, _, bundle = taught
    root = tmp_path_factory.mktemp("qsdata")
    generate_quickstart(
        str(root),
        SyntheticConfig(
            num_train=1,
            num_val=0,
            num_test=6,
            num_train_videos=0,
            num_val_videos=0,
            num_test_videos=3,
            min_video_frames=16,
            max_video_frames=20,
            seed=3,
        ),
    )
    bench = Quickstart(
        overrides={"tasks": ["category", "video_caption"], "generation": {"max_new_tokens": 2, "track_frames": 4}}
    )
    items = bench.read_items(root)
    generator = PAMGenerator(bundle, bench.config.generation)
    rows = bench.predict(items, generator)
    return bench, rows, bench.score(rows)


def test_quickstart_masks_tracks_and_event_boundaries_above_floors(quickstart_scores):
    bench, rows, scores = quickstart_scores
    kinds = {(r["task"], r.get("media_type")) for r in rows}
    assert {("category", "image"), ("video_caption", "video"), ("stream", None)} <= kinds
    assert scores["num_streams"] == 3
    # the taught SAM 2's masks outline the prompted shape, and tracking follows it through the clip
    assert scores["mask_iou"] > 0.75, scores
    assert scores["video_mask_iou"] > 0.6, scores
    assert scores["track_iou"] > 0.6, scores
    # streamed events split where the motion changes
    assert scores["event_boundary_error"] < 1.0, scores
    assert scores["event_boundary_f1"] > 0.6, scores
    streams = [r for r in rows if r["task"] == "stream"]
    assert any(r["true_starts"] for r in streams)
    assert all(len(r["prediction"].split(" | ")) == len(r["pred_starts"]) + 1 for r in streams)
    assert "video_caption_meteor" in scores


def test_boundary_scores_match_hand_computed_values():
    # true boundaries 8 and 16 in a 24-frame clip; predicted 9 (1 off), 16 (exact) and 21 (extra)
    assert sorted(boundary_errors([9, 16, 21], [8, 16], 24)) == sorted([1, 0] + [1, 0, 3])
    assert boundary_errors([], [8], 20) == [8]  # a miss costs its distance to the nearest clip end
    assert boundary_errors([5], [], 20) == [5]  # so does an extra boundary
    assert boundary_matches([9, 16, 21], [8, 16], 2) == 2
    assert boundary_matches([11], [8], 2) == 0
    assert boundary_matches([8, 9], [8], 2) == 1  # one to one
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True
    b[:2, :] = True
    assert mask_iou(a, b) == pytest.approx(4 / 8)
    assert mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def test_quickstart_score_aggregates_streams_and_masks():
    bench = Quickstart()
    rows = [
        {
            "id": "a",
            "task": "category",
            "language": "en",
            "prediction": "kite",
            "reference": "kite",
            "media_type": "image",
            "mask_iou": 0.5,
        },
        {
            "id": "b",
            "task": "category",
            "language": "en",
            "prediction": "lemon",
            "reference": "kite",
            "media_type": "image",
            "mask_iou": 1.0,
        },
        {
            "id": "c",
            "task": "category",
            "language": "en",
            "prediction": "kite",
            "reference": "kite",
            "media_type": "video",
            "mask_iou": 0.25,
        },
        {
            "id": "s1",
            "task": "stream",
            "language": "en",
            "prediction": "x | y",
            "reference": "x | y",
            "pred_starts": [9],
            "true_starts": [8],
            "num_frames": 20,
            "track_iou": 0.8,
        },
        {
            "id": "s2",
            "task": "stream",
            "language": "en",
            "prediction": "x",
            "reference": "x",
            "pred_starts": [],
            "true_starts": [],
            "num_frames": 16,
            "track_iou": 0.6,
        },
    ]
    scores = bench.score(rows)
    assert scores["num_predictions"] == 3 and scores["num_streams"] == 2
    assert scores["category_accuracy"] == pytest.approx(2 / 3)
    assert scores["mask_iou"] == pytest.approx(0.75) and scores["video_mask_iou"] == pytest.approx(0.25)
    assert scores["track_iou"] == pytest.approx(0.7)
    assert scores["event_boundary_error"] == pytest.approx(1.0)  # |8-9| both ways
    assert scores["event_boundary_f1"] == pytest.approx(1.0)
    bad = dict(rows[3], pred_starts="9")
    with pytest.raises(ValueError, match="pred_starts"):
        bench.score(rows[:3] + [bad])


@pytest.mark.parametrize("field, value", [("num_train", -1), ("num_test_videos", -3), ("num_val", 1.5), ("fps", 0)])
def test_synthetic_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**{field: value})


def test_make_data_with_a_negative_count_fails_at_start_up(tmp_path):
    out = tmp_path / "never"
    result = subprocess.run(
        [sys.executable, "-m", "pam.cli", "make-data", "--out", str(out), "--num-train", "-1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "num_train" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.parametrize("resize", ["pil_bicubic", "sam2"])
def test_processor_raises_no_torch_jit_warning(resize):
    from pam.api import tokenizer_for
    from pam.processing.processor import PAMProcessor

    config = debug_config(**{"processing.resize": resize})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proc = PAMProcessor(config=config, tokenizer=tokenizer_for(config))
        pixels = proc.preprocess_image(np.full((40, 60, 3), 200, np.uint8))
    assert not [w for w in caught if "jit" in str(w.message)], [str(w.message) for w in caught]
    assert pixels.shape == (3, config.sam2.image_size, config.sam2.image_size)
    if resize == "sam2":  # still sam2's own transform
        from sam2.utils.transforms import SAM2Transforms

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = SAM2Transforms(resolution=config.sam2.image_size, mask_threshold=0.0)(
                np.full((40, 60, 3), 200, np.uint8)
            )
        torch.testing.assert_close(pixels, reference)


@pytest.mark.parametrize("videos, clips", [(0, 0), (6, 2)])
def test_quickstart_mixture_asks_for_a_share_of_the_clips_it_has(tmp_path, videos, clips):
    """The quick-start's clip component asks for a share of the train clips, so data generated with
    no clips (`data.generate.num_train_videos=0`) trains on the images alone instead of failing."""
    from hydra import compose, initialize_config_dir

    from pam.train.data import build_dataset

    generate_quickstart(
        str(tmp_path),
        SyntheticConfig(
            num_train=4,
            num_val=0,
            num_test=0,
            num_train_videos=videos,
            num_val_videos=0,
            num_test_videos=0,
            image_size=(32, 32),
            other_image_sizes=(),
            video_size=(32, 32),
            min_video_frames=4,
            max_video_frames=4,
            min_event_frames=2,
        ),
    )
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=quickstart", f"data.root={tmp_path}"])
    mixture = build_dataset(cfg.data, "train")
    assert dict(zip([c.name for c in mixture.components], mixture.counts)) == {
        "synthetic_images": 4,
        "synthetic_videos": clips,
    }
