"""The assembled PAM model: token layout, loss, gradients per stage, batching, generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pam.modeling.config import ConfigError, PAMConfig, select_frames
from pam.processing.chat import IGNORE_INDEX
from pam.processing.collator import PAMCollator
from pam.train.freeze import apply_trainable_patterns, parameter_table

from .helpers import group_config, image_sample, synthetic_image, video_sample


def test_paper_token_layout():
    cfg = PAMConfig()
    assert cfg.image_region_tokens() == 1042  # 32*32 image + newline + 16 semantic + newline
    # frame 0: 1024 + 1 + 16 + 1 + 1; 15 later frames: 16*16 + 1 + 16 + 1 + 1
    assert cfg.video_region_tokens(16) == 1043 + 15 * 275 == 5168
    assert cfg.video_region_tokens(40) == 5168  # capped at video_num_frames
    assert cfg.video_region_tokens(3) == 1043 + 2 * 275  # short clips work
    assert select_frames(40, 16) == [0] + np.linspace(1, 39, 15).astype(int).tolist()
    assert select_frames(5, 16) == [0, 1, 2, 3, 4]


def test_debug_model_visual_tokens_match_config(debug_bundle, three_region_samples):
    cfg = debug_bundle.model.config
    batch = PAMCollator(debug_bundle.processor)(three_region_samples)
    visual = debug_bundle.model.encode_regions(
        prompts=batch["prompts"], region_image_index=batch["region_image_index"], pixel_values=batch["pixel_values"]
    )
    assert [v.shape[0] for v in visual.embeddings] == [cfg.image_region_tokens()] * 3
    assert cfg.image_region_tokens() == (256 // 16 // 2) ** 2 + 1 + 8 + 1
    assert (batch["input_ids"] == debug_bundle.processor.image_token_id).sum(1).tolist() == [
        cfg.image_region_tokens()
    ] * 3
    # one SAM 2 encode for the three regions of one image
    assert batch["pixel_values"].shape[0] == 1 and batch["region_image_index"].tolist() == [0, 0, 0]


def test_video_region_tokens(debug_bundle):
    cfg = debug_bundle.model.config
    batch = PAMCollator(debug_bundle.processor)([video_sample(num_frames=6)])
    visual = debug_bundle.model.encode_regions(
        prompts=batch["prompts"], region_image_index=batch["region_image_index"], videos=batch["videos"]
    )
    n = visual.embeddings[0].shape[0]
    # 4 kept frames: (8*8 + 1 + 8 + 1 + 1) + 3 * (4*4 + 1 + 8 + 1 + 1)
    assert n == cfg.video_region_tokens(6) == 75 + 3 * 27
    assert visual.mask_logits[0].shape[0] == 6  # a tracked mask for every frame
    out = debug_bundle.model(**batch)
    assert torch.isfinite(out.loss_sum) and int(out.num_tokens) > 0


def test_loss_labels_cover_only_assistant_reply(debug_bundle, three_region_samples):
    tok = debug_bundle.tokenizer
    batch = PAMCollator(debug_bundle.processor)(three_region_samples)
    for i, s in enumerate(three_region_samples):
        learned = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert tok.decode(learned) == s["turns"][1]["content"] + "<|im_end|>"
    out = debug_bundle.model(**batch)
    # plain tensors on the model's device: the caller divides, no host sync inside forward
    assert isinstance(out.loss_sum, torch.Tensor) and isinstance(out.num_tokens, torch.Tensor)
    assert out.loss_sum.ndim == 0 and out.num_tokens.ndim == 0 and torch.isfinite(out.loss_sum)
    assert int(out.num_tokens) == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    # the summed loss is the token cross-entropy summed over exactly those labels
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    labels = batch["labels"][:, 1:].reshape(-1)
    ref = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
    torch.testing.assert_close(out.loss_sum, ref)
    mean = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss_sum / out.num_tokens, mean)


def _stage_patterns(name):
    return group_config("stage", name)["trainable"]


@pytest.mark.parametrize("stage, llm_trains", [("stage1", False), ("stage2", True)])
def test_stage_freeze_gradients(debug_bundle, three_region_samples, stage, llm_trains):
    model = debug_bundle.model
    apply_trainable_patterns(model, _stage_patterns(stage))
    model.zero_grad(set_to_none=True)
    # a video region too: frame_newline and the later-frame projection only act on video
    batch = PAMCollator(debug_bundle.processor)(three_region_samples + [video_sample()])
    model(**batch).loss_sum.backward()
    for name, p in model.named_parameters():
        has_grad = p.grad is not None and bool(p.grad.abs().sum() > 0)
        should = not name.startswith("llm.") or llm_trains
        assert has_grad == should, (stage, name)
    assert all(p.grad is None for p in model.sam2.model.parameters())
    table = parameter_table(model, {"sam2": model.sam2.model})
    assert "perceiver" in table and "sam2" in table
    model.zero_grad(set_to_none=True)
    apply_trainable_patterns(model, ["*"])


def test_unknown_freeze_pattern_fails(debug_bundle):
    with pytest.raises(ValueError, match="percever"):
        apply_trainable_patterns(debug_bundle.model, ["percever.*"])


def test_batch_equals_single_region_calls(debug_bundle, three_region_samples):
    model = debug_bundle.model
    collate = PAMCollator(debug_bundle.processor)
    together = collate(three_region_samples)
    out = model(**together)
    proc = debug_bundle.processor
    gen_collate = PAMCollator(proc, for_generation=True)

    def answers(samples):
        batch = gen_collate(samples)
        gen = model.generate(
            **batch, max_new_tokens=4, eos_token_id=proc.eos_token_ids, pad_token_id=proc.tokenizer.pad_token_id
        )
        hw = batch.meta["orig_sizes"]
        masks = [proc.postprocess_masks(m, hw[r]) for r, m in enumerate(gen.mask_logits)]
        return [proc.decode(row, 4)[1] for row in gen.sequences.tolist()], masks, gen.scores

    ids, masks, scores = answers(three_region_samples)
    for i, s in enumerate(three_region_samples):
        alone = collate([s])
        n = int(alone["attention_mask"].sum())
        single = model(**alone)
        torch.testing.assert_close(out.logits[i, :n], single.logits[0, :n], atol=1e-5, rtol=0)
        one_ids, one_masks, one_scores = answers([s])
        assert torch.equal(one_masks[0], masks[i]) and one_ids[0] == ids[i]
        torch.testing.assert_close(one_scores[0], scores[i], atol=1e-6, rtol=0)


def test_mixed_images_and_region_counts(debug_bundle):
    a = [image_sample(f"a{i}", {"box": np.array([50.0 + i, 40.0, 190.0, 130.0])}, key="A") for i in range(3)]
    b = [
        image_sample(
            "b0",
            {"points": np.array([[240.0, 150.0]]), "point_labels": np.array([1])},
            image=synthetic_image(seed=5),
            key="B",
        )
    ]
    batch = PAMCollator(debug_bundle.processor)([a[0], b[0], a[1], a[2]])
    assert batch["pixel_values"].shape[0] == 2 and batch["region_image_index"].tolist() == [0, 1, 0, 0]
    assert torch.isfinite(debug_bundle.model(**batch).loss_sum)


def test_placeholder_mismatch_is_a_clear_error(debug_bundle, three_region_samples):
    batch = PAMCollator(debug_bundle.processor)(three_region_samples)
    ids = batch["input_ids"].clone()
    ids[1, (ids[1] == debug_bundle.processor.image_token_id).nonzero()[0, 0]] = 5
    batch["input_ids"] = ids
    with pytest.raises(
        ValueError, match=r"region 1: the sequence has 73 image placeholder tokens but the region has 74"
    ):
        debug_bundle.model(**batch)


def test_misspelled_model_input_is_a_type_error(debug_bundle, three_region_samples):
    batch = PAMCollator(debug_bundle.processor)(three_region_samples)
    assert "ids" in batch.meta and "ids" not in batch
    with pytest.raises(TypeError, match="atention_mask"):
        debug_bundle.model(**{**batch, "atention_mask": batch["attention_mask"]})
    gen = PAMCollator(debug_bundle.processor, for_generation=True)(three_region_samples)
    with pytest.raises(TypeError, match="max_new_token"):
        debug_bundle.model.generate(**gen, max_new_token=3)
    with pytest.raises(TypeError, match="tokenizer"):  # decoding the text is the processor's, not the model's
        debug_bundle.model.generate(**gen, tokenizer=debug_bundle.tokenizer, max_new_tokens=3)


def test_generate_returns_ids_low_res_mask_logits_and_scores(debug_bundle, three_region_samples):
    proc = debug_bundle.processor
    batch = PAMCollator(proc, for_generation=True)(three_region_samples)
    assert (batch.meta["labels"] == IGNORE_INDEX).all()
    out = debug_bundle.model.generate(
        **batch, max_new_tokens=6, eos_token_id=proc.eos_token_ids, pad_token_id=proc.tokenizer.pad_token_id
    )
    assert out.sequences.dtype == torch.long and out.sequences.shape[0] == 3 and out.sequences.shape[1] <= 6
    assert out.scores.shape == (3,) and out.scores.dtype == torch.float32
    low = debug_bundle.model.config.sam2.image_size // 4  # SAM 2's low-res mask logits
    assert [tuple(m.shape) for m in out.mask_logits] == [(1, low, low)] * 3
    assert all(m.dtype.is_floating_point for m in out.mask_logits)
    for r, row in enumerate(out.sequences.tolist()):
        text, kept, _ = proc.decode(row, 6)
        assert 0 < len(kept) <= 6 or text == ""
        assert text == debug_bundle.tokenizer.decode(kept, skip_special_tokens=True).strip()
        mask = proc.postprocess_masks(out.mask_logits[r], batch.meta["orig_sizes"][r])
        assert mask.shape == (1, 200, 300) and mask.dtype == torch.bool
    # greedy decoding continues the model's own argmax
    one = PAMCollator(proc, for_generation=True)(three_region_samples[:1])
    logits = debug_bundle.model(**one).logits[0, int(one["attention_mask"].sum()) - 1]
    assert out.sequences[0, 0].item() == int(logits.argmax())


def test_config_typos_fail_with_field_name():
    data = group_config("model", "debug")
    data["perceiver"]["num_semantic_token"] = 4
    with pytest.raises(ConfigError, match="perceiver.num_semantic_token"):
        PAMConfig.from_dict(data)
    data = group_config("model", "debug")
    data["sam2"]["image_size"] = 250
    with pytest.raises(ConfigError, match="sam2.image_size"):
        PAMConfig.from_dict(data)
