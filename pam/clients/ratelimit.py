"""A thread-safe token bucket: at most ``rate`` acquisitions per second, bursts up to ``capacity``."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """Blocks in :meth:`acquire` until a token is free.

    Build with ``per_second`` or ``per_minute`` (exactly one). ``capacity`` is the largest burst;
    the bucket starts full.
    """

    def __init__(self, *, per_second: float | None = None, per_minute: float | None = None, capacity: float = 1.0):
        if (per_second is None) == (per_minute is None):
            raise ValueError("TokenBucket needs exactly one of per_second / per_minute")
        rate = per_second if per_second is not None else per_minute / 60.0
        if not rate > 0:
            raise ValueError(f"TokenBucket rate must be > 0, got {rate}")
        if capacity < 1:
            raise ValueError(f"TokenBucket capacity must be >= 1, got {capacity}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._tokens = float(capacity)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return waited
                delay = (1.0 - self._tokens) / self.rate
            time.sleep(delay)
            waited += delay
