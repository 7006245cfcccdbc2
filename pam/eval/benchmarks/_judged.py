"""Asking a judge with the exact request parameters an official script sends."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def ask_with(judge, conversations: Sequence[list[dict]], *, max_workers: int = 4, **params: Any) -> list[str]:
    """The judge's answer to each conversation, in order, each request sent with ``params``
    (``temperature``, ``max_tokens``, ``top_p``, ...; ``None`` values are left out)."""
    params = {k: v for k, v in params.items() if v is not None}
    if not conversations:
        return []
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        answers = list(pool.map(lambda m: judge.complete(m, **params), conversations))
    for i, a in enumerate(answers):
        if not isinstance(a, str):
            raise TypeError(f"judge answer {i} is {type(a).__name__}, expected str")
    return answers
