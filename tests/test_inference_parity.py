"""Settings that change what the released weights produce, each pinned against sam2's own code or
upstream's formula: SAM 2 tracking preset, image resize, generation, precision, video frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pam.inference.generation import GenerationSettings, resolve_generation
from pam.inference.predictor import PAMPredictor, resolve_vision_dtype
from pam.inference.video_input import even_indices, load_video
from pam.modeling.config import PAMConfig, SAM2Config
from pam.modeling.sam2_encoder import FrozenSAM2
from pam.modeling.sam2_types import RegionPrompt
from pam.processing.processor import PAMProcessor
from pam.utils.layout import select_frames

from .helpers import debug_config, synthetic_image, write_square_jpegs

SIZE = 256


def test_resize_is_pil_bicubic_on_uint8_then_imagenet_norm(debug_bundle):
    img = synthetic_image()
    assert PAMConfig().processing.resize == "pil_bicubic"
    # upstream's loader: PIL .resize((s, s)) with PIL's default filter (bicubic), /255, ImageNet mean/std
    resized = np.array(Image.fromarray(img).resize((SIZE, SIZE), Image.BICUBIC)) / 255.0
    ref = (
        torch.from_numpy(resized).permute(2, 0, 1).float() - torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    ) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    ours = debug_bundle.processor.preprocess_image(img)
    assert torch.allclose(ours, ref, atol=1e-6)
    cfg = debug_config()
    cfg.processing.resize = "sam2"
    stock = PAMProcessor(config=cfg, tokenizer=debug_bundle.tokenizer).preprocess_image(img)
    from sam2.utils.transforms import SAM2Transforms

    assert torch.equal(stock, SAM2Transforms(resolution=SIZE, mask_threshold=0.0)(img))
    assert (stock - ours).abs().max() > 0.05  # the switch matters


def _sam2_reference(preset: str, state_dict: dict):
    """sam2's own video predictor from its own builder, with upstream PAM's or sam2's settings."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from sam2.build_sam import build_sam2_video_predictor

    side = SIZE // 16
    overrides = [
        f"++model.image_size={SIZE}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{side},{side}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{side},{side}]",
    ]
    if preset == "upstream":  # upstream's YAML and its commented-out fallback / hole filling
        overrides += [
            "++model.multimask_output_in_sam=false",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=false",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            "++model.fill_hole_area=0",
        ]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("sam2", version_base="1.2"):
            model = build_sam2_video_predictor(
                "configs/sam2.1/sam2.1_hiera_t.yaml",
                None,
                device="cpu",
                apply_postprocessing=(preset == "stock"),
                hydra_overrides_extra=overrides,
            )
    finally:
        GlobalHydra.instance().clear()
    model.load_state_dict(state_dict)
    return model


