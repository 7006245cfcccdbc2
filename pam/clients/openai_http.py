"""A client for any OpenAI-compatible ``/chat/completions`` endpoint, on the standard library only."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from .base import ChatBackend, ChatHTTPError, ChatResponseError, ChatRetriesExhausted, Usage
from .ratelimit import TokenBucket

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIChatBackend(ChatBackend):
    """POSTs ``{"model", "messages", **params}`` to ``<base_url>/chat/completions``.

    - ``api_key_env``: name of the environment variable holding the key (sent as a Bearer token);
      ``None`` sends no key (local servers). Named but unset raises at construction.
    - Retries 408/409/429/5xx, timeouts and connection errors up to ``max_tries`` tries in all,
      sleeping ``backoff_s * 2**(try-1)`` (capped at ``backoff_max_s``; a ``Retry-After`` header
      lengthens it), then raises :class:`ChatRetriesExhausted` naming the last error.
    - ``requests_per_second`` / ``requests_per_minute``: a token-bucket rate limit shared by all
      threads using this backend.
    - Token usage is summed from each response's ``usage`` field.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_tries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        requests_per_second: float | None = None,
        requests_per_minute: float | None = None,
        burst: float = 1.0,
        extra_headers: dict[str, str] | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must be a non-empty string")
        if timeout_s <= 0 or max_tries < 1 or backoff_s < 0 or backoff_max_s < 0:
            raise ValueError(
                f"need timeout_s > 0, max_tries >= 1, backoff_s >= 0 (got {timeout_s}, {max_tries}, {backoff_s})"
            )
        if requests_per_second is not None and requests_per_minute is not None:
            raise ValueError("give requests_per_second or requests_per_minute, not both")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.max_tries = int(max_tries)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.usage = Usage()
        self._headers = {"Content-Type": "application/json", **(extra_headers or {})}
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(
                    f"environment variable {api_key_env} (the API key) is not set; "
                    "pass api_key_env=None for a server without keys"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self.bucket = None
        if requests_per_second is not None or requests_per_minute is not None:
            self.bucket = TokenBucket(per_second=requests_per_second, per_minute=requests_per_minute, capacity=burst)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.model, "base_url": self.base_url}

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff_s * (2 ** (attempt - 1))
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        return min(delay, self.backoff_max_s)

    def complete(self, messages: list[dict], **params: Any) -> str:
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
        body = json.dumps({"model": self.model, "messages": messages, **params}).encode("utf-8")
        last_error = "no try made"
        for attempt in range(1, self.max_tries + 1):
            if attempt > 1:
                self.usage.add(retries=1)
            if self.bucket is not None:
                self.bucket.acquire()
            retry_after = None
            request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                return self._parse(raw)
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:300]
                if err.code not in RETRY_STATUSES:
                    raise ChatHTTPError(err.code, f"{self.url}: {detail}") from err
                retry_after = err.headers.get("Retry-After") if err.headers else None
                last_error = f"HTTP {err.code}: {detail}"
            except TimeoutError as err:
                last_error = f"timeout after {self.timeout_s}s ({err})"
            except urllib.error.URLError as err:
                if isinstance(err.reason, (TimeoutError, socket.timeout)):
                    last_error = f"timeout after {self.timeout_s}s ({err.reason})"
                else:
                    last_error = f"connection error: {err.reason}"
            except ConnectionError as err:
                last_error = f"connection error: {err}"
            if attempt < self.max_tries:
                time.sleep(self._delay(attempt, retry_after))
        raise ChatRetriesExhausted(f"{self.url}: gave up after {self.max_tries} tries; last error: {last_error}")

    def _parse(self, raw: bytes) -> str:
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
            raise ChatResponseError(f"{self.url}: not a chat-completions response ({err!r}): {raw[:200]!r}") from err
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ChatResponseError(f"{self.url}: choices[0].message.content is {type(content).__name__}, not text")
        usage = data.get("usage") or {}
        self.usage.add(
            requests=1,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
        return content
