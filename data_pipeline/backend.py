"""Building the chat backend a pipeline step talks to, from typed settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pam.clients import CachedChatBackend, ChatBackend, OpenAIChatBackend, TransformersChatBackend

BACKENDS = ("openai", "transformers")


@dataclass
class BackendConfig:
    kind: str = "openai"  # "openai" (any OpenAI-compatible endpoint) or "transformers" (a local model folder)
    model: str | None = None  # model name sent to the endpoint (openai)
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1 (openai)
    api_key_env: str | None = "OPENAI_API_KEY"  # env var holding the key; None for keyless servers
    timeout_s: float = 120.0  # per-request timeout
    max_tries: int = 5  # tries per request (429 / 5xx / timeouts are retried with back-off)
    backoff_s: float = 1.0  # first back-off, doubled per retry
    requests_per_minute: float | None = None  # token-bucket rate limit
    model_path: str | None = None  # local model folder (transformers)
    model_kind: str = "vision"  # "vision" or "text" (transformers)
    cache_dir: str | None = None  # on-disk response cache; a re-run never re-asks

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ValueError(f"backend field `kind` must be one of {BACKENDS}, got {self.kind!r}")
        if self.kind == "openai" and (not self.model or not self.base_url):
            raise ValueError("backend `openai` needs `model` and `base_url` (--model, --base-url)")
        if self.kind == "transformers" and not self.model_path:
            raise ValueError("backend `transformers` needs `model_path` (--model-path)")


def build_backend(config: BackendConfig) -> ChatBackend:
    if config.kind == "openai":
        backend: ChatBackend = OpenAIChatBackend(
            base_url=config.base_url,
            model=config.model,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_tries=config.max_tries,
            backoff_s=config.backoff_s,
            requests_per_minute=config.requests_per_minute,
        )
    else:
        backend = TransformersChatBackend(
            config.model_path, kind=config.model_kind, lazy=True
        )  # cached re-runs never load it
    return CachedChatBackend(backend, config.cache_dir) if config.cache_dir else backend


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer (code fences and text around it are ignored)."""
    import json

    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)
    candidate = fenced.group(1) if fenced else text[text.find("{") : text.rfind("}") + 1]
    if not candidate:
        raise ValueError(f"no JSON object in the answer: {text[:120]!r}")
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON in the answer ({err.msg}): {candidate[:120]!r}") from err
    if not isinstance(value, dict):
        raise ValueError(f"the answer's JSON is a {type(value).__name__}, not an object")
    return value
