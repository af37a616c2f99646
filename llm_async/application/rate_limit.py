"""Concurrency and rate limits: FIFO, no polling task, and slowed down by the provider's own
rate-limit headers.

* :class:`ConcurrencyLimitLayer` — at most ``max_concurrency`` calls in flight per provider.
  The permit is held until the answer is complete — for a stream, until it closes (end,
  error, ``break``, ``aclose()`` or cancellation).
* :class:`RateLimitLayer` — requests-per-minute and tokens-per-minute token buckets
  (continuous refill: a bucket of ``N`` per minute holds ``N`` and refills ``N/60`` per
  second). One call takes one request and its estimated tokens from both buckets in a single
  atomic step; when the real usage is known, the estimate is corrected.

Both queue waiters first-in first-out: a waiter is only admitted when everyone before it has
been, so a large request is never starved by a stream of small ones. Nobody polls: a concurrency
permit is handed directly to the next waiter when it is released, and only the head of the rate
limiter's queue sleeps — exactly until the buckets can admit it — in its own task.

Time spent queued is added to ``ctx.queue_wait`` (seconds) so that the
circuit breaker leaves it out of slow-call durations; provider timeouts are applied below, by
the transport, so queueing never counts toward them.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, runtime_checkable

from .._clock import Clock, system_clock
from ..context import CallContext
from ..domain.ports import Handler, Layer
from ..errors import ConfigurationError, ErrorKind, RateLimiterError, RateLimitError
from ..types import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "BucketLimits",
    "BucketStore",
    "ConcurrencyLimitLayer",
    "ConcurrencyLimiter",
    "LocalBucketStore",
    "RateLimitConfig",
    "RateLimitInfo",
    "RateLimitLayer",
    "estimate_tokens",
    "parse_duration",
    "parse_rate_limit_headers",
]


def _add_queue_wait(ctx: CallContext, seconds: float) -> None:
    if seconds > 0:
        ctx.queue_wait += seconds


def _recheck_circuit(ctx: CallContext) -> None:
    """After queueing: let the circuit breaker above reject the call if it opened meanwhile."""
    check = ctx.circuit_recheck
    if check is not None:
        check()


# -- concurrency ----------------------------------------------------------------------------


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
        _add_queue_wait(ctx, self.clock.now() - started)
        if queued:
            try:
                _recheck_circuit(ctx)
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


# -- rate-limit headers ---------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    """Seconds in a Go-style duration (``"6m0s"``, ``"12ms"``, ``"1.5s"``) or a plain number of
    seconds; ``None`` when it is neither."""
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                return None
            seconds += float(match.group(1)) * _UNIT[match.group(2)]
            pos = match.end()
        if pos != len(text):
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _parse_reset(value: str | None, wall_now: float) -> float | None:
    """A reset header as seconds from now: a duration, or an RFC 3339 timestamp (Anthropic),
    or epoch seconds / milliseconds (OpenRouter)."""
    if value is None:
        return None
    text = value.strip()
    if "T" in text and "-" in text:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, when.timestamp() - wall_now)
    seconds = parse_duration(text)
    if seconds is None:
        return None
    if seconds > 1e12:  # epoch milliseconds
        return max(0.0, seconds / 1000.0 - wall_now)
    if seconds > 1e9:  # epoch seconds
        return max(0.0, seconds - wall_now)
    return seconds


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(float(value))
    except ValueError:
        return None
    return number if number >= 0 else None  # Azure sends -1: unknown


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What a response's rate-limit headers say; every field may be unknown (``None``).
    ``reset_*`` are seconds from now until the limit is fully replenished."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


def parse_rate_limit_headers(headers: Mapping[str, str] | None,
                             wall_now: float | None = None) -> RateLimitInfo | None:
    """Read OpenAI (``x-ratelimit-*-requests/tokens``), Anthropic (``anthropic-ratelimit-*``)
    or OpenRouter (``x-ratelimit-limit/remaining/reset``) headers; ``None`` when there are
    none."""
    if not headers:
        return None
    now = time.time() if wall_now is None else wall_now
    get = headers.get
    if get("x-ratelimit-remaining-requests") is not None or \
            get("x-ratelimit-remaining-tokens") is not None:
        return RateLimitInfo(
            limit_requests=_int(get("x-ratelimit-limit-requests")),
            remaining_requests=_int(get("x-ratelimit-remaining-requests")),
            reset_requests=_parse_reset(get("x-ratelimit-reset-requests"), now),
            limit_tokens=_int(get("x-ratelimit-limit-tokens")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
            reset_tokens=_parse_reset(get("x-ratelimit-reset-tokens"), now),
        )
    prefix = "anthropic-ratelimit-"
    if get(prefix + "requests-remaining") is not None or \
            get(prefix + "tokens-remaining") is not None or \
            get(prefix + "input-tokens-remaining") is not None:
        tokens = "tokens"
        if get(prefix + "tokens-remaining") is None:
            ins = _int(get(prefix + "input-tokens-remaining"))
            outs = _int(get(prefix + "output-tokens-remaining"))
            tokens = "output-tokens" if (outs is not None and (ins is None or outs < ins)) \
                else "input-tokens"
        return RateLimitInfo(
            limit_requests=_int(get(prefix + "requests-limit")),
            remaining_requests=_int(get(prefix + "requests-remaining")),
            reset_requests=_parse_reset(get(prefix + "requests-reset"), now),
            limit_tokens=_int(get(prefix + f"{tokens}-limit")),
            remaining_tokens=_int(get(prefix + f"{tokens}-remaining")),
            reset_tokens=_parse_reset(get(prefix + f"{tokens}-reset"), now),
        )
    if get("x-ratelimit-remaining") is not None:
        return RateLimitInfo(
            limit_requests=_int(get("x-ratelimit-limit")),
            remaining_requests=_int(get("x-ratelimit-remaining")),
            reset_requests=_parse_reset(get("x-ratelimit-reset"), now),
        )
    return None


# -- token buckets --------------------------------------------------------------------------


def estimate_tokens(request: ChatRequest, default_output_tokens: int = 256) -> tuple[int, int]:
    """A quick upper-bound guess ``(input, output)`` of a request's tokens: about four
    characters a token plus a few per message, and ``max_tokens`` (or
    ``default_output_tokens``) for the answer."""
    chars = 0
    for message in request.messages:
        chars += len(message.text)
        for call in message.tool_calls or ():
            chars += len(call.function.name) + len(call.function.arguments)
    for tool in request.tools or ():
        chars += len(tool.function.name) + len(tool.function.description or "") + 64
    prompt = math.ceil(chars / 4) + 4 * len(request.messages) + 3
    return prompt, request.max_tokens or default_output_tokens


@dataclass(frozen=True, slots=True)
class BucketLimits:
    """Per-minute limits of one key (``None``: unlimited) and the current rate factor (0–1)
    by which the refill is slowed after 429s."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    rate_factor: float = 1.0


