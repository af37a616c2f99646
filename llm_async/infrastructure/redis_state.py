"""Circuit-breaker state and rate-limit buckets in Redis, shared by several worker processes.

Every read-modify-write is one Lua script, so two workers can never both see "closed" and
both trip, both take the last token, or both start a half-open probe beyond the limit.
Time comes from Redis itself (``TIME``) so that workers on different hosts agree; tests may
inject a :class:`~llm_async._clock.Clock` instead (every worker must then share it).

``redis`` is an optional dependency (``pip install 'llm-async-client[redis]'``); it is imported
only when one of these classes is created. Pass a ``redis.asyncio.Redis`` client (with or without
``decode_responses``) or a ``url``.

What is shared: a breaker's state, counters, consecutive failures, half-open probes and its
time-bucketed failure/slow window; a key's request and token buckets and its 429 block. What
stays per process: adaptive thresholds (the Redis breaker uses the configured ones), the
rate limiter's FIFO queue and its AIMD rate factor.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from .._clock import Clock
from ..application.circuit_breaker import CircuitBreakerConfig, CircuitState, StateListener
from ..application.rate_limit import BucketLimits
from ..errors import CircuitBreakerOpenError, ConfigurationError

__all__ = ["RedisBucketStore", "RedisCircuitBreaker", "RedisPermit", "redis_breaker_factory"]

logger = logging.getLogger("llm_async.circuit")

P = ParamSpec("P")
T = TypeVar("T")

_NOW = """
local function clock(arg)
  local now = tonumber(arg)
  if now == nil or now < 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return now
end
"""

_CB_ACQUIRE = _NOW + """
local k = KEYS[1]
local now = clock(ARGV[1])
local st = redis.call('HGET', k, 'state') or 'closed'
local old = st
redis.call('HINCRBY', k, 'total', 1)
local forced = redis.call('HGET', k, 'forced') == '1'
local untl = tonumber(redis.call('HGET', k, 'opened_until') or '0')
if st == 'open' and not forced and now >= untl then
  st = 'half_open'
  redis.call('HSET', k, 'state', st, 'ho_inflight', 0, 'ho_success', 0, 'consec', 0)
  redis.call('HINCRBY', k, 'gen', 1)
  redis.call('DEL', KEYS[2])
end
local gen = tonumber(redis.call('HGET', k, 'gen') or '0')
if st == 'open' then
  redis.call('HINCRBY', k, 'rejected', 1)
  local ra = '-1'
  if not forced then ra = tostring(untl - now) end
  return {0, old, st, gen, ra, 0}
end
if st == 'half_open' then
  local inflight = tonumber(redis.call('HGET', k, 'ho_inflight') or '0')
  if inflight >= tonumber(ARGV[2]) then
    redis.call('HINCRBY', k, 'rejected', 1)
    return {0, old, st, gen, '-1', 0}
  end
  redis.call('HINCRBY', k, 'ho_inflight', 1)
  return {1, old, st, gen, '-1', 1}
end
return {1, old, st, gen, '-1', 0}
"""

_CB_RECORD = _NOW + """
local k = KEYS[1]
local w = KEYS[2]
local now = clock(ARGV[1])
local outcome = ARGV[2]
local slow = ARGV[3] == '1'
local probe = ARGV[4] == '1'
local pgen = tonumber(ARGV[5])
local ft = tonumber(ARGV[6])
local succ_t = tonumber(ARGV[7])
local rate_t = tonumber(ARGV[8])
local min_calls = tonumber(ARGV[9])
local slow_t = tonumber(ARGV[10])
local window = tonumber(ARGV[11])
local buckets = tonumber(ARGV[12])
local base = tonumber(ARGV[13])
local mult = tonumber(ARGV[14])
local maxd = tonumber(ARGV[15])
local jit = tonumber(ARGV[16])
local ra = tonumber(ARGV[17])
local st = redis.call('HGET', k, 'state') or 'closed'
local old = st
local gen = tonumber(redis.call('HGET', k, 'gen') or '0')
local current = (pgen == gen)
if probe and current and st == 'half_open' then
  redis.call('HINCRBY', k, 'ho_inflight', -1)
