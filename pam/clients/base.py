"""The chat backend interface, its errors, token accounting and the concurrent batch helper."""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any


class ChatError(RuntimeError):
    """A chat request failed."""


class ChatHTTPError(ChatError):
    """The endpoint answered with an HTTP error that is not worth retrying (e.g. 400, 401, 404)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class ChatResponseError(ChatError):
    """The endpoint answered, but not in the chat-completions shape."""


class ChatRetriesExhausted(ChatError):
    """Every try failed with a retryable error (429, 5xx, timeout, connection error)."""


@dataclass
class Usage:
    """Tokens and requests spent by one backend; thread-safe to update through :meth:`add`."""

    requests: int = 0  # requests that got an answer
    retries: int = 0  # extra tries after a retryable failure
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0  # answers served from the on-disk cache (no request made)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                if name.startswith("_") or not hasattr(self, name):
                    raise AttributeError(f"Usage has no counter {name!r}")
                setattr(self, name, getattr(self, name) + int(value))

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
        return out


class ChatBackend(abc.ABC):
    """Answers OpenAI-shaped chat messages with the assistant's text.

    ``messages`` is a list of ``{"role": ..., "content": ...}``; ``content`` is a string or a list
    of parts (``{"type": "text", "text": ...}`` or
    ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``).
    ``params`` are generation parameters in the chat-completions names (``max_tokens``,
    ``temperature``, ``top_p``, ``seed``, ...).
    """

    model: str
    usage: Usage

    @abc.abstractmethod
    def complete(self, messages: list[dict], **params: Any) -> str:
        """The assistant's reply to ``messages``."""

    def complete_many(
        self, batch: Sequence[list[dict]], *, max_workers: int = 4, return_exceptions: bool = False, **params: Any
    ) -> list:
        """:func:`complete_many` bound to this backend."""
        return complete_many(self, batch, max_workers=max_workers, return_exceptions=return_exceptions, **params)

    def describe(self) -> dict[str, Any]:
        """What a run manifest records about this backend."""
        return {"backend": type(self).__name__, "model": self.model}


def complete_many(
    backend: ChatBackend,
    batch: Sequence[list[dict]],
    *,
    max_workers: int = 4,
    return_exceptions: bool = False,
    **params: Any,
) -> list:
    """Answer every conversation in ``batch`` on a thread pool; results keep ``batch``'s order.

    With ``return_exceptions`` a failed request yields its exception in its slot instead of
    raising the first failure (after every other request has finished).
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")

    def one(messages: list[dict]):
        try:
            return backend.complete(messages, **params)
        except Exception as err:  # noqa: BLE001 - handed back to the caller below
            return err

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        results = list(pool.map(one, batch))
    if not return_exceptions:
        for result in results:
            if isinstance(result, BaseException):
                raise result
    return results
