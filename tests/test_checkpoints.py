"""Checkpoint formats: PAM save/load/export, real SAM 2 .pt and Qwen folders, released weights."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
import torch

from pam.api import build_pam, load_pam, load_released_pam
from pam.checkpoints.integrity import CheckpointCorruptError, write_manifest
from pam.checkpoints.io import load_tensors, save_tensors
from pam.checkpoints.pam_checkpoint import export_pam, save_pam
from pam.checkpoints.released import convert_released_state_dict, load_released_state_dict
from pam.checkpoints.sam2 import save_sam2_checkpoint
from pam.checkpoints.strict import CheckpointMismatchError
from pam.inference.generation import GenerationSettings
from pam.inference.predictor import PAMPredictor
from pam.modeling.config import LLMConfig
from pam.processing.collator import PAMCollator
from pam.train.freeze import apply_trainable_patterns

from .helpers import debug_config


def _outputs(bundle, samples):
    """Training logits, and the predictor's greedy answers (5 tokens) with masks and scores."""
    bundle.model.eval()
    batch = PAMCollator(bundle.processor)(samples)
    predictor = PAMPredictor(bundle, generation=GenerationSettings.greedy(5), vision_dtype="float32")
    gen = predictor.generate_samples([{**s, "turns": s["turns"][:-1]} for s in samples])  # drop the answers
    return bundle.model(**batch).logits, gen


def _assert_same(a, b):
    assert torch.equal(a[0], b[0])
    assert len(a[1]) == len(b[1]) == 3
    for x, y in zip(a[1], b[1]):
        assert x.text == y.text and x.token_ids == y.token_ids and np.array_equal(x.mask, y.mask) and x.score == y.score


@pytest.fixture(scope="module")
def real_format_sources(tmp_path_factory, debug_bundle):
    """The debug model's SAM 2 as an official .pt and its LLM + tokenizer as a Hugging Face folder."""
    root = tmp_path_factory.mktemp("sources")
    save_sam2_checkpoint(debug_bundle.model.sam2.model, root / "sam2.1_hiera_tiny.pt")
    debug_bundle.model.llm.save_pretrained(root / "qwen2-tiny")
    debug_bundle.tokenizer.save_pretrained(root / "qwen2-tiny")
    return root


def test_real_loaders_reproduce_the_model(real_format_sources, debug_bundle, three_region_samples):
    cfg = debug_config()
    cfg.sam2.checkpoint = str(real_format_sources / "sam2.1_hiera_tiny.pt")
    cfg.llm = LLMConfig(name_or_path=str(real_format_sources / "qwen2-tiny"))
    loaded = build_pam(cfg)
    assert loaded.tokenizer.get_vocab() == debug_bundle.tokenizer.get_vocab()
    # the perceiver, projectors and newlines are new; copy them, everything else came from files
    own = {k: v for k, v in debug_bundle.model.state_dict().items() if not k.startswith("llm.")}
    loaded.model.load_state_dict(own, strict=False)
    _assert_same(_outputs(debug_bundle, three_region_samples), _outputs(loaded, three_region_samples))


def test_save_load_round_trip_is_exact(tmp_path, debug_bundle, three_region_samples):
    before = _outputs(debug_bundle, three_region_samples)
    save_pam(debug_bundle.model, debug_bundle.tokenizer, tmp_path / "ckpt", metadata={"step": 7})
    meta = json.loads((tmp_path / "ckpt" / "meta.json").read_text())
    assert meta["omitted"] == [] and meta["step"] == 7  # random debug parts have no source path: saved
    loaded = load_pam(tmp_path / "ckpt")
    _assert_same(before, _outputs(loaded, three_region_samples))


def test_training_checkpoint_refers_to_frozen_sources_and_export_is_self_contained(
    tmp_path, real_format_sources, debug_bundle, three_region_samples
):
    cfg = debug_config()
    cfg.sam2.checkpoint = str(tmp_path / "src" / "sam2.pt")
    cfg.llm = LLMConfig(name_or_path=str(tmp_path / "src" / "llm"))
    shutil.copytree(real_format_sources / "qwen2-tiny", tmp_path / "src" / "llm")
    shutil.copy(real_format_sources / "sam2.1_hiera_tiny.pt", tmp_path / "src" / "sam2.pt")
    bundle = build_pam(cfg)
    apply_trainable_patterns(bundle.model, ["perceiver.*", "*_projector.*", "*_newline"])
    save_pam(bundle.model, bundle.tokenizer, tmp_path / "train_ckpt")
    meta = json.loads((tmp_path / "train_ckpt" / "meta.json").read_text())
    assert meta["omitted"] == ["sam2", "llm"]
    stored = load_tensors(tmp_path / "train_ckpt" / "model.safetensors")
    assert not any(k.startswith("llm.") for k in stored) and not (tmp_path / "train_ckpt" / "sam2.safetensors").exists()
    before = _outputs(bundle, three_region_samples)
    _assert_same(before, _outputs(load_pam(tmp_path / "train_ckpt"), three_region_samples))
    # a trainable LLM cannot be omitted
    apply_trainable_patterns(bundle.model, ["*"])
    save_pam(bundle.model, bundle.tokenizer, tmp_path / "stage2_ckpt")
    assert json.loads((tmp_path / "stage2_ckpt" / "meta.json").read_text())["omitted"] == ["sam2"]
    # export, then remove every source: the folder alone reproduces the outputs
    export_pam(bundle.model, bundle.tokenizer, tmp_path / "export")
    shutil.rmtree(tmp_path / "src")
    _assert_same(before, _outputs(load_pam(tmp_path / "export"), three_region_samples))
    with pytest.raises(FileNotFoundError):
        load_pam(tmp_path / "train_ckpt")


