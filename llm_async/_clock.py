"""Injected time: a monotonic clock, and a fake one so breaker, limiter and retry tests
never sleep."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock", "system_clock"]


def _after(start: float, seconds: float) -> float:
    """The first float ``t`` with ``t - start >= seconds``.

    ``start + seconds`` rounds to the nearest float, which is ``start`` itself when ``seconds``
    is below half a unit in the last place of ``start``: code that sleeps exactly as long as it
    computed it must wait would then never see time move.
    """
    later = start + seconds
    while later - start < seconds:
        later = math.nextafter(later, math.inf)
    return later


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds and an awaitable sleep."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """``time.monotonic`` and ``asyncio.sleep``."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


system_clock = SystemClock()


class FakeClock:
    """A clock that only moves when told to.

    With ``auto_advance=True`` (the default) ``sleep(d)`` moves time forward by ``d`` at once and
    yields to the loop, so code that backs off for minutes runs in microseconds. With
    ``auto_advance=False`` sleepers wait until :meth:`advance` moves time past their deadline.
    ``sleeps`` records every requested sleep.

    Time always moves by at least what was asked: a positive sleep or advance never leaves
    :meth:`now` where it was, however small it is next to the current time.
    """

    def __init__(self, start: float = 0.0, *, auto_advance: bool = True) -> None:
        self._time = start
        self.auto_advance = auto_advance
        self.sleeps: list[float] = []
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._time

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        if self.auto_advance:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (_after(self._time, seconds), next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._time = _after(self._time, seconds)
        while self._waiters and self._waiters[0][0] <= self._time:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    @property
    def total_slept(self) -> float:
        return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._time:.3f}, waiting={len(self._waiters)})"