@runtime_checkable
class BucketStore(Protocol):
    """Where the buckets live: this process (:class:`LocalBucketStore`) or Redis
    (:class:`~llm_async.infrastructure.redis_state.RedisBucketStore`)."""

    async def try_acquire(self, key: str, limits: BucketLimits, tokens: int) -> float:
        """Take one request and ``tokens`` tokens from both buckets at once and return 0, or
        take nothing and return the seconds to wait before both could be taken."""
        ...

    async def adjust(self, key: str, limits: BucketLimits, tokens: float) -> None:
        """Put ``tokens`` back into the token bucket (negative: take more)."""
        ...

    async def block(self, key: str, seconds: float) -> None:
        """Admit nothing for ``key`` during the next ``seconds``."""
        ...

    async def observe(self, key: str, limits: BucketLimits, remaining_requests: int | None,
                      remaining_tokens: int | None) -> None:
        """Lower the buckets to what the provider says remains."""
        ...


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.level = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = max(self.updated, now)

    def wait_for(self, amount: float) -> float:
        if self.level >= amount:
            return 0.0
        return math.inf if self.rate <= 0 else (amount - self.level) / self.rate


class LocalBucketStore:
    """Token buckets in this process, timed by the injected clock."""

    def __init__(self, clock: Clock = system_clock) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._blocked: dict[str, float] = {}

    def _bucket(self, key: str, kind: str, per_minute: float | None, factor: float,
                now: float) -> _Bucket | None:
        if per_minute is None:
            self._buckets.pop((key, kind), None)
            return None
        rate = per_minute / 60.0 * factor
        bucket = self._buckets.get((key, kind))
        if bucket is None:
            bucket = self._buckets[(key, kind)] = _Bucket(per_minute, rate, now)
            return bucket
        bucket.refill(now)
        bucket.capacity = per_minute
        bucket.level = min(bucket.level, per_minute)
        bucket.rate = rate
        return bucket

    def _both(self, key: str, limits: BucketLimits,
              now: float) -> tuple[_Bucket | None, _Bucket | None]:
        return (self._bucket(key, "requests", limits.requests_per_minute, limits.rate_factor, now),
                self._bucket(key, "tokens", limits.tokens_per_minute, limits.rate_factor, now))

    async def try_acquire(self, key: str, limits: BucketLimits, tokens: int) -> float:
        """See :meth:`BucketStore.try_acquire`."""
        now = self.clock.now()
        blocked = self._blocked.get(key, 0.0) - now
        if blocked > 0:
            return blocked
        requests, token_bucket = self._both(key, limits, now)
        wait = max(requests.wait_for(1) if requests else 0.0,
                   token_bucket.wait_for(tokens) if token_bucket else 0.0)
        if wait > 0:
            return wait
        if requests:
            requests.level -= 1
        if token_bucket:
            token_bucket.level -= tokens
        return 0.0

    async def adjust(self, key: str, limits: BucketLimits, tokens: float) -> None:
        """See :meth:`BucketStore.adjust`."""
        _, bucket = self._both(key, limits, self.clock.now())
        if bucket is not None:
            bucket.level = min(bucket.capacity, bucket.level + tokens)

    async def block(self, key: str, seconds: float) -> None:
        """See :meth:`BucketStore.block`."""
        until = self.clock.now() + seconds
        if until > self._blocked.get(key, 0.0):
            self._blocked[key] = until

    async def observe(self, key: str, limits: BucketLimits, remaining_requests: int | None,
                      remaining_tokens: int | None) -> None:
        """See :meth:`BucketStore.observe`."""
        requests, tokens = self._both(key, limits, self.clock.now())
        if requests is not None and remaining_requests is not None:
            requests.level = min(requests.level, float(remaining_requests))
        if tokens is not None and remaining_tokens is not None:
            tokens.level = min(tokens.level, float(remaining_tokens))

    def levels(self, key: str) -> dict[str, float | None]:
        """The buckets' current levels for ``key`` (``None``: no bucket)."""
        now = self.clock.now()
        out: dict[str, float | None] = {}
        for kind in ("requests", "tokens"):
            bucket = self._buckets.get((key, kind))
            if bucket is not None:
                bucket.refill(now)
            out[kind] = bucket.level if bucket else None
        out["blocked_for"] = max(0.0, self._blocked.get(key, 0.0) - now)
        return out

    async def aclose(self) -> None:
        """Nothing to release (part of the store protocol's lifecycle)."""


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
                _recheck_circuit(ctx)
        finally:
            head = bool(state.waiters) and state.waiters[0] is me
            with suppress(ValueError):
                state.waiters.remove(me)
            if not me.done():
                me.cancel()
            if head and state.waiters and not state.waiters[0].done():
                state.waiters[0].set_result(None)
        _add_queue_wait(ctx, self.clock.now() - started)
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
