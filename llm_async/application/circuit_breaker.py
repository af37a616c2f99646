"""An asyncio-aware circuit breaker, its registry and the pipeline's CircuitBreakerLayer.

States: ``CLOSED`` (calls pass; outcomes are counted), ``OPEN`` (calls are rejected at once with
:class:`~llm_async.errors.CircuitBreakerOpenError`, which carries ``retry_after``) and
``HALF_OPEN`` (a bounded number of probe calls test whether the service recovered).

The breaker opens when, while closed, either

* ``failure_threshold`` counted failures happen in a row (only calls admitted after the last
  success extend the streak, so concurrent calls failing together count once), or
* over the sliding time window (``window`` seconds in ``window_buckets`` buckets) at least
  ``minimum_calls`` calls were recorded and the failure rate reaches ``failure_rate_threshold``,
  or the share of slow calls (slower than ``slow_call_threshold``) reaches
  ``slow_call_rate_threshold``. The window counts logical calls: the attempts of one call (its
  retries, which share its ``call`` id) count once, with the latest attempt's outcome.

A rejection chains the failure that opened the breaker (``__cause__``, named in the message).

It stays open for ``timeout · backoff_multiplier^(trips−1)`` seconds (capped at ``max_timeout``,
then multiplied by a random factor in ``[1 − jitter, 1 + jitter]``), where ``trips`` counts the
openings since the breaker was last closed; a ``Retry-After`` hint on the error that tripped it
lengthens that. After the wait the next call moves it to ``HALF_OPEN`` (lazily, no timer task):
at most ``half_open_max_calls`` probes run at once; one failed (or slow) probe re-opens it,
``success_threshold`` successful probes close it.

What counts as a failure (by default): server errors (5xx, overloaded), timeouts, connection
errors and unparsable responses; 429 only with ``count_rate_limits=True``. A caller's error
(400, 401, 403, 404, context length, an invalid request, a budget or quota) is *ignored*: it
counts as neither failure nor success. For plain callables any other exception is a failure.
A cancelled call records nothing and gives back its half-open permit.

State lives behind a ``threading.Lock`` held only for a few arithmetic steps, never across the
wrapped call, so the breaker serves coroutines and threads alike; time comes from the injected
monotonic :class:`~llm_async._clock.Clock`.

Adaptive thresholds (``adaptive=True``): the breaker learns a baseline failure rate ``p`` — an
exponentially weighted average (weight 0.2) of the window's failure rate, sampled once per window
while closed with at least ``minimum_calls`` calls. With ``n`` calls in the window and
``ε = adaptive_false_trip_target`` (0.01):

* consecutive-failure threshold ``k = clamp(⌈ln(ε / n) / ln p⌉, failure_threshold,
  4 · failure_threshold)`` — the run length that chance failures at rate ``p`` would reach
  fewer than ``ε`` times in ``n`` calls (``n · p^k ≤ ε``), so busy services with a known error
  rate do not trip on noise;
* failure-rate threshold ``θ' = p + (1 − p) · θ`` — ``θ`` of the headroom above the baseline.

Adaptive thresholds only ever make the breaker less eager than the configured ones.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, overload, runtime_checkable

from .._clock import Clock, system_clock
from ..context import CallContext
from ..domain.ports import Handler, Layer
from ..errors import (
    CircuitBreakerOpenError,
    ConfigurationError,
    ErrorKind,
    LLMError,
    StreamError,
    detached,
)
from ..types import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "AsyncBreaker",
    "BreakerPermit",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerLayer",
    "CircuitBreakerOpenError",
    "CircuitPermit",
    "CircuitState",
    "PermitOwner",
    "StateListener",
    "all_circuit_breakers",
    "default_is_failure",
    "get_circuit_breaker",
    "remove_circuit_breaker",
]

logger = logging.getLogger("llm_async.circuit")

P = ParamSpec("P")
T = TypeVar("T")


class CircuitState(str, Enum):
    """The three states of a breaker; the value is the documented ``circuit.state`` string."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: ``callback(name, old_state, new_state)``, called after every state change.
StateListener = Callable[[str, CircuitState, CircuitState], None]