def test_tracking_presets_match_sam2_built_with_those_settings(tmp_path):
    torch.manual_seed(0)
    up = FrozenSAM2.from_config(SAM2Config(variant="sam2.1_hiera_t", image_size=SIZE, tracking="upstream"))
    stock = FrozenSAM2.from_config(SAM2Config(variant="sam2.1_hiera_t", image_size=SIZE, tracking="stock"))
    stock.model.load_state_dict(up.model.state_dict())
    m = up.model
    assert (m.multimask_output_in_sam, m.fill_hole_area, m.sam_mask_decoder.dynamic_multimask_via_stability) == (
        False,
        0,
        False,
    )
    assert stock.model.multimask_output_in_sam and stock.model.sam_mask_decoder.dynamic_multimask_via_stability
    frames = write_square_jpegs(tmp_path, 2, SIZE)
    cfg = debug_config()
    from pam.processing.tokenizer import build_debug_tokenizer

    x = PAMProcessor(config=cfg, tokenizer=build_debug_tokenizer(image_token=cfg.image_token)).preprocess_video(
        np.stack(frames)
    )
    point = np.array([[80.0, 100.0]], np.float32)  # one click: stock sam2 would pick among 3 masks
    tracked = {}
    for name, sam in (("upstream", up), ("stock", stock)):
        ours = sam.track_video(
            x, RegionPrompt(point_coords=torch.from_numpy(point), point_labels=torch.tensor([1])), keep=[0]
        )
        ref = _sam2_reference(name, sam.model.state_dict())
        state = ref.init_state(video_path=str(tmp_path))  # sam2's own JPEG loader: PIL resize, as upstream
        ref.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=point, labels=np.array([1], np.int32))
        theirs = {f: mk for f, _, mk in ref.propagate_in_video(state)}
        # frame 0 goes through the image path, whose mask follows sam2.mask_selection (token 0)
        for f in range(2) if name == "upstream" else (1,):
            a = sam.upscale_masks(ours["mask_logits"][f].reshape(1, 1, SIZE // 4, SIZE // 4), (SIZE, SIZE))[0]
            agree = ((a > 0) == (theirs[f][0] > 0)).float().mean().item()
            assert agree > 0.999, (name, f, agree)
        tracked[name] = ours["mask_logits"]
    assert not torch.equal(tracked["upstream"][1], tracked["stock"][1])  # the switch matters


def test_generation_defaults_file_and_greedy(tmp_path):
    s = GenerationSettings()
    assert s.model_kwargs() == {"do_sample": True, "num_beams": 1, "temperature": 0.1} and s.max_new_tokens == 512
    (tmp_path / "generation_config.json").write_text(
        json.dumps(
            {
                "do_sample": True,
                "temperature": 0.7,
                "top_p": 0.8,
                "top_k": 20,
                "repetition_penalty": 1.05,
                "eos_token_id": [1, 2],
            }
        )
    )
    s = resolve_generation(tmp_path)
    # the file fills what upstream does not pass; upstream's explicit temperature 0.1 wins over it
    assert s.model_kwargs() == {
        "do_sample": True,
        "num_beams": 1,
        "temperature": 0.1,
        "top_p": 0.8,
        "top_k": 20,
        "repetition_penalty": 1.05,
    }
    g = resolve_generation(tmp_path, greedy=True, max_new_tokens=7)
    assert (
        g.model_kwargs() == {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.05} and g.max_new_tokens == 7
    )
    with pytest.raises(ValueError, match="unknown generation setting"):
        resolve_generation(None, temprature=0.2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        resolve_generation(None, temperature=0.0)


def test_precision_default_and_bf16_visual_path(debug_bundle):
    assert resolve_vision_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_vision_dtype("auto", torch.device("cpu")) == torch.float32
    pred = PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(2), vision_dtype="bfloat16")
    seen = {}
    model = debug_bundle.model
    layers = {
        "sam2": model.sam2.model.sam_mask_decoder.transformer.layers[0].self_attn.q_proj,
        "perceiver": model.perceiver.layers[0].self_attn.q_proj,
        "projector": model.image_projector[0],
    }
    handles = [
        m.register_forward_hook(lambda _m, _i, out, n=n: seen.setdefault(n, out.dtype) and None)
        for n, m in layers.items()
    ]
    try:
        [r] = pred.predict(synthetic_image(), [{"box": [50, 40, 190, 130]}], tasks=["category"])
    finally:
        for h in handles:
            h.remove()
    assert seen == {
        "sam2": torch.bfloat16,
        "perceiver": torch.bfloat16,
        "projector": torch.bfloat16,
    } and r.mask.shape == (200, 300)
    assert next(debug_bundle.model.sam2.model.parameters()).dtype == torch.float32  # autocast: weights untouched


def test_video_tracks_every_frame_then_selects_llm_frames(debug_bundle):
    rng = np.random.RandomState(0)
    frames = (rng.rand(5, 64, 96, 3) * 60).astype(np.uint8)
    for t in range(5):
        frames[t, 16:40, 8 + 6 * t : 32 + 6 * t] = (230, 40, 40)
    pred = PAMPredictor(debug_bundle, generation=GenerationSettings.greedy(2))
    res = pred.predict_video(frames, {"box": [8, 16, 32, 40]})
    assert debug_bundle.model.config.video_num_frames == 4
    assert res.masks.shape == (5, 64, 96) and res.frame_indices == list(range(5))
    assert res.llm_frames == select_frames(5, 4) == [0, 1, 2, 4]
    # max_tracked_frames spreads the tracked frames evenly from the prompted frame on
    assert even_indices(2, 11, 4) == [2, 5, 8, 11]
    sub, idx = load_video(frames, max_frames=3, start=1)
    assert idx == [1, 2, 4] and np.array_equal(sub, frames[[1, 2, 4]])
    with pytest.raises(ValueError, match="frame_index 9 is outside"):
        load_video(frames, start=9)


def test_num_mask_tokens_is_used(debug_bundle):
    """perceiver.num_mask_tokens picks how many of [stability-chosen, token 0] the perceiver gets."""
    shared = debug_bundle.model.sam2
    assert shared.num_mask_tokens == debug_bundle.model.config.perceiver.num_mask_tokens == 2  # wired by build_pam
    one = FrozenSAM2(model=shared.model, num_mask_tokens=1)
    proc = debug_bundle.processor
    feats = shared.encode_images(proc.preprocess_image(synthetic_image())[None])
    prompt = [proc.region_prompt({"box": np.array([50.0, 40, 190, 130])}, (200, 300))]
    two_tok = shared.decode(feats, torch.tensor([0]), prompt)
    one_tok = one.decode(feats, torch.tensor([0]), prompt)
    assert two_tok.mask_tokens.shape == (1, 2, 256) and torch.equal(one_tok.mask_tokens, two_tok.mask_tokens[:, :1])
    semantic, _ = debug_bundle.model.perceiver(one_tok.image_embedding, one_tok.mask_tokens)
    assert semantic.shape == (1, debug_bundle.model.config.perceiver.num_semantic_tokens, 256)
    from pam.api import build_pam

    assert build_pam(debug_config(**{"perceiver.num_mask_tokens": 1})).model.sam2.num_mask_tokens == 1
