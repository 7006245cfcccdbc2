"""Training tracks the clip, then selects the LLM's frames, as inference does.

The dataset loads every frame from the prompt frame on (``data.track_frames=0``) or N spread
evenly; the model tracks all of them with one SAM 2 state and gives the perceiver / LLM only
``select_frames(T, model.video_num_frames)`` of them. The per-frame perceiver inputs must equal
those of ``PAMPredictor.predict_video`` (and of a direct ``iter_track`` over the clip), and must
differ from tracking only the selected frames (the old subsample-then-track path).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pam.data.datasets import RegionDataset, RegionDatasetConfig
from pam.data.readers import read_jsonl
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.processing.collator import PAMCollator
from pam.utils.config import ConfigError
from pam.utils.layout import select_frames, spread_frames

T, H, W, PROMPT_FRAME = 7, 96, 96, 2
BOX_XYWH = [20, 30, 24, 24]  # on the prompt frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A PNG-frame video (lossless) of a square moving right; the region is annotated from frame 2."""
    root = tmp_path_factory.mktemp("clip")
    (root / "frames").mkdir()
    for t in range(T):
        frame = np.full((H, W, 3), 40, np.uint8)
        x = 20 + 4 * (t - PROMPT_FRAME)
        frame[30:54, max(x, 0) : x + 24] = (220, 60, 30)
        Image.fromarray(frame).save(root / "frames" / f"{t:05d}.png")
    record = {
        "id": "clip",
        "frames": [f"{t:05d}.png" for t in range(T)],
        "frames_root": "frames",
        "regions": [{"boxes": {str(PROMPT_FRAME): BOX_XYWH}, "category": "square"}],
    }
    (root / "clip.jsonl").write_text(json.dumps(record) + "\n")
    return root


def _dataset(clip, track_frames: int) -> RegionDataset:
    cfg = RegionDatasetConfig(
        tasks=("category",), track_frames=track_frames, prompt={"point_weight": 0.0, "box_weight": 1.0}
    )
    return RegionDataset(read_jsonl(str(clip / "clip.jsonl"), str(clip)), cfg)


def _tokens(model, per_frame) -> torch.Tensor:
    """The model's visual layout for a video region from per-frame (image embedding, mask tokens)."""
    return torch.cat(
        [model._region_tokens(e, m, first_frame=(i == 0), last=False)[0] for i, (e, m) in enumerate(per_frame)]
    ).to(model.llm_dtype)


@torch.no_grad()
def test_training_tracks_the_clip_then_selects_like_inference(clip, debug_bundle, monkeypatch):
    model, proc = debug_bundle.model.eval(), debug_bundle.processor
    monkeypatch.setattr(
        model.config, "video_num_frames", 3
    )  # the LLM sees 3 frames (model and processor share the config)
    ds = _dataset(clip, track_frames=0)
    ds.set_token_layout(model.config.token_layout())
    sample = ds[0]
    tracked = list(range(PROMPT_FRAME, T))
    assert sample["frame_indices"] == tracked and sample["pixels"].shape == (len(tracked), H, W, 3)
    assert sample["meta"]["prompt_frame"] == PROMPT_FRAME and sample["gt_mask"] is None
    box = sample["prompt"]["box"]
    np.testing.assert_array_equal(box, [20, 30, 44, 54])

    batch = PAMCollator(proc)([sample])
    seen = []
    real_track = model.sam2.track_video
    monkeypatch.setattr(
        model.sam2,
        "track_video",
        lambda frames, prompt, keep: seen.append((frames.shape[0], keep)) or real_track(frames, prompt, keep),
    )
    train = model.encode_regions(
        prompts=batch["prompts"], region_image_index=batch["region_image_index"], videos=batch["videos"]
    )
    keep = select_frames(len(tracked), 3)
    assert keep == [0, 1, 4] and seen == [(len(tracked), keep)]  # SAM 2 tracked the whole clip; the LLM gets 3 frames
    emb = train.embeddings[0]
    assert (
        int((batch["input_ids"] == model.image_token_id).sum()) == emb.shape[0] == model.config.video_region_tokens(3)
    )
    assert train.mask_logits[0].shape[0] == len(tracked)  # a tracked mask for every frame

    # the inference path: PAMPredictor.predict_video on the same frames (from the prompt frame) and box
    predictor = PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(1), vision_dtype="float32")
    captured = []
    real_encode = model.encode_regions
    monkeypatch.setattr(model, "encode_regions", lambda **kw: captured.append(out := real_encode(**kw)) or out)
    video = predictor.predict_video(str(clip / "frames"), {"box": box.tolist()}, frame_index=PROMPT_FRAME)
    assert video.frame_indices == tracked and video.llm_frames == [tracked[k] for k in keep]
    torch.testing.assert_close(emb, captured[0].embeddings[0], rtol=0, atol=1e-6)

    # the old path (subsample to the LLM's frames, then track only those) gives other inputs
    pixels = proc.preprocess_video(sample["pixels"][keep]).to(model.device, model.sam2_dtype)
    sub = {i: (e, m) for i, _low, e, m, _s in model.sam2.iter_track(pixels, batch["prompts"][0].to(model.device))}
    old = _tokens(model, [sub[i] for i in range(len(keep))])
    assert old.shape == emb.shape
    first = model.config.video_region_tokens(1)  # frame 0 goes through the image path either way
    torch.testing.assert_close(old[:first], emb[:first], rtol=0, atol=1e-6)
    assert (old[first:] - emb[first:]).abs().max() > 1e-3, "tracking only the selected frames gave the same inputs"


