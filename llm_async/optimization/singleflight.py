"""Singleflight: concurrent calls with the same key share one execution.

The first caller for a key (the *leader*) starts the work in a task created with
:func:`contextvars.copy_context`; every caller, leader included, then waits with
``await asyncio.shield(task)``. A waiter that is cancelled leaves without touching the task; the
task is cancelled only when the last waiter has gone. The entry is removed as soon as the task
ends, so the table only ever holds calls in flight. The cache (coalesced misses) and dedup both
build on it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

__all__ = ["DedupStats", "SingleFlight", "spawn"]

T = TypeVar("T")


def spawn(coro: Awaitable[T]) -> asyncio.Task[T]:
    """Run ``coro`` in a new task with a copy of the current context (ContextVars flow in)."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()

    if asyncio.iscoroutine(coro):
        return ctx.run(loop.create_task, coro)

    async def runner() -> T:
        return await coro

    return ctx.run(loop.create_task, runner())


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0
    joined: int = 0


@dataclass(frozen=True, slots=True)
class DedupStats:
    """Live counters: calls ``started`` upstream, callers that ``joined`` one, calls in flight."""

    started: int
    joined: int
    in_flight: int
    cancelled: int


class SingleFlight(Generic[T]):
    """Coalesce concurrent calls with the same key into one.

    ``await flights.do(key, factory)`` runs ``factory()`` once per key at a time; concurrent
    callers with the same key get the same result or the same exception. Bound to the event loop
    it is first used on.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[T]] = {}
        self.started = 0
        self.joined = 0
        self.cancelled = 0

    def __len__(self) -> int:
        return len(self._flights)

    def active(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is in flight (a new caller would join it)."""
        flight = self._flights.get(key)
        return flight is not None and not flight.task.done()

    async def do(self, key: Hashable, factory: Callable[[], Awaitable[T]],
                 on_join: Callable[[], None] | None = None) -> T:
        """The result of the call for ``key``, starting it with ``factory()`` if none is in flight.

        ``on_join`` runs when this caller joins a call someone else started.
        """
        value, _ = await self.do_flagged(key, factory, on_join)
        return value

    async def do_flagged(self, key: Hashable, factory: Callable[[], Awaitable[T]],
                         on_join: Callable[[], None] | None = None) -> tuple[T, bool]:
        """Like :meth:`do`, and also whether this caller was the leader (started the call)."""
        flight, leader = self.start(key, factory, on_join)
        return await self.wait(key, flight), leader

    def start(self, key: Hashable, factory: Callable[[], Awaitable[T]],
              on_join: Callable[[], None] | None = None) -> tuple[_Flight[T], bool]:
        """Join the call in flight for ``key`` or start one now (without waiting for it);
        ``(flight, leader)``. Follow with :meth:`wait`."""
        flight = self._flights.get(key)
        if flight is None or flight.task.done():
            task = spawn(factory())
            flight = _Flight(task)
            self._flights[key] = flight
            self.started += 1
            task.add_done_callback(partial(self._done, key, flight))
            return flight, True
        flight.joined += 1
        self.joined += 1
        if on_join is not None:
            on_join()
        return flight, False

    async def wait(self, key: Hashable, flight: _Flight[T]) -> T:
        """The result of a flight from :meth:`start`; leaving cancels it if nobody else waits."""
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Every waiter has gone: nobody wants the answer any more.
                self.cancelled += 1
                flight.task.cancel()
                self._finished(key, flight)

    def _done(self, key: Hashable, flight: _Flight[T], task: asyncio.Task[T]) -> None:
        self._finished(key, flight)

    def _finished(self, key: Hashable, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def statistics(self) -> DedupStats:
        """Counters since creation, and the number of calls in flight now."""
        return DedupStats(self.started, self.joined, len(self._flights), self.cancelled)

    def __repr__(self) -> str:
        return (f"SingleFlight(in_flight={len(self._flights)}, started={self.started}, "
                f"joined={self.joined})")

