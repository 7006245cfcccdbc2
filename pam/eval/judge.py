"""Judge LLMs for the benchmarks scored by one (DLC-Bench, VideoRefer-D, Ferret, G-STDC).

Benchmarks talk to a judge through the minimal :class:`ChatBackend` protocol,
``complete(messages, **params) -> str``; the shared clients in ``pam.clients`` (OpenAI-compatible
HTTP with retries, rate limit and an on-disk cache, or a local transformers model) implement it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .config import JudgeConfig


@runtime_checkable
class ChatBackend(Protocol):
    def complete(self, messages: list[dict], **params: Any) -> str: ...


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def ask_all(
    judge: ChatBackend,
    conversations: Sequence[list[dict]],
    config: JudgeConfig | None = None,
    *,
    extra: dict | None = None,
) -> list[str]:
    """The judge's answer to each conversation, in order (``config.max_workers`` at a time); ``extra``
    adds request fields (an official script's ``top_p`` and penalties)."""
    config = config or JudgeConfig()
    params = {"temperature": config.temperature, "max_tokens": config.max_tokens, **(extra or {})}
    if not conversations:
        return []
    with ThreadPoolExecutor(max_workers=max(1, config.max_workers)) as pool:
        answers = list(pool.map(lambda m: judge.complete(m, **params), conversations))
    for i, a in enumerate(answers):
        if not isinstance(a, str):
            raise TypeError(f"judge answer {i} is {type(a).__name__}, expected str")
    return answers


def make_judge(config: JudgeConfig | None, cache_dir: str | Path | None = None) -> ChatBackend:
    """The judge a config names, built from ``pam.clients``, with an on-disk cache (``config.cache_dir``, else
    ``cache_dir``)."""
    if config is None:
        raise ValueError(
            "this benchmark is scored by a judge LLM: give judge settings "
            "(--judge-url/--judge-model or judge.* overrides)"
        )
    from .. import clients

    if config.backend == "openai":
        if not config.base_url:
            raise ValueError("judge.base_url is required for the openai backend")
        backend = clients.OpenAIChatBackend(
            base_url=config.base_url,
            model=config.model,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_tries=config.max_tries,
            backoff_s=config.backoff_s,
            requests_per_minute=config.requests_per_minute,
        )
    elif config.backend == "transformers":
        backend = clients.TransformersChatBackend(config.model, max_tokens=config.max_tokens)
    else:
        raise ValueError(f"judge.backend must be 'openai' or 'transformers', got {config.backend!r}")
    cache = config.cache_dir or cache_dir
    return clients.CachedChatBackend(backend, cache) if cache else backend


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTER = re.compile(r"^\W*\(?([A-Z])(?:[\).:\s]|$)")


def parse_choice(answer: str, num_choices: int, choice_texts: Sequence[str] | None = None) -> int | None:
    """Index of the chosen option in a judge answer ("B", "(B) ...", "B. text"), else the option
    whose text the answer equals; None if it cannot be read."""
    text = answer.strip()
    m = _LETTER.match(text)
    if m and LETTERS.index(m.group(1)) < num_choices:
        return LETTERS.index(m.group(1))
    if choice_texts is not None:
        norm = text.lower().rstrip(".")
        for i, c in enumerate(choice_texts):
            if norm == c.strip().lower().rstrip("."):
                return i
    return None


def parse_labeled_scores(answer: str, labels: Sequence[str], low: float, high: float) -> dict[str, float] | None:
    """``{label: score}`` from lines like ``"Label: 4"``; None unless every label has a score in range."""
    out = {}
    for label in labels:
        m = re.search(rf"{re.escape(label)}\s*[:=]\s*(-?\d+(?:\.\d+)?)", answer, flags=re.IGNORECASE)
        if m is None:
            return None
        value = float(m.group(1))
        if not low <= value <= high:
            return None
        out[label] = value
    return out
