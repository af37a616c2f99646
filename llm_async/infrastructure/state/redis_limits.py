"""Rate-limit buckets in Redis, shared by every worker (the
:class:`~llm_async.application.rate_limit.BucketStore` protocol).

Each operation is one Lua script over one hash per key: a request bucket and a token bucket
(level and last update each), and the time until which a 429 blocks the key. Every write
refreshes the key's expiry (``idle_ttl``), so an unused key disappears on its own.
"""

from __future__ import annotations

from typing import Any

from ..._clock import Clock
from ...application.rate_limit import BucketLimits
from ._redis import LUA_CLOCK, connect, now_arg, text

__all__ = ["RedisBucketStore"]

# Every script starts from the same prelude: ARGV[1..5] are now, requests per minute, tokens
# per minute (-1: no bucket), the rate factor and the key's ttl; ``rl`` / ``tl`` are the two
# buckets' levels refilled up to now (nil: no bucket); ``save()`` stores both and the ttl.
_PRELUDE = LUA_CLOCK + """
local k = KEYS[1]
local now = clock(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local factor = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local function refill(kind, per_min)
  if per_min <= 0 then return nil end
  local lvl = tonumber(redis.call('HGET', k, kind .. '_level'))
  local upd = tonumber(redis.call('HGET', k, kind .. '_upd'))
  if lvl == nil or upd == nil then
    lvl = per_min
    upd = now
  end
  if now > upd then lvl = lvl + (now - upd) * per_min / 60 * factor end
  if lvl > per_min then lvl = per_min end
  return lvl
end
local rl = refill('r', rpm)
local tl = refill('t', tpm)
local function save()
  if rl ~= nil then redis.call('HSET', k, 'r_level', tostring(rl), 'r_upd', tostring(now)) end
  if tl ~= nil then redis.call('HSET', k, 't_level', tostring(tl), 't_upd', tostring(now)) end
  redis.call('EXPIRE', k, ttl)
end
local function blocked_for()
  local b = tonumber(redis.call('HGET', k, 'blocked') or '0') - now
  if b < 0 then return 0 end
  return b
end
"""

# ARGV[6]: tokens. Returns the seconds to wait ("0": taken).
_ACQUIRE = _PRELUDE + """
local blocked = blocked_for()
if blocked > 0 then return tostring(blocked) end
local tokens = tonumber(ARGV[6])
local wait = 0
if rl ~= nil and rl < 1 then wait = math.max(wait, (1 - rl) / (rpm / 60 * factor)) end
if tl ~= nil and tl < tokens then wait = math.max(wait, (tokens - tl) / (tpm / 60 * factor)) end
if wait <= 0 then
  if rl ~= nil then rl = rl - 1 end
  if tl ~= nil then tl = tl - tokens end
end
save()
return tostring(wait)
"""

# ARGV[6]: tokens to put back (negative: take).
_ADJUST = _PRELUDE + """
if tl ~= nil then tl = math.min(tpm, tl + tonumber(ARGV[6])) end
save()
return 1
"""

# ARGV[6]: seconds to block the key for.
_BLOCK = _PRELUDE + """
local untl = now + tonumber(ARGV[6])
local cur = tonumber(redis.call('HGET', k, 'blocked') or '0')
if untl > cur then redis.call('HSET', k, 'blocked', tostring(untl)) end
save()
return 1
"""

# ARGV[6], ARGV[7]: remaining requests, remaining tokens (-1: unknown).
_OBSERVE = _PRELUDE + """
local rr = tonumber(ARGV[6])
local rt = tonumber(ARGV[7])
if rl ~= nil and rr >= 0 and rr < rl then rl = rr end
if tl ~= nil and rt >= 0 and rt < tl then tl = rt end
save()
return 1
"""

# Read only: {request level, token level (-1: no bucket), seconds blocked}.
_LEVELS = _PRELUDE + """
return {tostring(rl or -1), tostring(tl or -1), tostring(blocked_for())}
"""


class RedisBucketStore:
    """Rate-limit buckets in Redis (the :class:`~llm_async.application.rate_limit.BucketStore`
    protocol): ``RateLimitLayer(inner, config, store=RedisBucketStore(url=...))``.

    Keys expire after ``idle_ttl`` seconds without use.
    """

    def __init__(self, redis: Any = None, *, url: str | None = None, prefix: str = "llm_async",
                 clock: Clock | None = None, idle_ttl: int = 600) -> None:
        self._redis, self._owns = connect(redis, url)
        self.prefix = prefix
        self.clock = clock
        self.idle_ttl = idle_ttl
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._adjust = self._redis.register_script(_ADJUST)
        self._block = self._redis.register_script(_BLOCK)
        self._observe = self._redis.register_script(_OBSERVE)
        self._levels = self._redis.register_script(_LEVELS)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:rl:{{{key}}}"

    def _args(self, limits: BucketLimits | None, *extra: float) -> list[Any]:
        """The prelude's arguments (see ``_PRELUDE``) followed by the script's own."""
        rpm = limits.requests_per_minute if limits else None
        tpm = limits.tokens_per_minute if limits else None
        return [now_arg(self.clock), -1.0 if rpm is None else float(rpm),
                -1.0 if tpm is None else float(tpm), limits.rate_factor if limits else 1.0,
                self.idle_ttl, *extra]

    async def try_acquire(self, key: str, limits: BucketLimits, tokens: int) -> float:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.try_acquire`."""
        wait = await self._acquire(keys=[self._key(key)], args=self._args(limits, tokens))
        return max(0.0, float(text(wait)))

    async def adjust(self, key: str, limits: BucketLimits, tokens: float) -> None:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.adjust`."""
        await self._adjust(keys=[self._key(key)], args=self._args(limits, tokens))

    async def block(self, key: str, seconds: float) -> None:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.block`."""
        await self._block(keys=[self._key(key)], args=self._args(None, seconds))

    async def observe(self, key: str, limits: BucketLimits, remaining_requests: int | None,
                      remaining_tokens: int | None) -> None:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.observe`."""
        await self._observe(
            keys=[self._key(key)],
            args=self._args(limits, -1 if remaining_requests is None else remaining_requests,
                            -1 if remaining_tokens is None else remaining_tokens))

    async def levels(self, key: str, limits: BucketLimits) -> dict[str, float | None]:
        """The shared buckets' levels for ``key`` (``None``: no bucket) and its block."""
        r, t, blocked = await self._levels(keys=[self._key(key)], args=self._args(limits))
        rv, tv = float(text(r)), float(text(t))
        return {"requests": None if limits.requests_per_minute is None else rv,
                "tokens": None if limits.tokens_per_minute is None else tv,
                "blocked_for": float(text(blocked))}

    async def aclose(self) -> None:
        """Close the Redis connection if this store created it."""
        if self._owns:
            await self._redis.aclose()

    def __repr__(self) -> str:
        return f"RedisBucketStore(prefix={self.prefix!r})"
