"""At most ``max_concurrency`` calls in flight: a FIFO :class:`ConcurrencyLimiter` and the
pipeline's :class:`ConcurrencyLimitLayer` (a stream holds its permit until it closes)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from contextlib import aclosing, suppress

from ..._clock import Clock, system_clock
from ...context import CallContext
from ...domain.ports import Handler, Layer
from ...errors import ConfigurationError
from ...types import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "ConcurrencyLimitLayer",
    "ConcurrencyLimiter",
]


def add_queue_wait(ctx: CallContext, seconds: float) -> None:
    if seconds > 0:
        ctx.queue_wait += seconds


def recheck_circuit(ctx: CallContext) -> None:
    """After queueing: let the circuit breaker above reject the call if it opened meanwhile."""
    check = ctx.circuit_recheck
    if check is not None:
        check()


class ConcurrencyLimiter:
    """A FIFO semaphore: a released permit goes straight to the oldest waiter, so nobody can
    barge in ahead of the queue. Cancellation-safe: a waiter cancelled after being handed a
    permit passes it on."""

    __slots__ = ("_waiters", "in_use", "limit")

    def __init__(self, limit: int) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"max_concurrency must be an int >= 1, got {limit!r}")
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Callers queued for a permit."""
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        """Wait for a permit (FIFO)."""
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed a permit but will not use it
            else:
                fut.cancel()
                with suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        """Give the permit back: to the oldest waiter if there is one."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand over: in_use stays the same
                return
        self.in_use -= 1

    def __repr__(self) -> str:
        return f"ConcurrencyLimiter({self.in_use}/{self.limit}, waiting={self.waiting})"


class ConcurrencyLimitLayer(Layer):
    """At most ``max_concurrency`` calls in flight, per provider (``per_provider=True``) or in
    all. A stream holds its permit until it closes."""

    def __init__(self, inner: Handler, max_concurrency: int, *, per_provider: bool = True,
                 clock: Clock = system_clock) -> None:
        super().__init__(inner)
        ConcurrencyLimiter(max_concurrency)  # validates
        self.max_concurrency = max_concurrency
        self.per_provider = per_provider
        self.clock = clock
        self.limiters: dict[str, ConcurrencyLimiter] = {}

    def limiter_for(self, request: ChatRequest) -> ConcurrencyLimiter:
        """The :class:`ConcurrencyLimiter` of ``request``'s provider (or the global one)."""
        key = (request.provider or "default") if self.per_provider else "*"
        limiter = self.limiters.get(key)
        if limiter is None:
            limiter = self.limiters[key] = ConcurrencyLimiter(self.max_concurrency)
        return limiter

    async def _acquire(self, request: ChatRequest, ctx: CallContext) -> ConcurrencyLimiter:
        limiter = self.limiter_for(request)
        started = self.clock.now()
        queued = limiter.in_use >= limiter.limit or bool(limiter.waiting)
        await limiter.acquire()
        add_queue_wait(ctx, self.clock.now() - started)
        if queued:
            try:
                recheck_circuit(ctx)
            except BaseException:
                limiter.release()
                raise
        return limiter

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """Call the inner handler holding a permit."""
        limiter = await self._acquire(request, ctx)
        try:
            return await self.inner.chat(request, ctx)
        finally:
            limiter.release()

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Stream from the inner handler holding a permit until the stream closes."""
        limiter = await self._acquire(request, ctx)
        try:
            async with aclosing(self.inner.stream(request, ctx)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            limiter.release()

    @property
    def in_use(self) -> int:
        """Permits held right now, over every provider."""
        return sum(lim.in_use for lim in self.limiters.values())

    @property
    def waiting(self) -> int:
        """Callers queued right now, over every provider."""
        return sum(lim.waiting for lim in self.limiters.values())

    def statistics(self) -> dict[str, dict[str, int]]:
        """``{provider: {"in_use", "waiting", "limit"}}``."""
        return {key: {"in_use": lim.in_use, "waiting": lim.waiting, "limit": lim.limit}
                for key, lim in self.limiters.items()}

    def __repr__(self) -> str:
        return f"ConcurrencyLimitLayer(max={self.max_concurrency}, in_use={self.in_use})"