end
if outcome == 'r' then return {old, st} end
if outcome == 'i' then
  redis.call('HINCRBY', k, 'ignored', 1)
  return {old, st}
end
local failed = outcome == 'f'
if failed then
  redis.call('HINCRBY', k, 'failed', 1)
  slow = false
else
  redis.call('HINCRBY', k, 'successful', 1)
  if slow then redis.call('HINCRBY', k, 'slow', 1) end
end
local width = window / buckets
local epoch = math.floor(now / width)
redis.call('HINCRBY', w, epoch .. ':t', 1)
if failed then redis.call('HINCRBY', w, epoch .. ':f', 1) end
if slow then redis.call('HINCRBY', w, epoch .. ':s', 1) end
for _, field in ipairs(redis.call('HKEYS', w)) do
  local e = tonumber(string.match(field, '^(-?%d+):'))
  if e ~= nil and e <= epoch - buckets then redis.call('HDEL', w, field) end
end
redis.call('PEXPIRE', w, math.floor(window * 2000))
local function trip()
  local trips = redis.call('HINCRBY', k, 'trips', 1)
  local d = base * (mult ^ (trips - 1))
  if d > maxd then d = maxd end
  d = d * jit
  if ra > d then d = math.min(ra, maxd) end
  redis.call('HSET', k, 'state', 'open', 'opened_until', tostring(now + d), 'consec', 0,
             'ho_inflight', 0, 'ho_success', 0)
  redis.call('HINCRBY', k, 'gen', 1)
  redis.call('HINCRBY', k, 'opened', 1)
  redis.call('DEL', w)
  st = 'open'
end
if probe and current and st == 'half_open' then
  if failed or slow then
    trip()
  else
    local s = redis.call('HINCRBY', k, 'ho_success', 1)
    if s >= succ_t then
      redis.call('HSET', k, 'state', 'closed', 'trips', 0, 'consec', 0, 'ho_inflight', 0,
                 'ho_success', 0, 'opened_until', 0)
      redis.call('HINCRBY', k, 'gen', 1)
      redis.call('DEL', w)
      st = 'closed'
    end
  end
elseif st == 'closed' then
  local c = 0
  if failed then
    c = redis.call('HINCRBY', k, 'consec', 1)
  else
    redis.call('HSET', k, 'consec', 0)
  end
  local trip_now = c >= ft
  if not trip_now then
    local total, nf, ns = 0, 0, 0
    for e = epoch - buckets + 1, epoch do
      local v = redis.call('HMGET', w, e .. ':t', e .. ':f', e .. ':s')
      total = total + (tonumber(v[1]) or 0)
      nf = nf + (tonumber(v[2]) or 0)
      ns = ns + (tonumber(v[3]) or 0)
    end
    if total >= min_calls then
      if rate_t >= 0 and nf / total >= rate_t then trip_now = true end
      if slow_t >= 0 and ns / total >= slow_t then trip_now = true end
    end
  end
  if trip_now then trip() end
end
return {old, st}
"""

_CB_FORCE = """
local k = KEYS[1]
local old = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == 'open' then
  redis.call('HSET', k, 'state', 'open', 'forced', 1, 'opened_until', '1e300', 'consec', 0,
             'ho_inflight', 0, 'ho_success', 0)
else
  redis.call('HSET', k, 'state', 'closed', 'forced', 0, 'opened_until', 0, 'consec', 0,
             'ho_inflight', 0, 'ho_success', 0, 'trips', 0)
end
redis.call('HINCRBY', k, 'gen', 1)
redis.call('DEL', KEYS[2])
local new = redis.call('HGET', k, 'state')
return {old, new}
"""

_RL_COMMON = _NOW + """
local k = KEYS[1]
local function refill(kind, per_min, factor, now)
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
local function save(kind, lvl, now)
  if lvl ~= nil then
    redis.call('HSET', k, kind .. '_level', tostring(lvl), kind .. '_upd', tostring(now))
  end
