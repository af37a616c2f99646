"""The pipeline's :class:`RateLimitLayer`: buckets taken atomically, FIFO, corrected by real
usage and slowed down by the provider's headers and 429s."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any, Literal

from ..._clock import Clock, system_clock
from ...context import CallContext
from ...domain.ports import Handler, Layer
from ...errors import ConfigurationError, ErrorKind, RateLimiterError, RateLimitError
from ...types import ChatChunk, ChatRequest, ChatResponse
from .buckets import BucketLimits, BucketStore, LocalBucketStore, estimate_tokens
from .concurrency import add_queue_wait, recheck_circuit
from .provider_headers import parse_rate_limit_headers

__all__ = [
    "RateLimitConfig",
    "RateLimitLayer",
]


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Limits of :class:`RateLimitLayer`, applied per provider (``scope="provider"``), per
    provider and model (``"model"``) or to everything (``"global"``).

    ``requests_per_minute`` / ``tokens_per_minute``: the buckets (``None``: none, unless learnt
    from headers when ``use_headers``). ``max_wait``: fail with
    :class:`~llm_async.errors.RateLimiterError` instead of queueing longer (``None``: wait).
    ``default_output_tokens``: the answer's estimate when ``max_tokens`` is unset.
    ``token_estimator(request) -> int`` replaces the built-in estimate.
    On a 429 the key is blocked for its ``Retry-After`` (``default_retry_after`` without one)
    and the refill rate is multiplied by ``backoff_factor`` (down to ``min_rate_factor``);
    each success adds ``recovery_step`` back, up to 1 (AIMD).
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_wait: float | None = None
    scope: Literal["provider", "model", "global"] = "provider"
    default_output_tokens: int = 256
    token_estimator: Callable[[ChatRequest], int] | None = None
    use_headers: bool = True
    backoff_factor: float = 0.7
    min_rate_factor: float = 0.1
    recovery_step: float = 0.05
    default_retry_after: float = 1.0

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "max_wait"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigurationError(f"RateLimitConfig.{name} must be > 0 or None")
        if self.scope not in ("provider", "model", "global"):
            raise ConfigurationError("RateLimitConfig.scope must be provider, model or global")
        if not 0 < self.backoff_factor <= 1 or not 0 < self.min_rate_factor <= 1:
            raise ConfigurationError("backoff_factor and min_rate_factor must be in (0, 1]")
        if self.recovery_step < 0 or self.default_retry_after < 0 \
                or self.default_output_tokens < 0:
            raise ConfigurationError("RateLimitConfig values must not be negative")


class _Key:
    __slots__ = ("factor", "learned_rpm", "learned_tpm", "lowest_factor", "throttled", "waiters")

    def __init__(self) -> None:
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.factor = 1.0
        self.lowest_factor = 1.0
        self.throttled = 0
        self.learned_rpm: float | None = None
        self.learned_tpm: float | None = None


@dataclass(slots=True)
class _Ticket:
    key: str
    state: _Key
    input_tokens: int
    tokens: int


class RateLimitLayer(Layer):
    """RPM and TPM buckets taken atomically, FIFO, corrected by real usage, and slowed down by
    the provider's headers and 429s (see :class:`RateLimitConfig`).

    Header-driven slow-down: after every attempt the ``x-ratelimit-*`` / ``anthropic-ratelimit-*``
    headers lower the buckets to what the provider says remains; a remaining count of zero
    blocks the key until the reported reset. Limits the config leaves unset are learnt from the
    ``limit`` headers. A token estimate larger than the whole TPM bucket raises
    :class:`~llm_async.errors.RateLimiterError` at once (it could never be admitted).
    """

    def __init__(self, inner: Handler, config: RateLimitConfig | None = None, *,
                 clock: Clock = system_clock, store: BucketStore | None = None) -> None:
        super().__init__(inner)
        self.config = config or RateLimitConfig()
        self.clock = clock
        self.store: BucketStore = store or LocalBucketStore(clock)
        self.keys: dict[str, _Key] = {}

    # -- admission --------------------------------------------------------------------------

    def key_for(self, request: ChatRequest) -> str:
        """The bucket key of ``request`` for the configured ``scope``."""
        scope = self.config.scope
        if scope == "global":
            return "*"
        provider = request.provider or "default"
        return provider if scope == "provider" else f"{provider}/{request.model}"

    def limits(self, key: str) -> BucketLimits:
        """The limits in force for ``key`` (configured, else learnt) and its rate factor."""
        state = self.keys.get(key) or _Key()
        return BucketLimits(self.config.requests_per_minute or state.learned_rpm,
                            self.config.tokens_per_minute or state.learned_tpm, state.factor)

    def _estimate(self, request: ChatRequest) -> tuple[int, int]:
        if self.config.token_estimator is not None:
            total = int(self.config.token_estimator(request))
            out = request.max_tokens or 0
            return max(0, total - out), total
        prompt, out = estimate_tokens(request, self.config.default_output_tokens)
        return prompt, prompt + out

    async def _admit(self, request: ChatRequest, ctx: CallContext) -> _Ticket:
        key = self.key_for(request)
        state = self.keys.get(key)
        if state is None:
            state = self.keys[key] = _Key()
        input_tokens, tokens = self._estimate(request)
        tpm = self.limits(key).tokens_per_minute
        if tpm is not None and tokens > tpm:
            raise RateLimiterError(
                f"the request needs ~{tokens} tokens but the limit is {tpm:g} per minute",
                provider=request.provider)
        started = self.clock.now()
        me: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.append(me)
        try:
            if state.waiters[0] is not me:
                await me  # our turn comes when everyone before us was admitted
            while True:
                wait = await self.store.try_acquire(key, self.limits(key), tokens)
                if wait <= 0:
                    break
                max_wait = self.config.max_wait
                if max_wait is not None and self.clock.now() - started + wait > max_wait:
                    raise RateLimiterError(
                        f"rate limit for {key!r} would need {wait:.3g}s more of waiting "
                        f"(max_wait={max_wait:g}s)", provider=request.provider)
                await self.clock.sleep(wait)
                recheck_circuit(ctx)
        finally:
            head = bool(state.waiters) and state.waiters[0] is me
            with suppress(ValueError):
                state.waiters.remove(me)
            if not me.done():
                me.cancel()
            if head and state.waiters and not state.waiters[0].done():
                state.waiters[0].set_result(None)
        add_queue_wait(ctx, self.clock.now() - started)
        return _Ticket(key, state, input_tokens, tokens)

    # -- feedback ---------------------------------------------------------------------------

    async def _observe_headers(self, ctx: CallContext, ticket: _Ticket) -> None:
        if not self.config.use_headers:
            return
        info = parse_rate_limit_headers(ctx.response_headers)
        if info is None:
            return
        state = ticket.state
        if self.config.requests_per_minute is None and info.limit_requests:
            state.learned_rpm = float(info.limit_requests)
        if self.config.tokens_per_minute is None and info.limit_tokens:
            state.learned_tpm = float(info.limit_tokens)
        await self.store.observe(ticket.key, self.limits(ticket.key), info.remaining_requests,
                                 info.remaining_tokens)
        for remaining, reset in ((info.remaining_requests, info.reset_requests),
                                 (info.remaining_tokens, info.reset_tokens)):
            if remaining == 0 and reset:
                await self.store.block(ticket.key, reset)

    async def _settle(self, ctx: CallContext, ticket: _Ticket, error: BaseException | None,
                      used: int | None, delivered: bool) -> None:
        """Correct the token estimate and learn from the attempt's headers and outcome."""
        limits = self.limits(ticket.key)
        if used is not None and used > 0:
            await self.store.adjust(ticket.key, limits, ticket.tokens - used)
        elif error is not None and not delivered:
            # Nothing was generated: give back the answer's share of the estimate.
            await self.store.adjust(ticket.key, limits, ticket.tokens - ticket.input_tokens)
        state = ticket.state
        if isinstance(error, RateLimitError) and error.kind is ErrorKind.RATE_LIMIT:
            state.throttled += 1
            state.factor = max(self.config.min_rate_factor,
                               state.factor * self.config.backoff_factor)
            state.lowest_factor = min(state.lowest_factor, state.factor)
            hint = error.retry_after
            await self.store.block(ticket.key, self.config.default_retry_after
                                   if hint is None else hint)
        elif error is None:
            state.factor = min(1.0, state.factor + self.config.recovery_step)
        await self._observe_headers(ctx, ticket)

    async def _settle_shielded(self, ctx: CallContext, ticket: _Ticket,
                               error: BaseException | None, used: int | None,
                               delivered: bool) -> None:
        if isinstance(self.store, LocalBucketStore):
            await self._settle(ctx, ticket, error, used, delivered)  # never suspends
        else:
            await asyncio.shield(asyncio.ensure_future(
                self._settle(ctx, ticket, error, used, delivered)))

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """Wait for the buckets, call the inner handler, then correct and learn."""
        ticket = await self._admit(request, ctx)
        try:
            response = await self.inner.chat(request, ctx)
        except Exception as exc:
            await self._settle_shielded(ctx, ticket, exc, None, False)
            raise
        await self._settle_shielded(ctx, ticket, None, response.usage.total_tokens, True)
        return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Wait for the buckets, stream, then correct from the usage chunk."""
        ticket = await self._admit(request, ctx)
        used: int | None = None
        delivered = False
        error: BaseException | None = None
        try:
            async with aclosing(self.inner.stream(request, ctx)) as chunks:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        used = chunk.usage.total_tokens
                    delivered = True
                    yield chunk
        except Exception as exc:
            error = exc
            raise
        finally:
            await self._settle_shielded(ctx, ticket, error, used, delivered)

    def statistics(self) -> dict[str, dict[str, Any]]:
        """Per key: queued callers, the rate factor (now and lowest), 429s seen (``throttled``),
        the limits in force and (local store) the bucket levels."""
        out: dict[str, dict[str, Any]] = {}
        for key, state in self.keys.items():
            limits = self.limits(key)
            entry: dict[str, Any] = {
                "waiting": len(state.waiters),
                "rate_factor": state.factor,
                "lowest_rate_factor": state.lowest_factor,
                "throttled": state.throttled,
                "requests_per_minute": limits.requests_per_minute,
                "tokens_per_minute": limits.tokens_per_minute,
            }
            if isinstance(self.store, LocalBucketStore):
                entry.update(self.store.levels(key))
            out[key] = entry
        return out

    @property
    def waiting(self) -> int:
        """Callers queued right now, over every key."""
        return sum(len(state.waiters) for state in self.keys.values())

    def __repr__(self) -> str:
        c = self.config
        return (f"RateLimitLayer(rpm={c.requests_per_minute}, tpm={c.tokens_per_minute}, "
                f"waiting={self.waiting})")