def default_is_failure(error: BaseException, *, count_rate_limits: bool = False) -> bool | None:
    """``True``: a failure; ``False``: ignored (neither failure nor success); ``None``: not an
    outcome at all (cancellation)."""
    if not isinstance(error, Exception):
        return None
    if isinstance(error, LLMError):
        kind = error.kind
        if isinstance(error, StreamError):
            return True if error.cause is None else \
                bool(default_is_failure(error.cause, count_rate_limits=count_rate_limits))
        if kind is ErrorKind.RATE_LIMIT:
            return count_rate_limits
        return kind.provider_fault
    return True


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """Thresholds and timings of a :class:`CircuitBreaker` (see the module docstring).

    ``failure_threshold``: counted failures in a row that open it
    (``LLM_CIRCUIT_FAILURE_THRESHOLD``). ``success_threshold``: successful probes that close it
    again. ``timeout``: seconds it stays open the first time (``LLM_CIRCUIT_TIMEOUT``).
    ``failure_rate_threshold`` (0–1, ``None`` disables) over ``window`` seconds once
    ``minimum_calls`` were seen. ``slow_call_threshold`` (seconds; ``None`` disables) and
    ``slow_call_rate_threshold`` (0–1). ``half_open_max_calls``: concurrent probes.
    ``backoff_multiplier``, ``max_timeout``, ``jitter``: the open duration on repeated trips.
    ``adaptive``: learn thresholds (module docstring). ``count_rate_limits``: count 429s as
    failures. ``is_failure``: your own classifier (``True`` failure, ``False`` ignored),
    replacing the default. ``honor_retry_after``: stay open at least as long as the tripping
    error's ``retry_after``.
    """

    failure_threshold: int = 5
    success_threshold: int = 2
    timeout: float = 60.0
    failure_rate_threshold: float | None = 0.5
    minimum_calls: int = 100
    window: float = 60.0
    window_buckets: int = 12
    slow_call_threshold: float | None = None
    slow_call_rate_threshold: float = 1.0
    half_open_max_calls: int = 1
    backoff_multiplier: float = 2.0
    max_timeout: float = 600.0
    jitter: float = 0.1
    adaptive: bool = False
    adaptive_false_trip_target: float = 0.01
    count_rate_limits: bool = False
    is_failure: Callable[[BaseException], bool] | None = None
    honor_retry_after: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigurationError(f"CircuitBreakerConfig: {message}")

        need(self.failure_threshold >= 1, "failure_threshold must be >= 1")
        need(self.success_threshold >= 1, "success_threshold must be >= 1")
        need(self.timeout > 0, "timeout must be > 0")
        need(self.failure_rate_threshold is None or 0 < self.failure_rate_threshold <= 1,
             "failure_rate_threshold must be in (0, 1] or None")
        need(self.minimum_calls >= 1, "minimum_calls must be >= 1")
        need(self.window > 0, "window must be > 0")
        need(self.window_buckets >= 1, "window_buckets must be >= 1")
        need(self.slow_call_threshold is None or self.slow_call_threshold > 0,
             "slow_call_threshold must be > 0 or None")
        need(0 < self.slow_call_rate_threshold <= 1, "slow_call_rate_threshold must be in (0, 1]")
        need(self.half_open_max_calls >= 1, "half_open_max_calls must be >= 1")
        need(self.backoff_multiplier >= 1, "backoff_multiplier must be >= 1")
        need(self.max_timeout >= self.timeout, "max_timeout must be >= timeout")
        need(0 <= self.jitter < 1, "jitter must be in [0, 1)")
        need(0 < self.adaptive_false_trip_target < 1, "adaptive_false_trip_target in (0, 1)")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> CircuitBreakerConfig:
        """From :class:`~llm_async.config.Settings`: ``LLM_CIRCUIT_FAILURE_THRESHOLD`` and
        ``LLM_CIRCUIT_TIMEOUT``."""
        values: dict[str, Any] = {
            "failure_threshold": int(settings.circuit_failure_threshold),
            "timeout": float(settings.circuit_timeout),
        }
        values.update(overrides)
        values.setdefault("max_timeout", max(600.0, values["timeout"]))
        return cls(**values)

    def open_duration(self, trips: int, error: BaseException | None,
                      rng: random.Random) -> float:
        """Seconds to stay open after opening for the ``trips``-th time since it was last
        closed: ``timeout · backoff_multiplier^(trips−1)``, capped, jittered, and at least the
        tripping ``error``'s ``retry_after`` (when honoured; up to ``max_timeout``)."""
        try:
            duration = self.timeout * self.backoff_multiplier ** max(0, trips - 1)
        except OverflowError:
            duration = self.max_timeout
        duration = min(self.max_timeout, duration)
        if self.jitter:
            duration *= 1 + rng.uniform(-self.jitter, self.jitter)
        hint = getattr(error, "retry_after", None) if error is not None else None
        if self.honor_retry_after and isinstance(hint, int | float) and hint > duration:
            duration = min(float(hint), self.max_timeout)
        return duration

    def classify(self, error: BaseException) -> bool | None:
        """``True`` failure, ``False`` ignored, ``None`` no outcome (cancelled)."""
        if not isinstance(error, Exception):
            return None
        if self.is_failure is not None:
            return bool(self.is_failure(error))
        return default_is_failure(error, count_rate_limits=self.count_rate_limits)


