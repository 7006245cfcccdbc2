"""ChatML conversations tokenised with exact assistant-only label masks.

A conversation is a list of ``{"role": "user" | "assistant", "content": str}`` turns. It is
rendered in Qwen's ChatML template::

    <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n
    <|im_start|>user\n<image>\nClassify this subject ...<|im_end|>\n
    <|im_start|>assistant\ntomato<|im_end|>\n

Each piece is tokenised on its own and the ids concatenated, so the boundary between prompt and
reply is exact. Only the reply text and its closing ``<|im_end|>`` are learned; the role headers,
the system prompt, the newline after ``<|im_end|>`` and the visual tokens are masked with
``IGNORE_INDEX``. (Upstream PAM also learned the newline and template tokens of every turn; those
are constant, so learning them only adds easy tokens to the loss average.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..utils.layout import IGNORE_INDEX

__all__ = ["EOS_TOKENS", "IGNORE_INDEX", "IM_END", "IM_START", "TokenizedChat", "tokenize_chat"]
SYSTEM_PROMPT = "You are a helpful assistant."
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
# generation stops at any of these (the end of the assistant turn, or of the text)
EOS_TOKENS = (IM_END, END_OF_TEXT)


@dataclass
class TokenizedChat:
    input_ids: list[int]
    labels: list[int]

    def as_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.tensor(self.input_ids, dtype=torch.long),
            "labels": torch.tensor(self.labels, dtype=torch.long),
        }


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def tokenize_chat(
    tokenizer,
    turns: list[dict],
    *,
    system_prompt: str = SYSTEM_PROMPT,
    add_generation_prompt: bool = False,
) -> TokenizedChat:
    """Token ids and labels for ``turns``.

    With ``add_generation_prompt`` the last turn must be a user turn and the result ends with the
    assistant header, ready for generation.
    """
    if not turns:
        raise ValueError("a conversation needs at least one turn")
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, learn: bool) -> None:
        piece = _encode(tokenizer, text)
        ids.extend(piece)
        labels.extend(piece if learn else [IGNORE_INDEX] * len(piece))

    add(f"{IM_START}system\n{system_prompt}{IM_END}\n", False)
    for i, turn in enumerate(turns):
        role, content = turn.get("role"), turn.get("content")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(f"turn {i} has role {role!r}; turns must alternate user/assistant, starting with user")
        if not isinstance(content, str):
            raise ValueError(f"turn {i} content must be a string, got {type(content).__name__}")
        if role == "user":
            add(f"{IM_START}user\n{content}{IM_END}\n", False)
        else:
            add(f"{IM_START}assistant\n", False)
            add(f"{content}{IM_END}", True)
            add("\n", False)
    if add_generation_prompt:
        if turns[-1]["role"] != "user":
            raise ValueError("add_generation_prompt needs the last turn to be a user turn")
        add(f"{IM_START}assistant\n", False)
    return TokenizedChat(ids, labels)