def test_track_frames_spreads_evenly_from_the_prompt_frame(clip, debug_bundle):
    with pytest.raises(ConfigError, match=r"data\.track_frames"):  # 3 < the 4 frames the debug LLM sees
        _dataset(clip, track_frames=3).set_token_layout(debug_bundle.model.config.token_layout())
    ds = _dataset(clip, track_frames=4)
    ds.set_token_layout(debug_bundle.model.config.token_layout())
    sample = ds[0]
    expected = spread_frames(PROMPT_FRAME, T - 1, 4)
    assert (
        expected == [2, 3, 4, 6] and sample["frame_indices"] == expected
    )  # the prompt frame first, the last kept (floored)
    assert all(f"{i:05d}.png" in sample["image_key"] for i in expected)  # the key names the tracked frames
    # the same frames as the predictor's max_tracked_frames (one function)
    predictor = PAMPredictor(
        debug_bundle, generation=GenerationSettings.greedy(1), vision_dtype="float32", max_tracked_frames=4
    )
    assert predictor._video_frames(str(clip / "frames"), PROMPT_FRAME)[1] == expected


def test_feature_cache_never_caches_video_frames(clip, debug_bundle, tmp_path):
    """Video regions are tracked live (SAM 2's memory needs every frame): the feature cache, which
    holds single-image encodes by image key, must not store a clip's frames under any key."""
    from pam.train.feature_cache import FeatureCache

    model = debug_bundle.model
    cache = FeatureCache(tmp_path, model.config.sam2, model.sam2)
    assert (
        cache.build(model.sam2, _dataset(clip, track_frames=0), PAMCollator(debug_bundle.processor), batch_size=1) == 0
        and len(cache) == 0
    )


def test_bad_track_frames_fail_naming_the_field():
    with pytest.raises(ConfigError, match=r"data\.track_frames"):
        RegionDatasetConfig.from_kwargs(track_frames=-1)
    with pytest.raises(ConfigError, match=r"data\.video_num_frames.*data\.track_frames"):
        RegionDatasetConfig.from_kwargs(video_num_frames=16)
    with pytest.raises(ConfigError, match=r"data\.track_frames"):
        RegionDatasetConfig.from_kwargs(track_frames="all")
    cfg = RegionDatasetConfig.from_kwargs(track_frames=2)
    with pytest.raises(ConfigError, match=r"`data\.track_frames` is 2, fewer than the 4 frames the LLM sees"):
        cfg.check_llm_frames(4)
    RegionDatasetConfig.from_kwargs(track_frames=0).check_llm_frames(16)  # 0 = every frame


def test_trainer_start_up_rejects_too_few_tracked_frames(tmp_path, data_root, monkeypatch):  # noqa: F811
    import pam.train.trainer as trainer_module

    from .test_train import TINY, compose_train

    def no_model(*a, **k):
        raise AssertionError("the model was built before the config error surfaced")

    monkeypatch.setattr(trainer_module, "build_pam", no_model)
    cfg = compose_train(
        [
            *TINY,
            f"trainer.output_dir={tmp_path}",
            f"data.root={data_root}",
            "trainer.feature_cache=null",
            "model.video_num_frames=4",
            "data.track_frames=3",
        ]
    )
    with pytest.raises(ConfigError, match=r"`data\.track_frames` is 3, fewer than the 4 frames"):
        trainer_module.Trainer(cfg)


from .test_train import data_root  # noqa: E402, F401 (fixture)
