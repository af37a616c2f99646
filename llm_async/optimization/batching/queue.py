"""``BatchQueue``: collect items into batches and dispatch them with bounded concurrency."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..._clock import Clock, system_clock
from ...errors import ConfigurationError, InvalidRequestError, ProtocolError, RateLimiterError

__all__ = ["BatchQueue", "BatchQueueStats"]

I = TypeVar("I")  # noqa: E741 - the conventional name of an item type
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BatchQueueStats:
    """Items waiting, batches in flight, and totals since creation."""

    pending: int
    in_flight: int
    submitted: int
    batches: int
    largest_batch: int


class _Slot(Generic[I, R]):
    __slots__ = ("future", "item")

    def __init__(self, item: I, future: asyncio.Future[R]) -> None:
        self.item = item
        self.future = future


class BatchQueue(Generic[I, R]):
    """Collect items into batches and dispatch them with bounded concurrency.

    ``dispatch(items)`` returns one result per item, in order; an item's result may be an
    exception instance, which is raised to that item's submitter only. If ``dispatch`` itself
    raises, every item of the batch gets that error.

    A batch is dispatched when it holds ``max_batch_size`` items, or ``max_wait`` seconds after
    its first item arrived (measured with ``clock``). At most ``max_concurrency`` batches run at
    once; at most ``max_pending`` items wait, beyond which :meth:`submit` waits for room (and
    :meth:`submit_nowait` raises :class:`~llm_async.errors.RateLimiterError`). A submitter
    cancelled before its batch is dispatched is dropped from the batch.
    """

    def __init__(self, dispatch: Callable[[list[I]], Awaitable[Sequence[R | BaseException]]],
                 *, max_batch_size: int = 16, max_wait: float = 0.005, max_concurrency: int = 4,
                 max_pending: int = 1024, clock: Clock = system_clock) -> None:
        if max_batch_size < 1 or max_concurrency < 1 or max_pending < 1:
            raise ConfigurationError("max_batch_size, max_concurrency and max_pending must be >= 1")
        if max_wait < 0:
            raise ConfigurationError("max_wait must be >= 0")
        self.dispatch = dispatch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_concurrency = max_concurrency
        self.max_pending = max_pending
        self.clock = clock
        self._pending: deque[_Slot[I, R]] = deque()
        self._used = 0
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._runners: asyncio.Semaphore | None = None
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._closed = False
        self.submitted = 0
        self.batches = 0
        self.largest_batch = 0

    def _start(self) -> None:
        if self._closed:
            raise InvalidRequestError("the batch queue is closed")
        if self._worker is None:
            self._runners = asyncio.Semaphore(self.max_concurrency)
            self._arrived = asyncio.Event()
            self._full = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _enqueue(self, item: I) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Slot(item, future))
        self.submitted += 1
        assert self._arrived is not None and self._full is not None
        self._arrived.set()
        if len(self._pending) >= self.max_batch_size:
            self._full.set()
        return future

    async def _acquire_room(self) -> None:
        while self._used >= self.max_pending or self._room_waiters:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._room_waiters:
                    self._room_waiters.remove(waiter)
                elif self._used < self.max_pending:
                    self._wake_one()  # pass our wake-up on
                raise
            if self._used < self.max_pending:
                break
        self._used += 1

    def _wake_one(self) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release_room(self) -> None:
        self._used -= 1
        self._wake_one()

    async def submit(self, item: I) -> R:
        """Queue ``item`` (waiting for room when the queue is full) and return its result."""
        self._start()
        await self._acquire_room()
        future = self._enqueue(item)
        return await future

    def submit_nowait(self, item: I) -> asyncio.Future[R]:
        """Queue ``item`` now, or raise :class:`RateLimiterError` when the queue is full."""
        self._start()
        if self._used >= self.max_pending or self._room_waiters:
            raise RateLimiterError(f"batch queue is full ({self.max_pending} items pending)")
        self._used += 1
        return self._enqueue(item)

    async def _wait_full(self, seconds: float) -> None:
        assert self._full is not None
        full = asyncio.ensure_future(self._full.wait())
        timer = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({full, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            full.cancel()
            timer.cancel()

    def _take(self) -> list[_Slot[I, R]]:
        assert self._arrived is not None and self._full is not None
        batch: list[_Slot[I, R]] = []
        while self._pending and len(batch) < self.max_batch_size:
            slot = self._pending.popleft()
            self._release_room()
            if not slot.future.done():  # a cancelled submitter is dropped
                batch.append(slot)
        if not self._pending:
            self._arrived.clear()
        if len(self._pending) < self.max_batch_size:
            self._full.clear()
        return batch

    async def _run(self) -> None:
        assert self._arrived is not None and self._runners is not None
        while True:
            await self._arrived.wait()
            if len(self._pending) < self.max_batch_size and self.max_wait > 0:
                await self._wait_full(self.max_wait)
            await self._runners.acquire()
            batch = self._take()
            if not batch:
                self._runners.release()
                continue
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _dispatch(self, batch: list[_Slot[I, R]]) -> None:
        assert self._runners is not None
        try:
            try:
                results = await self.dispatch([slot.item for slot in batch])
                if len(results) != len(batch):
                    raise ProtocolError(f"dispatch returned {len(results)} results "
                                        f"for {len(batch)} items")
            except asyncio.CancelledError:
                for slot in batch:
                    if not slot.future.done():
                        slot.future.cancel()
                raise
            except BaseException as exc:
                results = [exc] * len(batch)
            for slot, result in zip(batch, results, strict=True):
                if slot.future.done():
                    continue
                if isinstance(result, BaseException):
                    slot.future.set_exception(result)
                else:
                    slot.future.set_result(result)
        finally:
            self._runners.release()

    def statistics(self) -> BatchQueueStats:
        """Live counters."""
        return BatchQueueStats(len(self._pending), len(self._batches), self.submitted,
                               self.batches, self.largest_batch)

    async def aclose(self) -> None:
        """Stop: waiting submitters get :class:`InvalidRequestError`, batches in flight are
        cancelled."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
        for slot in self._pending:
            if not slot.future.done():
                slot.future.set_exception(InvalidRequestError("the batch queue was closed"))
        self._pending.clear()
        for waiter in self._room_waiters:
            waiter.cancel()
        self._room_waiters.clear()
        tasks = list(self._batches)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*([worker] if worker else []), *tasks, return_exceptions=True)

    async def __aenter__(self) -> BatchQueue[I, R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"BatchQueue(pending={s.pending}, in_flight={s.in_flight}, "
                f"batches={s.batches}, max_batch_size={self.max_batch_size})")