end
"""

_RL_ACQUIRE = _RL_COMMON + """
local now = clock(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local factor = tonumber(ARGV[4])
local tokens = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local blocked = tonumber(redis.call('HGET', k, 'blocked') or '0')
if blocked > now then return tostring(blocked - now) end
local rl = refill('r', rpm, factor, now)
local tl = refill('t', tpm, factor, now)
local wait = 0
if rl ~= nil and rl < 1 then wait = math.max(wait, (1 - rl) / (rpm / 60 * factor)) end
if tl ~= nil and tl < tokens then wait = math.max(wait, (tokens - tl) / (tpm / 60 * factor)) end
if wait <= 0 then
  if rl ~= nil then rl = rl - 1 end
  if tl ~= nil then tl = tl - tokens end
end
save('r', rl, now)
save('t', tl, now)
redis.call('EXPIRE', k, ttl)
return tostring(wait)
"""

_RL_ADJUST = _RL_COMMON + """
local now = clock(ARGV[1])
local tpm = tonumber(ARGV[2])
local factor = tonumber(ARGV[3])
local tl = refill('t', tpm, factor, now)
if tl ~= nil then
  tl = math.min(tpm, tl + tonumber(ARGV[4]))
  save('t', tl, now)
  redis.call('EXPIRE', k, tonumber(ARGV[5]))
end
return 1
"""

_RL_BLOCK = _NOW + """
local now = clock(ARGV[1])
local untl = now + tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
if untl > cur then redis.call('HSET', KEYS[1], 'blocked', tostring(untl)) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

_RL_OBSERVE = _RL_COMMON + """
local now = clock(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local factor = tonumber(ARGV[4])
local rr = tonumber(ARGV[5])
local rt = tonumber(ARGV[6])
local rl = refill('r', rpm, factor, now)
local tl = refill('t', tpm, factor, now)
if rl ~= nil and rr >= 0 and rr < rl then rl = rr end
if tl ~= nil and rt >= 0 and rt < tl then tl = rt end
save('r', rl, now)
save('t', tl, now)
redis.call('EXPIRE', k, tonumber(ARGV[7]))
return 1
"""

_RL_LEVELS = _RL_COMMON + """
local now = clock(ARGV[1])
local rl = refill('r', tonumber(ARGV[2]), tonumber(ARGV[4]), now)
local tl = refill('t', tonumber(ARGV[3]), tonumber(ARGV[4]), now)
local blocked = tonumber(redis.call('HGET', k, 'blocked') or '0') - now
if blocked < 0 then blocked = 0 end
return {tostring(rl or -1), tostring(tl or -1), tostring(blocked)}
"""


def _connect(redis: Any, url: str | None) -> tuple[Any, bool]:
    if redis is not None:
        return redis, False
    if url is None:
        raise ConfigurationError("pass a redis.asyncio client (redis=) or a url=")
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "the Redis backend needs the 'redis' package: pip install 'llm-async-client[redis]'"
        ) from exc
    return aioredis.from_url(url), True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now_arg(clock: Clock | None) -> str:
    return "-1" if clock is None else repr(clock.now())


class RedisPermit:
    """A permit of a :class:`RedisCircuitBreaker` (the async :class:`BreakerPermit` protocol)."""

    __slots__ = ("_breaker", "done", "generation", "probe", "started")

    def __init__(self, breaker: RedisCircuitBreaker, probe: bool, generation: int,
                 started: float) -> None:
        self._breaker = breaker
        self.probe = probe
        self.generation = generation
        self.started = started
        self.done = False

    async def record_async(self, error: BaseException | None,
                           duration: float | None = None) -> None:
        """Record the outcome (``None`` success; an exception is classified by the config)."""
        if self.done:
            return
        self.done = True
        await self._breaker._record(self, error, duration)

    async def release_async(self) -> None:
        """Give the permit back without an outcome."""
        if self.done:
            return
        self.done = True
        await self._breaker._send(self, "r", False)


