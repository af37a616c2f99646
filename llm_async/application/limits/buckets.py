"""Requests-per-minute and tokens-per-minute token buckets and where they live
(:class:`BucketStore`: this process, or Redis)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..._clock import Clock, system_clock
from ...types import ChatRequest

__all__ = [
    "BucketLimits",
    "BucketStore",
    "LocalBucketStore",
    "estimate_tokens",
]


def estimate_tokens(request: ChatRequest, default_output_tokens: int = 256) -> tuple[int, int]:
    """A guess ``(input, output)`` of a request's tokens: the input by the library's offline
    token estimator, and ``max_tokens`` (or ``default_output_tokens``) for the answer."""
    from ..cost_manager.tokens import get_token_estimator

    prompt = get_token_estimator().count_request(request, wait=False)
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
