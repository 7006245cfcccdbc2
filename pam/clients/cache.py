"""An on-disk response cache: one JSON file per (model, messages, params) key, so a re-run never re-asks."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from .base import ChatBackend, Usage


def cache_key(model: str, messages: list[dict], params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of (model, messages, params)."""
    payload = json.dumps(
        {"model": model, "messages": messages, "params": params},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """Files ``<root>/<key[:2]>/<key>.json`` holding ``{"model", "params", "response"}``.

    Writes go to a temporary file and are renamed into place, so a reader never sees half a file
    and an interrupted run leaves no corrupt entry.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self.path(key)
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as err:
            raise ValueError(f"corrupt cache entry {path}: {err}") from err
        if not isinstance(entry, dict) or not isinstance(entry.get("response"), str):
            raise ValueError(f"corrupt cache entry {path}: no string 'response'")
        return entry["response"]

    def put(self, key: str, response: str, **meta: Any) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({**meta, "response": response}, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json"))


class CachedChatBackend(ChatBackend):
    """Wraps a backend: answers from the cache when it can, asks ``inner`` and stores otherwise.

    Concurrent threads asking the same key wait for one request instead of sending several.
    ``usage`` is the inner backend's, with cache hits counted in ``usage.cache_hits``.
    """

    def __init__(self, inner: ChatBackend, cache_dir: str | os.PathLike):
        self.inner = inner
        self.cache = ResponseCache(cache_dir)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def model(self) -> str:  # type: ignore[override]
        return self.inner.model

    @property
    def usage(self) -> Usage:  # type: ignore[override]
        return self.inner.usage

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def complete(self, messages: list[dict], **params: Any) -> str:
        key = cache_key(self.model, messages, params)
        with self._lock_for(key):
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.add(cache_hits=1)
                return hit
            response = self.inner.complete(messages, **params)
            self.cache.put(key, response, model=self.model, params=params)
            return response

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "cache_dir": str(self.cache.root)}