class RedisCircuitBreaker:
    """A circuit breaker whose state lives in Redis: every worker using the same ``name`` (and
    ``prefix``) shares one breaker. Same config and semantics as
    :class:`~llm_async.application.circuit_breaker.CircuitBreaker`, async only; adaptive
    thresholds are not shared (the configured ones apply).

    ``status()`` returns the last state this process saw; ``await fetch_status()`` reads Redis.
    """

    def __init__(self, name: str, config: CircuitBreakerConfig | None = None, *,
                 redis: Any = None, url: str | None = None, prefix: str = "llm_async",
                 clock: Clock | None = None, rng: random.Random | None = None) -> None:
        self.name = name
        self.config = config or CircuitBreakerConfig()
        self._redis, self._owns = _connect(redis, url)
        self.clock = clock
        self.rng = rng or random.Random()
        tag = "{" + name + "}"
        self._key = f"{prefix}:cb:{tag}"
        self._window_key = f"{prefix}:cb:{tag}:w"
        self._acquire_script = self._redis.register_script(_CB_ACQUIRE)
        self._record_script = self._redis.register_script(_CB_RECORD)
        self._force_script = self._redis.register_script(_CB_FORCE)
        self._listeners: list[StateListener] = []
        self._last_state = CircuitState.CLOSED
        self._snapshot: dict[str, Any] = {}

    def _now(self) -> float:
        if self.clock is not None:
            return self.clock.now()
        return asyncio.get_running_loop().time()

    def subscribe(self, callback: StateListener) -> Callable[[], None]:
        """Call ``callback(name, old, new)`` on every transition this process causes or sees."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def _transition(self, old: str, new: str) -> None:
        """Report what changed since this process last looked: a transition another worker
        made (``seen``, logged at INFO) and the one this call made (logged at WARNING)."""
        seen, before, after = self._last_state, CircuitState(old), CircuitState(new)
        self._last_state = after
        steps = []
        if seen is not before:
            steps.append((seen, before, logging.INFO))
        if before is not after:
            steps.append((before, after, logging.WARNING))
        for a, b, level in steps:
            logger.log(level, "circuit %r: %s -> %s", self.name, a.value, b.value)
            for listener in list(self._listeners):
                try:
                    listener(self.name, a, b)
                except Exception:
                    logger.exception("circuit %r: state listener failed", self.name)

    async def acquire_async(self) -> RedisPermit:
        """A permit, or :class:`~llm_async.errors.CircuitBreakerOpenError`."""
        result = await self._acquire_script(
            keys=[self._key, self._window_key],
            args=[_now_arg(self.clock), self.config.half_open_max_calls])
        allowed, old, new, gen, retry_after, probe = result
        self._transition(_text(old), _text(new))
        if not int(allowed):
            after = float(_text(retry_after))
            raise CircuitBreakerOpenError(
                f"circuit {self.name!r} is {_text(new).replace('_', '-')}", name=self.name,
                retry_after=None if after < 0 else max(0.0, after))
        return RedisPermit(self, bool(int(probe)), int(gen), self._now())

    async def _record(self, permit: RedisPermit, error: BaseException | None,
                      duration: float | None) -> None:
        if duration is None:
            duration = self._now() - permit.started
        if error is None:
            outcome = "s"
        else:
            verdict = self.config.classify(error)
            outcome = "r" if verdict is None else ("f" if verdict else "i")
        threshold = self.config.slow_call_threshold
        slow = outcome == "s" and threshold is not None and duration >= threshold
        hint = getattr(error, "retry_after", None) if error is not None else None
        retry_after = float(hint) if (self.config.honor_retry_after
                                      and isinstance(hint, int | float)) else -1.0
        await self._send(permit, outcome, slow, retry_after)

    async def _send(self, permit: RedisPermit, outcome: str, slow: bool,
                    retry_after: float = -1.0) -> None:
        cfg = self.config
        jitter = 1 + self.rng.uniform(-cfg.jitter, cfg.jitter) if cfg.jitter else 1.0
        old, new = await self._record_script(
            keys=[self._key, self._window_key],
            args=[_now_arg(self.clock), outcome, int(slow), int(permit.probe), permit.generation,
                  cfg.failure_threshold, cfg.success_threshold,
                  -1 if cfg.failure_rate_threshold is None else cfg.failure_rate_threshold,
                  cfg.minimum_calls,
                  -1 if cfg.slow_call_threshold is None else cfg.slow_call_rate_threshold,
                  cfg.window, cfg.window_buckets, cfg.timeout, cfg.backoff_multiplier,
                  cfg.max_timeout, jitter, retry_after])
        self._transition(_text(old), _text(new))

    async def call_async(self, fn: Callable[P, Awaitable[T]] | Callable[P, T],
                         *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through the shared breaker."""
        permit = await self.acquire_async()
        try:
            result: Any = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            await asyncio.shield(asyncio.ensure_future(permit.record_async(exc)))
            raise
        await permit.record_async(None)
        return result  # type: ignore[no-any-return]

    async def reset_async(self) -> None:
        """Close the shared breaker for every worker and forget its history."""
        old, new = await self._force_script(keys=[self._key, self._window_key], args=["reset"])
        self._transition(_text(old), _text(new))

    async def force_open_async(self) -> None:
        """Open the shared breaker for every worker until :meth:`reset_async`."""
        old, new = await self._force_script(keys=[self._key, self._window_key], args=["open"])
        self._transition(_text(old), _text(new))

    async def fetch_status(self) -> dict[str, Any]:
        """The shared state as stored in Redis (also cached for :meth:`status`)."""
        raw = await self._redis.hgetall(self._key)
        data = {_text(k): _text(v) for k, v in raw.items()}

        def num(field: str) -> int:
            return int(float(data.get(field, 0)))

        state = data.get("state", "closed")
        self._last_state = CircuitState(state)
        self._snapshot = {
            "name": self.name,
            "state": state,
            "forced_open": data.get("forced") == "1",
            "failure_count": num("consec"),
            "success_count": num("ho_success"),
            "half_open_in_flight": num("ho_inflight"),
            "trips": num("trips"),
            "opened_until": float(data["opened_until"]) if state == "open" else None,
            "total_requests": num("total"),
            "successful_requests": num("successful"),
            "failed_requests": num("failed"),
            "rejected_requests": num("rejected"),
            "ignored_requests": num("ignored"),
            "slow_requests": num("slow"),
            "times_opened": num("opened"),
        }
        return dict(self._snapshot)

    def status(self) -> dict[str, Any]:
        """The last status fetched (at least ``name`` and ``state``; sync, no I/O)."""
        return {**self._snapshot, "name": self.name, "state": self._last_state.value}

    def metrics(self) -> dict[str, Any]:
        """The seed's ``circuit.*`` names from the last fetched status."""
        s = self._snapshot
        return {
            "circuit.state": self._last_state.value,
            "circuit.requests.total": s.get("total_requests", 0),
            "circuit.requests.successful": s.get("successful_requests", 0),
            "circuit.requests.failed": s.get("failed_requests", 0),
            "circuit.requests.rejected": s.get("rejected_requests", 0),
        }

    async def aclose(self) -> None:
        """Close the Redis connection if this breaker created it."""
        if self._owns:
            await self._redis.aclose()

    def __repr__(self) -> str:
        return f"RedisCircuitBreaker({self.name!r}, key={self._key!r})"


