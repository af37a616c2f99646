"""The retry loop: one logical call's state (:class:`RetryRun`) and
:class:`RetryExecutor`, which retries plain callables and coroutine functions."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from ..._clock import Clock, system_clock
from ...errors import ErrorKind
from .backoff import ExponentialBackoffRetry, RetryStrategy
from .budget import GLOBAL_METRICS, RetryBudget, RetryMetrics
from .policy import RetryConfig, classify_error

__all__ = [
    "RetryExecutor",
]


P = ParamSpec("P")
T = TypeVar("T")


class RetryRun:
    """The state of one logical call's retry loop."""

    __slots__ = ("acquired", "attempt", "budget", "clock", "config", "first_failure_at",
                 "first_kind", "metrics", "previous", "started", "strategy")

    def __init__(self, strategy: RetryStrategy, config: RetryConfig, budget: RetryBudget | None,
                 metrics: RetryMetrics, clock: Clock) -> None:
        self.strategy = strategy
        self.config = config
        self.budget = budget
        self.metrics = metrics
        self.clock = clock
        # Only a deadline needs the start time; skip the clock read otherwise.
        self.started = clock.now() if config.deadline is not None else 0.0
        self.attempt = 0
        self.previous: float | None = None
        self.first_kind: ErrorKind | None = None
        self.first_failure_at = 0.0
        self.acquired = 0

    def begin(self) -> int:
        self.attempt += 1
        return self.attempt

    def next_delay(self, error: BaseException) -> float | None:
        """The wait before the next attempt, or ``None``: give up and raise ``error``."""
        delay = self.strategy.delay(self.attempt, error, self.config, previous=self.previous)
        if delay is None:
            return None
        kind = classify_error(error, self.config)
        now = self.clock.now()
        if self.first_kind is None:
            self.first_kind = kind
            self.first_failure_at = now
        deadline = self.config.deadline
        if deadline is not None and (now - self.started) + delay >= deadline:
            return None
        if self.budget is not None:
            taken = self.budget.acquire(kind)
            if taken is None:
                self.metrics.record_budget_exhausted()
                if self.metrics is not GLOBAL_METRICS:
                    GLOBAL_METRICS.record_budget_exhausted()
                return None
            self.acquired += taken
        self.previous = delay
        self.metrics.record_retry(delay)
        if self.metrics is not GLOBAL_METRICS:
            GLOBAL_METRICS.record_retry(delay)
        return delay

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        if self.config.deadline is None:
            return None
        return self.config.deadline - (self.clock.now() - self.started)

    def _finish(self, ok: bool) -> None:
        retried = self.attempt > 1
        self.metrics.record_call(retried=retried, ok=ok)
        if self.metrics is not GLOBAL_METRICS:
            GLOBAL_METRICS.record_call(retried=retried, ok=ok)
        if self.first_kind is not None:
            recovery = (self.clock.now() - self.first_failure_at) if ok else None
            self.strategy.observe(self.first_kind, ok, recovery)

    def succeeded(self) -> None:
        if self.budget is not None:
            self.budget.on_success(self.acquired)
        self._finish(True)

    def failed(self) -> None:
        self._finish(False)


class RetryExecutor:
    """Runs a callable with retries: ``RetryExecutor(strategy).execute(fn, *args)``.

    ``execute`` runs a plain function and sleeps with ``sync_sleep`` (``time.sleep``); given a
    coroutine function it returns an awaitable instead (the same as :meth:`execute_async`),
    which sleeps with ``clock.sleep``. ``budget`` (optional) is a :class:`RetryBudget` shared
    with other executors. Exceptions are classified with :func:`classify_error`.
    """

    def __init__(self, strategy: RetryStrategy | None = None, *,
                 budget: RetryBudget | None = None, clock: Clock = system_clock,
                 sync_sleep: Callable[[float], None] = time.sleep,
                 metrics: RetryMetrics | None = None) -> None:
        self.strategy = strategy or ExponentialBackoffRetry()
        self.budget = budget
        self.clock = clock
        self.sync_sleep = sync_sleep
        self.stats = metrics or RetryMetrics()

    @property
    def config(self) -> RetryConfig:
        """The strategy's :class:`RetryConfig`."""
        return self.strategy.config

    def _run(self) -> RetryRun:
        return RetryRun(self.strategy, self.strategy.config, self.budget, self.stats, self.clock)

    @overload
    def execute(self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args,
                **kwargs: P.kwargs) -> Coroutine[Any, Any, T]: ...

    @overload
    def execute(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    def execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` until it succeeds or the policy gives up (then the last
        error is raised)."""
        if inspect.iscoroutinefunction(fn):
            return self.execute_async(fn, *args, **kwargs)
        run = self._run()
        while True:
            run.begin()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                delay = run.next_delay(exc)
                if delay is None:
                    run.failed()
                    raise
                self.sync_sleep(delay)
                continue
            run.succeeded()
            return result

    async def execute_async(self, fn: Callable[P, Awaitable[T]] | Callable[P, T],
                            *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` with retries (a plain function's result is returned
        as-is)."""
        run = self._run()
        while True:
            run.begin()
            try:
                result: Any = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                delay = run.next_delay(exc)
                if delay is None:
                    run.failed()
                    raise
                await self.clock.sleep(delay)
                continue
            run.succeeded()
            return result  # type: ignore[no-any-return]

    def metrics(self) -> dict[str, Any]:
        """This executor's counters (``retry.*`` and friendly names)."""
        return self.stats.snapshot()

    def __repr__(self) -> str:
        return f"RetryExecutor({self.strategy!r}, {self.stats!r})"