def test_strict_load_names_bad_keys(tmp_path, debug_bundle):
    save_pam(debug_bundle.model, debug_bundle.tokenizer, tmp_path / "ckpt")
    state = load_tensors(tmp_path / "ckpt" / "model.safetensors")
    state.pop("perceiver.frame_proj.bias")
    state["perceiver.extra"] = torch.zeros(1)
    save_tensors(state, tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(
        CheckpointCorruptError, match=r"ckpt: file model.safetensors has \d+ bytes, the manifest says \d+"
    ):
        load_pam(tmp_path / "ckpt")  # the rewritten file no longer matches the folder's manifest
    write_manifest(tmp_path / "ckpt")  # a consistently written folder with the wrong keys
    with pytest.raises(CheckpointMismatchError, match=r"perceiver\.frame_proj\.bias.*perceiver\.extra"):
        load_pam(tmp_path / "ckpt")


def test_atomic_save_keeps_previous_on_failure(tmp_path, debug_bundle, monkeypatch):
    save_pam(debug_bundle.model, debug_bundle.tokenizer, tmp_path / "ckpt", metadata={"step": 1})
    import pam.checkpoints.pam_checkpoint as pc

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pc, "save_tensors", boom)
    with pytest.raises(OSError):
        save_pam(debug_bundle.model, debug_bundle.tokenizer, tmp_path / "ckpt", metadata={"step": 2})
    assert json.loads((tmp_path / "ckpt" / "meta.json").read_text())["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


# ----- released PAM weights ------------------------------------------------------------------------
def _to_released_names(model) -> dict[str, torch.Tensor]:
    """The debug model's weights under the upstream LLaVA-style names (written independently of
    the adapter's map, from the upstream module layout)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("perceiver."):
            rest = k[len("perceiver.") :]
            rest = {
                "semantic_tokens.weight": "sem_tokens.weight",
                "frame_proj.weight": "proj.weight",
                "frame_proj.bias": "proj.bias",
            }.get(rest, rest)
            out[f"model.vision_resampler.{rest}"] = v
        elif k.startswith("image_projector."):
            out["model.mm_projector_img." + k.split(".", 1)[1]] = v
        elif k.startswith("semantic_projector."):
            out["model.mm_projector_semT." + k.split(".", 1)[1]] = v
        elif k in ("image_newline", "semT_newline", "frame_newline"):
            out[f"model.{k}"] = v
        elif k.startswith("llm.model."):
            out["model." + k[len("llm.model.") :]] = v
        elif k == "llm.lm_head.weight":
            out["lm_head.weight"] = v
        else:
            raise AssertionError(k)
    for k, v in model.sam2.model.state_dict().items():
        out[f"model.vision_tower.sam2_model_predictor.{k}"] = v
    return out


def test_released_adapter_loads_upstream_names(tmp_path, debug_bundle, three_region_samples):
    released = _to_released_names(debug_bundle.model)
    assert any(
        re.match(r"model\.vision_resampler\.layers\.1\.cross_attn_image_to_token\.q_proj\.weight", k) for k in released
    )
    # a released-style folder: sharded safetensors + llava_qwen config + tokenizer
    folder = tmp_path / "PAM-debug"
    folder.mkdir()
    keys = sorted(released)
    shards = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2],
        "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    for name, ks in shards.items():
        save_tensors({k: released[k] for k in ks}, folder / name)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {k: n for n, ks in shards.items() for k in ks}})
    )
    hf = debug_bundle.model.llm.config.to_dict()
    hf.update(
        model_type="llava_qwen",
        mm_vision_tower="sam2",
        mm_hidden_size=256,
        mm_projector_type="mlp2x_gelu",
        architectures=["LlavaQwenForCausalLM"],
    )
    (folder / "config.json").write_text(json.dumps(hf))
    debug_bundle.tokenizer.save_pretrained(folder)
    base = dataclasses.replace(debug_config())
    loaded = load_released_pam(folder, base=base, dtype="float32")
    _assert_same(_outputs(debug_bundle, three_region_samples), _outputs(loaded, three_region_samples))


def test_released_adapter_rejects_missing_and_extra_keys(debug_bundle):
    released = _to_released_names(debug_bundle.model)
    missing = dict(released)
    missing.pop("model.mm_projector_semT.2.bias")
    with pytest.raises(CheckpointMismatchError, match=r"semantic_projector\.2\.bias"):
        load_released_state_dict(debug_bundle.model, missing)
    extra = dict(released)
    extra["model.vision_resampler.not_a_layer.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"model\.vision_resampler\.not_a_layer\.weight"):
        convert_released_state_dict(extra)
    wrong = dict(released)
    wrong["model.image_newline"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError, match=r"image_newline: checkpoint \(3,\)"):
        load_released_state_dict(debug_bundle.model, wrong)


def test_lora_checkpoint_loads_merged_with_the_same_outputs(tmp_path, three_region_samples):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    bundle = build_pam(debug_config())
    bundle.model.llm = get_peft_model(
        bundle.model.llm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():  # LoRA B starts at zero; give the adapters an effect
        for name, p in bundle.model.llm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    before = _outputs(bundle, three_region_samples)
    save_pam(bundle.model, bundle.tokenizer, tmp_path / "lora_ckpt")
    meta = json.loads((tmp_path / "lora_ckpt" / "meta.json").read_text())
    assert meta["lora"]["r"] == 4 and meta["lora"]["target_modules"] == ["q_proj", "v_proj"]
    loaded = load_pam(tmp_path / "lora_ckpt")
    assert not hasattr(loaded.model.llm, "peft_config")  # merged into a plain LLM
    after = _outputs(loaded, three_region_samples)
    torch.testing.assert_close(after[0], before[0], atol=1e-4, rtol=1e-4)