class _Window:
    """Calls, failures and slow calls over the last ``window`` seconds, in time buckets."""

    __slots__ = ("_buckets", "_epoch", "_failed", "_slow", "_total", "_width")

    def __init__(self, window: float, buckets: int) -> None:
        self._width = window / buckets
        # [epoch, total, failed, slow] per bucket
        self._buckets: list[list[int]] = [[-1, 0, 0, 0] for _ in range(buckets)]
        # The sums of the live buckets as seen from bucket ``_epoch`` (None: recompute). Kept
        # up to date by ``add`` within that bucket, so ``totals`` needs no loop per call.
        self._epoch: int | None = None
        self._total = self._failed = self._slow = 0

    def add(self, now: float, failed: bool, slow: bool) -> int:
        """Count one call; returns the bucket's epoch (for :meth:`retract`)."""
        epoch = int(now // self._width)
        slot = self._buckets[epoch % len(self._buckets)]
        if slot[0] != epoch:
            slot[:] = [epoch, 0, 0, 0]
        slot[1] += 1
        slot[2] += failed
        slot[3] += slow
        if epoch == self._epoch:
            self._total += 1
            self._failed += failed
            self._slow += slow
        else:
            self._epoch = None
        return epoch

    def retract(self, epoch: int) -> None:
        """Take back one failed call counted in bucket ``epoch``, if that bucket is still live."""
        slot = self._buckets[epoch % len(self._buckets)]
        if slot[0] == epoch and slot[2] > 0:
            slot[1] -= 1
            slot[2] -= 1
            self._epoch = None

    def totals(self, now: float) -> tuple[int, int, int]:
        current = int(now // self._width)
        if current == self._epoch:
            return self._total, self._failed, self._slow
        oldest = current - len(self._buckets)
        total = failed = slow = 0
        for epoch, t, f, s in self._buckets:
            if epoch > oldest:
                total += t
                failed += f
                slow += s
        self._epoch = current
        self._total, self._failed, self._slow = total, failed, slow
        return total, failed, slow

    def clear(self) -> None:
        for slot in self._buckets:
            slot[:] = [-1, 0, 0, 0]
        self._epoch = None


class _Adaptive:
    """Adaptive thresholds (``adaptive=True``): a learnt baseline failure rate ``p`` and the
    thresholds it implies (see the module docstring)."""

    __slots__ = ("at", "config", "rate")

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.config = config
        self.rate = 0.0
        self.at: float | None = None

    def thresholds(self, total: int) -> tuple[int, float | None]:
        """(consecutive failures, failure rate) that open the breaker with ``total`` calls in
        the window."""
        cfg = self.config
        k = cfg.failure_threshold
        rate = cfg.failure_rate_threshold
        if cfg.adaptive and self.rate > 0:
            p = min(self.rate, 0.95)
            n = max(total, 1)
            needed = math.ceil(math.log(cfg.adaptive_false_trip_target / n) / math.log(p))
            k = min(4 * cfg.failure_threshold, max(cfg.failure_threshold, needed))
            if rate is not None:
                rate = p + (1 - p) * rate
        return k, rate

    def learn(self, now: float, total: int, failed: int) -> None:
        """Fold the window's failure rate into the baseline, once per window."""
        if self.at is not None and now - self.at < self.config.window:
            return
        if total < self.config.minimum_calls:
            return
        rate = failed / total
        self.rate = rate if self.at is None else 0.8 * self.rate + 0.2 * rate
        self.at = now


class PermitOwner(Protocol):
    """What a :class:`CircuitPermit` reports to: an in-memory :class:`CircuitBreaker` (sync)
    or a shared one such as the Redis breaker (async, ``local = False``)."""

    local: bool

    def _finish(self, permit: CircuitPermit, error: BaseException | None,
                duration: float | None, *, forced: bool | None) -> None: ...

    def _release(self, permit: CircuitPermit) -> None: ...

    async def _finish_async(self, permit: CircuitPermit, error: BaseException | None,
                            duration: float | None, *, forced: bool | None) -> None: ...

    async def _release_async(self, permit: CircuitPermit) -> None: ...


class CircuitPermit:
    """Permission for one call through a breaker; end it exactly once with :meth:`record`
    (or :meth:`success` / :meth:`failure`) or :meth:`release` (no outcome) — or their
    ``*_async`` forms, which every breaker accepts and a shared (Redis) breaker requires.

    ``probe``: a half-open probe; ``generation``: the breaker's state generation when it was
    given; ``seq``: its admission number; ``call``: the logical call it belongs to; ``token``:
    the lease of a shared probe slot. Also a context manager: ``with breaker.acquire(): ...``
    records the outcome of the block.
    """

    __slots__ = ("_breaker", "call", "done", "generation", "local", "probe", "seq", "started",
                 "token")

    def __init__(self, breaker: PermitOwner, probe: bool, generation: int,
                 started: float, seq: int = 0, call: str | None = None,
                 token: str | None = None) -> None:
        self._breaker = breaker
        self.local = breaker.local
        self.probe = probe
        self.generation = generation
        self.started = started
        self.seq = seq
        self.call = call
        self.token = token
        self.done = False

    def record(self, error: BaseException | None, duration: float | None = None) -> None:
        """Record the call's outcome: ``None`` is a success, an exception is classified."""
        self._breaker._finish(self, error, duration, forced=None)

    def success(self, duration: float | None = None) -> None:
        """Record a success."""
        self._breaker._finish(self, None, duration, forced=None)

    def failure(self, error: BaseException | None = None, duration: float | None = None) -> None:
        """Record a failure, whatever the error."""
        self._breaker._finish(self, error, duration, forced=True)

    def release(self) -> None:
        """End the permit without an outcome (the call was cancelled or abandoned)."""
        self._breaker._release(self)

    async def record_async(self, error: BaseException | None,
                           duration: float | None = None) -> None:
        """:meth:`record` for the async :class:`BreakerPermit` protocol."""
        await self._breaker._finish_async(self, error, duration, forced=None)

    async def release_async(self) -> None:
        """:meth:`release` for the async :class:`BreakerPermit` protocol."""
        await self._breaker._release_async(self)

    def __enter__(self) -> CircuitPermit:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.record(exc)


@runtime_checkable
class BreakerPermit(Protocol):
    """What :class:`CircuitBreakerLayer` needs from a permit (memory or Redis backed)."""

    async def record_async(self, error: BaseException | None,
                           duration: float | None = None) -> None:
        """Record the call's outcome (``None``: success)."""
        ...

    async def release_async(self) -> None:
        """End the permit without an outcome."""
        ...


@runtime_checkable
class AsyncBreaker(Protocol):
    """What :class:`CircuitBreakerLayer` needs from a breaker (memory or Redis backed)."""

    name: str

    async def acquire_async(self, call: str | None = None) -> BreakerPermit:
        """A permit, or :class:`~llm_async.errors.CircuitBreakerOpenError`. ``call`` names the
        logical call the attempt belongs to (its retries share it)."""
        ...

    def status(self) -> dict[str, Any]:
        """A snapshot with at least ``name`` and ``state``."""
        ...

    def metrics(self) -> dict[str, Any]:
        """The ``circuit.*`` metrics."""
        ...


class CircuitBreaker:
    """A circuit breaker for one service: ``breaker.call(fn, *args)``.

    ``call`` runs a plain function and returns its result; given a coroutine function (or a
    function that returns an awaitable, such as ``lambda: client.chat(...)``) it returns an
    awaitable to ``await`` instead, and :meth:`call_async` always does. Rejections raise
    :class:`~llm_async.errors.CircuitBreakerOpenError` with ``retry_after``.
    """

    #: Permits of this breaker are ended synchronously (see :class:`PermitOwner`).
    local = True

    def __init__(self, name: str, config: CircuitBreakerConfig | None = None, *,
                 clock: Clock = system_clock, rng: random.Random | None = None) -> None:
        self.name = name
        self.config = config or CircuitBreakerConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._listeners: list[StateListener] = []
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._forced = False
        self._consecutive = 0
        self._half_open_in_flight = 0
        self._half_open_successes = 0
        self._opened_until = 0.0
        self._trips = 0
        self._window = _Window(self.config.window, self.config.window_buckets)
        # Calls whose latest outcome here was a failure: call id -> window epoch of it.
        self._failing: dict[str, int] = {}
        # ``total`` at the last success: only a call admitted after it extends a failure streak.
        self._streak_mark = 0
        self._last_failure: BaseException | None = None
        self._adaptive = _Adaptive(self.config)
        self.total = 0
        self.successful = 0
        self.failed = 0
        self.rejected = 0
        self.ignored = 0
        self.slow = 0
        self.opened = 0

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state (an open breaker whose wait is over reads as half-open)."""
        with self._lock:
            events = self._refresh(self.clock.now())
            state = self._state
        self._emit(events)
        return state

    @property
    def is_closed(self) -> bool:
        """Whether the breaker is closed now."""
        return self.state is CircuitState.CLOSED

    @property
    def is_open(self) -> bool:
        """Whether the breaker is open now."""
        return self.state is CircuitState.OPEN

    def subscribe(self, callback: StateListener) -> Callable[[], None]:
        """Call ``callback(name, old_state, new_state)`` on every state change; returns a
        function that unsubscribes it."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def reset(self) -> None:
        """Close the breaker and forget its history (also ends ``force_open``)."""
        with self._lock:
            self._forced = False
            self._trips = 0
            events = self._to(CircuitState.CLOSED)
        self._emit(events)

    def force_open(self) -> None:
        """Open the breaker until :meth:`reset` (no automatic half-open)."""
        with self._lock:
            self._forced = True
            self._opened_until = math.inf
            events = self._to(CircuitState.OPEN)
        self._emit(events)

    # -- the permit protocol ----------------------------------------------------------------

    def acquire(self, call: str | None = None) -> CircuitPermit:
        """A permit for one call, or :class:`CircuitBreakerOpenError` when it is rejected.

        ``call`` names the logical call this attempt belongs to: its retries share the name,
        and the failure-rate window counts each logical call once, with its latest outcome.
        """
        with self._lock:
            now = self.clock.now()
            self.total += 1
            if self._state is CircuitState.CLOSED:  # the fast path: nothing to refresh
                return CircuitPermit(self, False, self._generation, now, self.total, call)
            events = self._refresh(now)
            error: CircuitBreakerOpenError | None = None
            probe = False
            if self._state is CircuitState.OPEN:
                self.rejected += 1
                retry_after = None if self._forced else max(0.0, self._opened_until - now)
                error = CircuitBreakerOpenError(
                    f"circuit {self.name!r} is open", name=self.name, retry_after=retry_after,
                    cause=self._last_failure)
            elif self._state is CircuitState.HALF_OPEN:
                if self._half_open_in_flight >= self.config.half_open_max_calls:
                    self.rejected += 1
                    error = CircuitBreakerOpenError(
                        f"circuit {self.name!r} is half-open and its probes are busy",
                        name=self.name, retry_after=None, cause=self._last_failure)
                else:
                    self._half_open_in_flight += 1
                    probe = True
            permit = None if error else CircuitPermit(self, probe, self._generation, now,
                                                      self.total, call)
        self._emit(events)
        if error is not None:
            raise error
        assert permit is not None
        return permit

    async def acquire_async(self, call: str | None = None) -> CircuitPermit:
        """:meth:`acquire` for the async :class:`AsyncBreaker` protocol."""
        return self.acquire(call)

    def recheck(self, permit: CircuitPermit) -> None:
        """Reject a permitted call that is about to be sent after waiting in a queue if the
        breaker left the closed state meanwhile (raises
        :class:`~llm_async.errors.CircuitBreakerOpenError`; the caller then releases the
        permit). Probes and calls of an unchanged breaker pass."""
        with self._lock:
            now = self.clock.now()
            events = self._refresh(now)
            error = None
            if (not permit.probe and permit.generation != self._generation
                    and self._state is not CircuitState.CLOSED):
                self.rejected += 1
                retry_after = (max(0.0, self._opened_until - now)
                               if self._state is CircuitState.OPEN and not self._forced else None)
                error = CircuitBreakerOpenError(
                    f"circuit {self.name!r} opened while the call was queued", name=self.name,
                    retry_after=retry_after, cause=self._last_failure)
        self._emit(events)
        if error is not None:
            raise error

    def _finish(self, permit: CircuitPermit, error: BaseException | None,
                duration: float | None, *, forced: bool | None) -> None:
        outcome: bool | None  # True failure, False ignored/success-by-error, None no outcome
        if forced:
            outcome = True
        elif error is None:
            outcome = False
        else:
            outcome = self.config.classify(error)
            if outcome is None:
                self._release(permit)
                return
        with self._lock:
            if permit.done:
                return
            permit.done = True
            now = self.clock.now()
            if duration is None:
                duration = now - permit.started
            current = permit.generation == self._generation
            if (error is None and outcome is False and not permit.probe and current
                    and self._state is CircuitState.CLOSED):
                # The fast path: a success while closed (the same steps as the general path
                # below, without its probe and failure branches).
                threshold = self.config.slow_call_threshold
                slow = threshold is not None and duration >= threshold
                self.successful += 1
                self.slow += slow
                if permit.call is not None and self._failing:
                    self._retract(permit.call)
                self._window.add(now, False, slow)
                self._consecutive = 0
                self._streak_mark = self.total
                if not self._should_trip(now):
                    if self.config.adaptive:
                        self._learn(now)
                    return
                events = self._trip(now, None)
            else:
                events = self._finish_locked(permit, error, outcome, now, duration, current)
        self._emit(events)

    def _finish_locked(self, permit: CircuitPermit, error: BaseException | None,
                       outcome: bool | None, now: float, duration: float,
                       current: bool) -> list[tuple[CircuitState, CircuitState]]:
        if permit.probe and current and self._state is CircuitState.HALF_OPEN:
            self._half_open_in_flight -= 1
        if error is not None and outcome is False:
            self.ignored += 1
            return []
        failed = outcome is True
        threshold = self.config.slow_call_threshold
        slow = not failed and threshold is not None and duration >= threshold
        if failed:
            self.failed += 1
        else:
            self.successful += 1
            self.slow += slow
        call = permit.call
        if call is not None and self._failing:
            self._retract(call)
        epoch = self._window.add(now, failed, slow)
        if failed and call is not None:
            if len(self._failing) >= _MAX_FAILING_CALLS:
                del self._failing[next(iter(self._failing))]
            self._failing[call] = epoch
        if permit.probe and current and self._state is CircuitState.HALF_OPEN:
            if failed or slow:
                return self._trip(now, error)
            self._half_open_successes += 1
            if self._half_open_successes >= self.config.success_threshold:
                self._trips = 0
                return self._to(CircuitState.CLOSED)
        elif self._state is CircuitState.CLOSED:
            if not failed:
                self._consecutive = 0
                self._streak_mark = self.total
            elif permit.seq > self._streak_mark:
                # Only a call admitted after the last success extends the streak: one that was
                # already in flight when a success came back says nothing new about an outage.
                self._consecutive += 1
            if self._should_trip(now):
                return self._trip(now, error)
            if self.config.adaptive:
                self._learn(now)
        return []

    def _retract(self, call: str) -> None:
        """Forget ``call``'s earlier failure: the window counts each logical call once, with
        the outcome of its latest attempt."""
        epoch = self._failing.pop(call, None)
        if epoch is not None:
            self._window.retract(epoch)

    async def _finish_async(self, permit: CircuitPermit, error: BaseException | None,
                            duration: float | None, *, forced: bool | None) -> None:
        self._finish(permit, error, duration, forced=forced)

    async def _release_async(self, permit: CircuitPermit) -> None:
        self._release(permit)

    def _release(self, permit: CircuitPermit) -> None:
        with self._lock:
            if permit.done:
                return
            permit.done = True
            if (permit.probe and permit.generation == self._generation
                    and self._state is CircuitState.HALF_OPEN):
                self._half_open_in_flight -= 1

    # -- calls ------------------------------------------------------------------------------

    @overload
    def call(self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args,
             **kwargs: P.kwargs) -> Coroutine[Any, Any, T]: ...

    @overload
    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` through the breaker.

        A plain function runs now and its result is returned. A coroutine function, or a
        function returning an awaitable, gives back an awaitable that runs under the same permit.
        """
        if inspect.iscoroutinefunction(fn):
            return self.call_async(fn, *args, **kwargs)
        permit = self.acquire()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            permit.record(exc)
            raise
        if inspect.isawaitable(result):
            return self._await_under(permit, result)
        permit.success()
        return result

    async def _await_under(self, permit: CircuitPermit, awaitable: Awaitable[T]) -> T:
        try:
            result = await awaitable
        except BaseException as exc:
            permit.record(exc)
            raise
        permit.success()
        return result

    async def call_async(self, fn: Callable[P, Awaitable[T]] | Callable[P, T],
                         *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker (a plain result is returned)."""
        permit = self.acquire()
        try:
            result: Any = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            permit.record(exc)
            raise
        permit.success()
        return result  # type: ignore[no-any-return]

    # -- status -----------------------------------------------------------------------------

    def _should_trip(self, now: float) -> bool:
        cfg = self.config
        total, failed, slow = self._window.totals(now)
        k, rate = self._adaptive.thresholds(total)
        if self._consecutive >= k:
            return True
        if total < cfg.minimum_calls:
            return False
        if rate is not None and failed / total >= rate:
            return True
        return cfg.slow_call_threshold is not None and slow / total >= cfg.slow_call_rate_threshold

    def _learn(self, now: float) -> None:
        total, failed, _ = self._window.totals(now)
        self._adaptive.learn(now, total, failed)

    def _refresh(self, now: float) -> list[tuple[CircuitState, CircuitState]]:
        if (self._state is CircuitState.OPEN and not self._forced
                and now >= self._opened_until):
            return self._to(CircuitState.HALF_OPEN)
        return []

    def _trip(self, now: float, error: BaseException | None) -> list[
            tuple[CircuitState, CircuitState]]:
        self._trips += 1
        self.opened += 1
        self._opened_until = now + self.config.open_duration(self._trips, error, self.rng)
        self._last_failure = None if error is None else detached(error)
        return self._to(CircuitState.OPEN)

    def _to(self, new: CircuitState) -> list[tuple[CircuitState, CircuitState]]:
        old = self._state
        self._generation += 1
        self._state = new
        self._consecutive = 0
        self._half_open_in_flight = 0
        self._half_open_successes = 0
        self._window.clear()
        self._failing.clear()
        self._streak_mark = self.total
        if new is CircuitState.CLOSED:
            self._opened_until = 0.0
            self._last_failure = None
        return [] if old is new else [(old, new)]

    def _emit(self, events: list[tuple[CircuitState, CircuitState]]) -> None:
        for old, new in events:
            logger.warning("circuit %r: %s -> %s", self.name, old.value, new.value)
            for listener in list(self._listeners):
                try:
                    listener(self.name, old, new)
                except Exception:
                    logger.exception("circuit %r: state listener failed", self.name)

    def status(self) -> dict[str, Any]:
        """A snapshot: ``name``, ``state``, counts, window failure rate, thresholds and
        ``opened_until`` / ``retry_after``."""
        with self._lock:
            now = self.clock.now()
            events = self._refresh(now)
            total, failed, slow = self._window.totals(now)
            k, rate = self._adaptive.thresholds(total)
            open_ = self._state is CircuitState.OPEN
            data: dict[str, Any] = {
                "name": self.name,
                "state": self._state.value,
                "forced_open": self._forced,
                "failure_count": self._consecutive,
                "success_count": self._half_open_successes,
                "half_open_in_flight": self._half_open_in_flight,
                "calls_in_window": total,
                "failure_rate": (failed / total) if total >= self.config.minimum_calls else None,
                "slow_call_rate": (slow / total) if total >= self.config.minimum_calls else None,
                "failure_threshold": k,
                "failure_rate_threshold": rate,
                "baseline_failure_rate": self._adaptive.rate if self.config.adaptive else None,
                "trips": self._trips,
                "opened_until": self._opened_until if open_ else None,
                "retry_after": (max(0.0, self._opened_until - now)
                                if open_ and not self._forced else None),
                "total_requests": self.total,
                "successful_requests": self.successful,
                "failed_requests": self.failed,
                "rejected_requests": self.rejected,
                "ignored_requests": self.ignored,
                "slow_requests": self.slow,
                "times_opened": self.opened,
            }
        self._emit(events)
        return data

    def metrics(self) -> dict[str, Any]:
        """The documented metric names: ``circuit.state`` and ``circuit.requests.*``."""
        state = self.state
        return {
            "circuit.state": state.value,
            "circuit.requests.total": self.total,
            "circuit.requests.successful": self.successful,
            "circuit.requests.failed": self.failed,
            "circuit.requests.rejected": self.rejected,
            "circuit.requests.ignored": self.ignored,
            "circuit.requests.slow": self.slow,
            "circuit.opened": self.opened,
        }

    def __repr__(self) -> str:
        return (f"CircuitBreaker({self.name!r}, state={self._state.value}, "
                f"failures={self._consecutive}, total={self.total}, rejected={self.rejected})")


#: At most this many logical calls are remembered as failing (the oldest is forgotten first).
_MAX_FAILING_CALLS = 10_000


# -- registry -------------------------------------------------------------------------------

_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def get_circuit_breaker(name: str, config: CircuitBreakerConfig | None = None, *,
                        clock: Clock = system_clock) -> CircuitBreaker:
    """The process-wide breaker called ``name``, created with ``config`` on first use.

    Later calls return the same breaker; a different ``config`` for an existing name raises
    :class:`~llm_async.errors.ConfigurationError` rather than being silently ignored.
    """
    with _registry_lock:
        breaker = _registry.get(name)
        if breaker is None:
            breaker = _registry[name] = CircuitBreaker(name, config, clock=clock)
        elif config is not None and config != breaker.config:
            raise ConfigurationError(
                f"circuit breaker {name!r} already exists with another config")
        return breaker


def all_circuit_breakers() -> dict[str, CircuitBreaker]:
    """Every breaker of the registry, by name."""
    with _registry_lock:
        return dict(_registry)


def remove_circuit_breaker(name: str) -> CircuitBreaker | None:
    """Drop ``name`` from the registry (returns it, or ``None``)."""
    with _registry_lock:
        return _registry.pop(name, None)


# -- the layer ------------------------------------------------------------------------------

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
        self._names: dict[tuple[str | None, str], str] = {}

    def breaker_for(self, request: ChatRequest) -> AsyncBreaker:
        """The breaker guarding ``request``'s provider and model (created on first use)."""
        key = (request.provider, request.model)
        name = self._names.get(key)
        if name is None:
            name = f"{request.provider or 'default'}/{request.model}"
            if len(self._names) < 4096:
                self._names[key] = name
        breaker = self.breakers.get(name)
        if breaker is None:
            if self._factory is not None:
                breaker = self._factory(name, self.config)
            elif self.shared:
                breaker = get_circuit_breaker(name, self.config, clock=self.clock)
            else:
                breaker = CircuitBreaker(name, self.config, clock=self.clock)
            self.breakers[name] = breaker
        return breaker

    async def _acquire(self, breaker: AsyncBreaker, request: ChatRequest,
                       ctx: CallContext) -> BreakerPermit:
        try:
            call = ctx.call_id
            if (isinstance(breaker, CircuitBreaker)
                    and type(breaker).acquire_async is _LOCAL_ACQUIRE_ASYNC):
                return breaker.acquire(call)  # what acquire_async does, without a coroutine
            return await breaker.acquire_async(call)
        except CircuitBreakerOpenError as exc:
            if exc.provider is None:
                exc.provider = request.provider
            ctx.event("circuit_rejected", breaker=breaker.name, retry_after=exc.retry_after)
            raise

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
        breaker = self.breaker_for(request)
        permit = await self._acquire(breaker, request, ctx)
        started = self.clock.now()
        queued = ctx.queue_wait
        self._arm_recheck(request, ctx, breaker, permit)
        try:
            response = await self.inner.chat(request, ctx)
        except BaseException as exc:
            ctx.circuit_recheck = None
            await _record(permit, exc, self._elapsed(ctx, started, queued))
            raise
        ctx.circuit_recheck = None
        if isinstance(permit, CircuitPermit) and permit.local:
            permit.record(None, self._elapsed(ctx, started, queued))
        else:
            await _record(permit, None, self._elapsed(ctx, started, queued))
        return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Stream through the request's breaker; the outcome is recorded when it ends."""
        breaker = self.breaker_for(request)
        permit = await self._acquire(breaker, request, ctx)
        started = self.clock.now()
        queued = ctx.queue_wait
        first: float | None = None
        ended = False
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
            await _record(permit, exc, self._elapsed(ctx, started, queued))
            raise
        else:
            ended = True
            await _record(permit, None,
                          first if first is not None else self._elapsed(ctx, started, queued))
        finally:
            ctx.circuit_recheck = None
            if not ended:
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
