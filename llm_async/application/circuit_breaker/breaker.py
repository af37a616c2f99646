"""The in-memory, asyncio- and thread-safe :class:`CircuitBreaker`."""

from __future__ import annotations

import inspect
import logging
import math
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from ..._clock import Clock, system_clock
from ...errors import (
    CircuitBreakerOpenError,
    detached,
)
from .config import CircuitBreakerConfig, CircuitState, StateListener
from .permit import CircuitPermit
from .window import AdaptiveThresholds, OutcomeWindow

__all__ = [
    "CircuitBreaker",
]


logger = logging.getLogger("llm_async.circuit")

P = ParamSpec("P")
T = TypeVar("T")


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
        self._window = OutcomeWindow(self.config.window, self.config.window_buckets)
        # ``total`` at the last success: only a call admitted after it extends a failure streak.
        self._streak_mark = 0
        self._last_failure: BaseException | None = None
        self._adaptive = AdaptiveThresholds(self.config)
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
                self._window.add(now, False, slow, permit.call)
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
        self._window.add(now, failed, slow, permit.call)
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