def redis_breaker_factory(redis: Any = None, *, url: str | None = None,
                          prefix: str = "llm_async", clock: Clock | None = None
                          ) -> Callable[[str, CircuitBreakerConfig], RedisCircuitBreaker]:
    """A ``factory=`` for :class:`~llm_async.application.circuit_breaker.CircuitBreakerLayer`
    that keeps every (provider, model) breaker in Redis, sharing one connection."""
    client, _ = _connect(redis, url)

    def make(name: str, config: CircuitBreakerConfig) -> RedisCircuitBreaker:
        return RedisCircuitBreaker(name, config, redis=client, prefix=prefix, clock=clock)

    return make


class RedisBucketStore:
    """Rate-limit buckets in Redis (the :class:`~llm_async.application.rate_limit.BucketStore`
    protocol): ``RateLimitLayer(inner, config, store=RedisBucketStore(url=...))``.

    Keys expire after ``idle_ttl`` seconds without use.
    """

    def __init__(self, redis: Any = None, *, url: str | None = None, prefix: str = "llm_async",
                 clock: Clock | None = None, idle_ttl: int = 600) -> None:
        self._redis, self._owns = _connect(redis, url)
        self.prefix = prefix
        self.clock = clock
        self.idle_ttl = idle_ttl
        self._acquire = self._redis.register_script(_RL_ACQUIRE)
        self._adjust = self._redis.register_script(_RL_ADJUST)
        self._block = self._redis.register_script(_RL_BLOCK)
        self._observe = self._redis.register_script(_RL_OBSERVE)
        self._levels = self._redis.register_script(_RL_LEVELS)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:rl:{{{key}}}"

    @staticmethod
    def _limit(value: float | None) -> float:
        return -1.0 if value is None else float(value)

    async def try_acquire(self, key: str, limits: BucketLimits, tokens: int) -> float:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.try_acquire`."""
        wait = await self._acquire(
            keys=[self._key(key)],
            args=[_now_arg(self.clock), self._limit(limits.requests_per_minute),
                  self._limit(limits.tokens_per_minute), limits.rate_factor, tokens,
                  self.idle_ttl])
        return max(0.0, float(_text(wait)))

    async def adjust(self, key: str, limits: BucketLimits, tokens: float) -> None:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.adjust`."""
        await self._adjust(keys=[self._key(key)],
                           args=[_now_arg(self.clock), self._limit(limits.tokens_per_minute),
                                 limits.rate_factor, tokens, self.idle_ttl])

    async def block(self, key: str, seconds: float) -> None:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.block`."""
        await self._block(keys=[self._key(key)],
                          args=[_now_arg(self.clock), seconds, self.idle_ttl])

    async def observe(self, key: str, limits: BucketLimits, remaining_requests: int | None,
                      remaining_tokens: int | None) -> None:
        """See :meth:`~llm_async.application.rate_limit.BucketStore.observe`."""
        await self._observe(
            keys=[self._key(key)],
            args=[_now_arg(self.clock), self._limit(limits.requests_per_minute),
                  self._limit(limits.tokens_per_minute), limits.rate_factor,
                  -1 if remaining_requests is None else remaining_requests,
                  -1 if remaining_tokens is None else remaining_tokens, self.idle_ttl])

    async def levels(self, key: str, limits: BucketLimits) -> dict[str, float | None]:
        """The shared buckets' levels for ``key`` (``None``: no bucket) and its block."""
        r, t, blocked = await self._levels(
            keys=[self._key(key)],
            args=[_now_arg(self.clock), self._limit(limits.requests_per_minute),
                  self._limit(limits.tokens_per_minute), limits.rate_factor])
        rv, tv = float(_text(r)), float(_text(t))
        return {"requests": None if limits.requests_per_minute is None else rv,
                "tokens": None if limits.tokens_per_minute is None else tv,
                "blocked_for": float(_text(blocked))}

    async def aclose(self) -> None:
        """Close the Redis connection if this store created it."""
        if self._owns:
            await self._redis.aclose()

    def __repr__(self) -> str:
        return f"RedisBucketStore(prefix={self.prefix!r})"
