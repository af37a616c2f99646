"""The pipeline's :class:`CircuitBreakerLayer`: one breaker per (provider, model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any, cast

from ..._clock import Clock, system_clock
from ...context import CallContext
from ...domain.ports import Handler, Layer
from ...errors import (
    CircuitBreakerOpenError,
)
from ...types import ChatChunk, ChatRequest, ChatResponse
from .breaker import CircuitBreaker
from .config import CircuitBreakerConfig, CircuitState
from .permit import AsyncBreaker, BreakerPermit, CircuitPermit
from .registry import get_circuit_breaker

__all__ = [
    "CircuitBreakerLayer",
]


_LOCAL_ACQUIRE_ASYNC = CircuitBreaker.acquire_async


class _Recheck:
    """``ctx.circuit_recheck``: re-check the breaker for a call that waited in a queue below;
    on rejection report it, give the permit back and raise."""

    __slots__ = ("breaker", "ctx", "permit", "request")

    def __init__(self, request: ChatRequest, ctx: CallContext, breaker: CircuitBreaker,
                 permit: CircuitPermit) -> None:
        self.request = request
        self.ctx = ctx
        self.breaker = breaker
        self.permit = permit

    def __call__(self) -> None:
        try:
            self.breaker.recheck(self.permit)
        except CircuitBreakerOpenError as exc:
            exc.provider = self.request.provider
            self.ctx.event("circuit_rejected", breaker=self.breaker.name,
                           retry_after=exc.retry_after)
            self.permit.release()
            raise


_ORDER = {CircuitState.CLOSED.value: 0, CircuitState.HALF_OPEN.value: 1,
          CircuitState.OPEN.value: 2}


BreakerFactory = Callable[[str, CircuitBreakerConfig], AsyncBreaker]


class CircuitBreakerLayer(Layer):
    """One breaker per (provider, model), named ``"provider/model"``.

    A rejected call raises :class:`~llm_async.errors.CircuitBreakerOpenError` (never retried, so
    retry stops at once and a fallback moves on) and emits the event ``"circuit_rejected"``
    (``breaker``: its name, ``retry_after``). The duration used for slow-call detection excludes
    time queued in the limits below (``ctx.queue_wait``); for a stream it is the time
    to the first chunk. A stream's outcome is recorded when it ends: success on a normal end,
    the error's classification on a failure, nothing when the consumer breaks out or is
    cancelled — and a half-open probe permit is given back in every case.

    A call admitted while the breaker was closed but then queued in the concurrency or rate
    limit is re-checked before it is sent (``ctx.circuit_recheck``): if the breaker
    opened meanwhile it is rejected like any other call, so a queue does not keep feeding a
    failing provider.

    ``shared=True`` takes breakers from the process registry (:func:`get_circuit_breaker`), so
    several clients share them; ``factory`` builds other breakers (e.g.
    :class:`~llm_async.infrastructure.redis_state.RedisCircuitBreaker` for cross-process state).
    """

    def __init__(self, inner: Handler, config: CircuitBreakerConfig | None = None, *,
                 clock: Clock = system_clock, shared: bool = False,
                 factory: BreakerFactory | None = None) -> None:
        super().__init__(inner)
        self.config = config or CircuitBreakerConfig()
        self.clock = clock
        self.shared = shared
        self._factory = factory
        self.breakers: dict[str, AsyncBreaker] = {}
        # (provider, model) -> (breaker, whether it is an in-memory CircuitBreaker whose
        # permits are taken and ended synchronously): one dict lookup per call.
        self._by_key: dict[tuple[str | None, str], tuple[AsyncBreaker, bool]] = {}

    def breaker_for(self, request: ChatRequest) -> AsyncBreaker:
        """The breaker guarding ``request``'s provider and model (created on first use)."""
        return self._entry(request)[0]

    def _entry(self, request: ChatRequest) -> tuple[AsyncBreaker, bool]:
        key = (request.provider, request.model)
        entry = self._by_key.get(key)
        if entry is not None:
            return entry
        name = f"{request.provider or 'default'}/{request.model}"
        breaker = self.breakers.get(name)
        if breaker is None:
            if self._factory is not None:
                breaker = self._factory(name, self.config)
            elif self.shared:
                breaker = get_circuit_breaker(name, self.config, clock=self.clock)
            else:
                breaker = CircuitBreaker(name, self.config, clock=self.clock)
            self.breakers[name] = breaker
        local = (isinstance(breaker, CircuitBreaker) and breaker.local is True
                 and type(breaker).acquire_async is _LOCAL_ACQUIRE_ASYNC)
        entry = (breaker, local)
        if len(self._by_key) < 4096:
            self._by_key[key] = entry
        return entry

    async def _acquire(self, breaker: AsyncBreaker, local: bool, request: ChatRequest,
                       ctx: CallContext) -> BreakerPermit:
        try:
            if local:
                # What acquire_async does, without a coroutine.
                return cast(CircuitBreaker, breaker).acquire(ctx.call_id)
            return await breaker.acquire_async(ctx.call_id)
        except CircuitBreakerOpenError as exc:
            self._rejected(exc, breaker, request, ctx)
            raise

    @staticmethod
    def _rejected(exc: CircuitBreakerOpenError, breaker: AsyncBreaker, request: ChatRequest,
                  ctx: CallContext) -> None:
        if exc.provider is None:
            exc.provider = request.provider
        ctx.event("circuit_rejected", breaker=breaker.name, retry_after=exc.retry_after)

    def _elapsed(self, ctx: CallContext, started: float, queued: float) -> float:
        waited = ctx.queue_wait - queued
        return max(0.0, self.clock.now() - started - waited)

    @staticmethod
    def _arm_recheck(request: ChatRequest, ctx: CallContext, breaker: AsyncBreaker,
                     permit: BreakerPermit) -> None:
        """Let the limits below re-check the breaker after a call waited in their queue
        (``ctx.circuit_recheck``), so a call queued when the breaker opens is not
        sent to the failing provider."""
        if (isinstance(permit, CircuitPermit) and permit.local
                and isinstance(breaker, CircuitBreaker)):
            ctx.circuit_recheck = _Recheck(request, ctx, breaker, permit)

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """Call the inner handler through the request's breaker."""
        breaker, local = self._entry(request)
        if local:
            # The in-memory breaker: its permits are taken, re-checked and ended synchronously.
            mem = cast(CircuitBreaker, breaker)
            try:
                permit = mem.acquire(ctx.call_id)
            except CircuitBreakerOpenError as exc:
                self._rejected(exc, breaker, request, ctx)
                raise
            now = self.clock.now
            started = now()
            queued = ctx.queue_wait
            ctx.circuit_recheck = _Recheck(request, ctx, mem, permit)
            try:
                response = await self.inner.chat(request, ctx)
            except BaseException as exc:
                ctx.circuit_recheck = None
                permit.record(exc, max(0.0, now() - started - (ctx.queue_wait - queued)))
                raise
            ctx.circuit_recheck = None
            permit.record(None, max(0.0, now() - started - (ctx.queue_wait - queued)))
            return response
        remote = await self._acquire(breaker, False, request, ctx)
        started = self.clock.now()
        queued = ctx.queue_wait
        self._arm_recheck(request, ctx, breaker, remote)
        try:
            response = await self.inner.chat(request, ctx)
        except BaseException as exc:
            ctx.circuit_recheck = None
            await _record(remote, exc, self._elapsed(ctx, started, queued))
            raise
        ctx.circuit_recheck = None
        await _record(remote, None, self._elapsed(ctx, started, queued))
        return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Stream through the request's breaker; the outcome is recorded when it ends."""
        breaker, local = self._entry(request)
        permit = await self._acquire(breaker, local, request, ctx)
        started = self.clock.now()
        queued = ctx.queue_wait
        first: float | None = None
        ended = False
        if local:
            ctx.circuit_recheck = _Recheck(request, ctx, cast(CircuitBreaker, breaker),
                                           cast(CircuitPermit, permit))
        else:
            self._arm_recheck(request, ctx, breaker, permit)
        try:
            async with aclosing(self.inner.stream(request, ctx)) as chunks:
                async for chunk in chunks:
                    first = self._elapsed(ctx, started, queued)
                    ctx.circuit_recheck = None
                    yield chunk
                    # The first chunk is timed; pass the rest through without checks.
                    async for chunk in chunks:
                        yield chunk
                    break
        except Exception as exc:
            ended = True
            if local:
                cast(CircuitPermit, permit).record(exc, self._elapsed(ctx, started, queued))
            else:
                await _record(permit, exc, self._elapsed(ctx, started, queued))
            raise
        else:
            ended = True
            duration = first if first is not None else self._elapsed(ctx, started, queued)
            if local:
                cast(CircuitPermit, permit).record(None, duration)
            else:
                await _record(permit, None, duration)
        finally:
            ctx.circuit_recheck = None
            if not ended:
                if local:
                    cast(CircuitPermit, permit).release()
                else:
                    await _release(permit)

    def status(self) -> dict[str, Any]:
        """``{"state": worst state of all breakers, "breakers": {name: status}}``."""
        statuses = {name: b.status() for name, b in self.breakers.items()}
        worst = max((s["state"] for s in statuses.values()), key=lambda s: _ORDER.get(s, 0),
                    default=CircuitState.CLOSED.value)
        return {"state": worst, "breakers": statuses}

    def metrics(self) -> dict[str, Any]:
        """The ``circuit.*`` metrics summed over this layer's breakers, and per breaker."""
        per = {name: b.metrics() for name, b in self.breakers.items()}
        totals: dict[str, Any] = {"circuit.state": self.status()["state"]}
        for values in per.values():
            for key, value in values.items():
                if key != "circuit.state" and isinstance(value, int | float):
                    totals[key] = totals.get(key, 0) + value
        for key in ("circuit.requests.total", "circuit.requests.successful",
                    "circuit.requests.failed", "circuit.requests.rejected"):
            totals.setdefault(key, 0)
        totals["breakers"] = per
        return totals

    def __repr__(self) -> str:
        return (f"CircuitBreakerLayer(breakers={len(self.breakers)}, "
                f"inner={type(self.inner).__name__})")


async def _record(permit: BreakerPermit, error: BaseException | None,
                  duration: float) -> None:
    """End ``permit`` with an outcome; an awaiting (Redis) permit is shielded from
    cancellation so the outcome is stored even when the caller is being cancelled."""
    if isinstance(permit, CircuitPermit) and permit.local:
        permit.record(error, duration)
    else:
        await asyncio.shield(asyncio.ensure_future(permit.record_async(error, duration)))


async def _release(permit: BreakerPermit) -> None:
    """Give back ``permit`` without an outcome (shielded like :func:`_record`)."""
    if isinstance(permit, CircuitPermit) and permit.local:
        permit.release()
    else:
        await asyncio.shield(asyncio.ensure_future(permit.release_async()))
