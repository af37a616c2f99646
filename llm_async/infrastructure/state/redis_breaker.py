"""A circuit breaker whose state lives in Redis, shared by every worker that names it.

Every read-modify-write is one Lua script, so two workers can never both see "closed" and both
trip, or both start a half-open probe beyond the limit. Time comes from Redis itself (``TIME``)
so that workers on different hosts agree; tests may inject a :class:`~llm_async._clock.Clock`
instead (every worker must then share it).

Nothing can wedge it: a half-open probe slot is a *lease* (a member of a sorted set scored by
its expiry), so a prober that is cancelled mid-acquire or killed outright frees its slot when
the lease runs out (``probe_lease`` seconds); and every key it writes expires after
``idle_ttl`` seconds without use (never before an open breaker's wait is over).

What is shared: the state, counters, the failure streak, the probe leases, the time-bucketed
failure/slow window (one entry per logical call, like the in-memory breaker) and a description
of the last failure (chained to rejections in every worker). Adaptive thresholds stay per
process (the configured ones apply).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from ... import errors as _errors
from ..._clock import Clock
from ...application.circuit_breaker import (
    CircuitBreakerConfig,
    CircuitPermit,
    CircuitState,
    StateListener,
)
from ...errors import CircuitBreakerOpenError, LLMError, describe_error, detached
from ._redis import connect, now_arg, text
from .redis_breaker_scripts import ACQUIRE, FORCE, RECORD

__all__ = ["RedisCircuitBreaker", "redis_breaker_factory"]

logger = logging.getLogger("llm_async.circuit")

P = ParamSpec("P")
T = TypeVar("T")

_SEP = "\x1f"


def _describe(error: BaseException | None) -> str:
    """The last failure as stored in Redis: type name, status and redacted message."""
    if error is None:
        return ""
    status = getattr(error, "status", None)
    message = describe_error(error).partition(": ")[2] or type(error).__name__
    return _SEP.join((type(error).__name__, "" if status is None else str(status), message))


def _rebuild(description: str) -> BaseException | None:
    """An error standing for a failure another worker stored (its class when it is one of
    this library's errors, else :class:`~llm_async.errors.LLMError`)."""
    if not description:
        return None
    name, _, rest = description.partition(_SEP)
    status_text, _, message = rest.partition(_SEP)
    status = int(status_text) if status_text.isdigit() else None
    cls = getattr(_errors, name, None)
    if isinstance(cls, type) and issubclass(cls, LLMError):
        return cls(message, status=status)
    return LLMError(f"{name}: {message}", status=status)


class RedisCircuitBreaker:
    """A circuit breaker whose state lives in Redis: every worker using the same ``name`` (and
    ``prefix``) shares one breaker. Same config and semantics as
    :class:`~llm_async.application.circuit_breaker.CircuitBreaker`, async only; adaptive
    thresholds are not shared (the configured ones apply).

    ``probe_lease``: seconds a half-open probe slot is held at most (a cancelled or killed
    prober frees it then); ``idle_ttl``: seconds after which an unused breaker's keys expire
    (at least twice ``max_timeout`` plus the window). ``status()`` returns the last state this
    process saw; ``await fetch_status()`` reads Redis.
    """

    #: Permits are ended with ``record_async`` / ``release_async`` (a script round trip).
    local = False

    def __init__(self, name: str, config: CircuitBreakerConfig | None = None, *,
                 redis: Any = None, url: str | None = None, prefix: str = "llm_async",
                 clock: Clock | None = None, rng: random.Random | None = None,
                 probe_lease: float = 60.0, idle_ttl: float = 3600.0) -> None:
        if not probe_lease > 0 or not idle_ttl > 0:
            raise _errors.ConfigurationError("probe_lease and idle_ttl must be > 0")
        self.name = name
        self.config = config or CircuitBreakerConfig()
        self._redis, self._owns = connect(redis, url)
        self.clock = clock
        self.rng = rng or random.Random()
        self.probe_lease = float(probe_lease)
        cfg = self.config
        self.idle_ttl = max(float(idle_ttl), 2 * cfg.max_timeout + cfg.window)
        self._ttl_ms = math.ceil(self.idle_ttl * 1000)
        tag = "{" + name + "}"
        self._key = f"{prefix}:cb:{tag}"
        self._window_key = f"{prefix}:cb:{tag}:w"
        self._probes_key = f"{prefix}:cb:{tag}:p"
        self._keys = [self._key, self._window_key, self._probes_key]
        self._acquire_script = self._redis.register_script(ACQUIRE)
        self._record_script = self._redis.register_script(RECORD)
        self._force_script = self._redis.register_script(FORCE)
        self._listeners: list[StateListener] = []
        self._last_state = CircuitState.CLOSED
        self._last_failure: BaseException | None = None
        self._snapshot: dict[str, Any] = {}

    @property
    def keys(self) -> tuple[str, ...]:
        """The Redis keys of this breaker (state, window, probe leases)."""
        return tuple(self._keys)

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

    def _cause(self, stored: str) -> BaseException | None:
        """The last failure to chain to a rejection: this process's own copy when it is the
        one stored, else one rebuilt from the stored description."""
        local = self._last_failure
        if local is not None and _describe(local) == stored:
            return local
        return _rebuild(stored)

    async def acquire_async(self, call: str | None = None) -> CircuitPermit:
        """A permit, or :class:`~llm_async.errors.CircuitBreakerOpenError` (chaining the last
        failure). ``call`` names the logical call the attempt belongs to."""
        token = secrets.token_hex(8)
        result = await self._acquire_script(
            keys=self._keys,
            args=[now_arg(self.clock), self.config.half_open_max_calls, self.probe_lease,
                  self._ttl_ms, token])
        allowed, old, new, gen, retry_after, probe, seq, last = result
        self._transition(text(old), text(new))
        if not int(allowed):
            after = float(text(retry_after))
            raise CircuitBreakerOpenError(
                f"circuit {self.name!r} is {text(new).replace('_', '-')}", name=self.name,
                retry_after=None if after < 0 else max(0.0, after),
                cause=self._cause(text(last)))
        is_probe = bool(int(probe))
        return CircuitPermit(self, is_probe, int(gen), self._now(), int(seq), call,
                             token if is_probe else None)

    def _finish(self, permit: CircuitPermit, error: BaseException | None,
                duration: float | None, *, forced: bool | None) -> None:
        raise TypeError("a shared breaker's permit is ended with record_async()")

    def _release(self, permit: CircuitPermit) -> None:
        raise TypeError("a shared breaker's permit is ended with release_async()")

    async def _finish_async(self, permit: CircuitPermit, error: BaseException | None,
                            duration: float | None, *, forced: bool | None) -> None:
        if permit.done:
            return
        permit.done = True
        if duration is None:
            duration = self._now() - permit.started
        if forced:
            outcome = "f"
        elif error is None:
            outcome = "s"
        else:
            verdict = self.config.classify(error)
            outcome = "r" if verdict is None else ("f" if verdict else "i")
        threshold = self.config.slow_call_threshold
        slow = outcome == "s" and threshold is not None and duration >= threshold
        hint = getattr(error, "retry_after", None) if error is not None else None
        retry_after = float(hint) if (self.config.honor_retry_after
                                      and isinstance(hint, int | float)) else -1.0
        description = ""
        if outcome == "f" and error is not None:
            self._last_failure = detached(error)
            description = _describe(self._last_failure)
        await self._send(permit, outcome, slow, retry_after, description)

    async def _release_async(self, permit: CircuitPermit) -> None:
        if permit.done:
            return
        permit.done = True
        await self._send(permit, "r", False)

    async def _send(self, permit: CircuitPermit, outcome: str, slow: bool,
                    retry_after: float = -1.0, description: str = "") -> None:
        cfg = self.config
        jitter = 1 + self.rng.uniform(-cfg.jitter, cfg.jitter) if cfg.jitter else 1.0
        old, new = await self._record_script(
            keys=self._keys,
            args=[now_arg(self.clock), outcome, int(slow), int(permit.probe), permit.generation,
                  cfg.failure_threshold, cfg.success_threshold,
                  -1 if cfg.failure_rate_threshold is None else cfg.failure_rate_threshold,
                  cfg.minimum_calls,
                  -1 if cfg.slow_call_threshold is None else cfg.slow_call_rate_threshold,
                  cfg.window, cfg.window_buckets, cfg.timeout, cfg.backoff_multiplier,
                  cfg.max_timeout, jitter, retry_after, permit.seq, permit.call or "",
                  permit.token or "", self._ttl_ms, description])
        self._transition(text(old), text(new))

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

    async def _force(self, mode: str) -> None:
        old, new = await self._force_script(keys=self._keys, args=[mode, self._ttl_ms])
        self._transition(text(old), text(new))

    async def reset_async(self) -> None:
        """Close the shared breaker for every worker and forget its history."""
        await self._force("reset")

    async def force_open_async(self) -> None:
        """Open the shared breaker for every worker until :meth:`reset_async` (or until it has
        been unused for ``idle_ttl`` seconds)."""
        await self._force("open")

    async def fetch_status(self) -> dict[str, Any]:
        """The shared state as stored in Redis (also cached for :meth:`status`)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._key)
            pipe.zcard(self._probes_key)
            raw, probes = await pipe.execute()
        data = {text(k): text(v) for k, v in raw.items()}

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
            "half_open_in_flight": int(probes) if state == "half_open" else 0,
            "trips": num("trips"),
            "opened_until": float(data["opened_until"]) if state == "open" else None,
            "last_failure": data.get("last_error", "").replace(_SEP, " ") or None,
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
        """The ``circuit.*`` metrics from the last fetched status."""
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
                          prefix: str = "llm_async", clock: Clock | None = None,
                          probe_lease: float = 60.0, idle_ttl: float = 3600.0,
                          ) -> Callable[[str, CircuitBreakerConfig], RedisCircuitBreaker]:
    """A ``factory=`` for :class:`~llm_async.application.circuit_breaker.CircuitBreakerLayer`
    that keeps every (provider, model) breaker in Redis, sharing one connection."""
    client, _ = connect(redis, url)

    def make(name: str, config: CircuitBreakerConfig) -> RedisCircuitBreaker:
        return RedisCircuitBreaker(name, config, redis=client, prefix=prefix, clock=clock,
                                   probe_lease=probe_lease, idle_ttl=idle_ttl)

    return make
