"""Group concurrent requests into one model call.

Requests wait in an asyncio queue. The collector takes the first one, then keeps taking requests
for up to ``max_wait_ms`` or until ``max_batch_size`` regions are gathered, and hands the batch to
``run_batch`` on ONE worker thread (the model is never called from two threads). While the model
runs, new requests queue up for the next batch. Only requests with the same generation settings
(``ParsedRequest.sampling``) share a batch; the others wait for the next one. If a batch fails,
its requests are retried one by one so that one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .protocol import ParsedRequest

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """More requests are waiting than ``max_queue``."""


@dataclass
class BatcherStats:
    batches: int = 0
    requests: int = 0
    regions: int = 0
    largest_batch: int = 0  # in requests


@dataclass
class _Item:
    request: ParsedRequest
    future: asyncio.Future


class RequestBatcher:
    def __init__(
        self,
        run_batch: Callable[[list[ParsedRequest]], list],
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 10.0,
        max_queue: int = 256,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.stats = BatcherStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._held: deque[_Item] = deque()
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pam-model")
        self._task = asyncio.create_task(self._loop(), name="pam-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, request: ParsedRequest):
        """The per-region answers of ``request`` once its batch has run (or its exception)."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        if self._queue.qsize() + len(self._held) >= self.max_queue:
            raise QueueFull(f"{self.max_queue} requests are already waiting")
        item = _Item(request, asyncio.get_running_loop().create_future())
        await self._queue.put(item)
        return await item.future

    def _fits(self, batch: list[_Item], regions: int, item: _Item) -> bool:
        return (
            item.request.sampling == batch[0].request.sampling
            and regions + len(item.request.requests) <= self.max_batch_size
        )

    async def _collect(self) -> list[_Item]:
        """The next batch: held-over requests first, then what arrives within ``max_wait``."""
        first = self._held.popleft() if self._held else await self._queue.get()
        batch, regions, deferred = [first], len(first.request.requests), []
        for item in list(self._held):
            if self._fits(batch, regions, item):
                batch.append(item)
                regions += len(item.request.requests)
            else:
                deferred.append(item)
        self._held.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while regions < self.max_batch_size:
            try:
                item = self._queue.get_nowait()  # already waiting: take it even past the deadline
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if self._fits(batch, regions, item):
                batch.append(item)
                regions += len(item.request.requests)
            else:
                deferred.append(item)
                if regions + len(item.request.requests) > self.max_batch_size:
                    break
        self._held.extend(deferred)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [item for item in batch if not item.future.done()]  # clients that went away
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.regions += sum(len(i.request.requests) for i in batch)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            try:
                outputs = await loop.run_in_executor(self._executor, self.run_batch, [i.request for i in batch])
                for item, out in zip(batch, outputs):
                    _resolve(item, out)
            except Exception as err:
                if len(batch) == 1:
                    log.exception("request failed")
                    _fail(batch[0], err)
                    continue
                log.warning("a batch of %d requests failed (%s); retrying them one by one", len(batch), err)
                for item in batch:
                    try:
                        out = await loop.run_in_executor(self._executor, self.run_batch, [item.request])
                        _resolve(item, out[0])
                    except Exception as single_err:
                        log.exception("request failed")
                        _fail(item, single_err)


def _resolve(item: _Item, value) -> None:
    if not item.future.done():
        item.future.set_result(value)


def _fail(item: _Item, err: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(err)
