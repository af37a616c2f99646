"""What retries may cost and what they did: the shared :class:`RetryBudget` and the
:class:`RetryMetrics` counters (with the process-wide ones)."""

from __future__ import annotations

import threading
from typing import Any

from ...errors import ConfigurationError, ErrorKind

__all__ = [
    "RetryBudget",
    "RetryMetrics",
    "get_retry_metrics",
    "reset_retry_metrics",
]


class RetryBudget:
    """A retry quota shared by many calls, so that retries cannot multiply load on a failing
    provider (AWS SDK "standard" mode; Tower's budget).

    The bucket starts full (``capacity``, 500). Every retry takes ``retry_cost`` (5) tokens,
    ``timeout_retry_cost`` (10) after a timeout; an empty bucket means "do not retry". A call
    that succeeds at once puts back ``success_refund`` (1); one that succeeds after retries puts
    back what its retries took. So when a provider is down, at most ~100 retries happen before
    calls fail fast, and the budget refills as soon as calls succeed again. Thread-safe.
    """

    def __init__(self, capacity: int = 500, *, retry_cost: int = 5,
                 timeout_retry_cost: int = 10, success_refund: int = 1) -> None:
        if capacity < 1 or retry_cost < 0 or timeout_retry_cost < 0 or success_refund < 0:
            raise ConfigurationError("RetryBudget values must be positive")
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_retry_cost = timeout_retry_cost
        self.success_refund = success_refund
        self._tokens = capacity
        self.exhausted = 0
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        """Tokens left."""
        return self._tokens

    def acquire(self, kind: ErrorKind) -> int | None:
        """Take the cost of one retry after an error of ``kind``; ``None`` when it is empty."""
        cost = self.timeout_retry_cost if kind is ErrorKind.TIMEOUT else self.retry_cost
        with self._lock:
            if self._tokens < cost:
                self.exhausted += 1
                return None
            self._tokens -= cost
            return cost

    def on_success(self, acquired: int = 0) -> None:
        """A call succeeded; ``acquired`` is what its retries took (0: it needed none)."""
        if not acquired and self._tokens >= self.capacity:
            return  # already full: the refund would be capped away (the common case)
        with self._lock:
            self._tokens = min(self.capacity,
                               self._tokens + (acquired if acquired else self.success_refund))

    def statistics(self) -> dict[str, int]:
        """``{"available", "capacity", "exhausted"}``."""
        return {"available": self._tokens, "capacity": self.capacity,
                "exhausted": self.exhausted}

    def __repr__(self) -> str:
        return f"RetryBudget({self._tokens}/{self.capacity})"


class RetryMetrics:
    """Counters of a retry loop (thread-safe), with the documented metric names.

    ``retry.attempts``: retries made (attempts after the first); ``retry.successful``: calls
    that succeeded after at least one retry; ``retry.failed``: calls that failed after at least
    one retry; ``retry.delay``: seconds spent waiting between attempts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.attempts = 0
        self.successful = 0
        self.failed = 0
        self.delay = 0.0
        self.budget_exhausted = 0

    def record_retry(self, delay: float) -> None:
        """Count one retry and the ``delay`` waited before it."""
        with self._lock:
            self.attempts += 1
            self.delay += delay

    def record_call(self, *, retried: bool, ok: bool) -> None:
        """Count one finished logical call."""
        with self._lock:
            self.calls += 1
            if retried:
                if ok:
                    self.successful += 1
                else:
                    self.failed += 1

    def record_budget_exhausted(self) -> None:
        """Count a retry refused by an empty budget."""
        with self._lock:
            self.budget_exhausted += 1

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self.calls = self.attempts = self.successful = self.failed = 0
            self.budget_exhausted = 0
            self.delay = 0.0

    def snapshot(self) -> dict[str, Any]:
        """The documented ``retry.*`` names plus friendly aliases and extra counters."""
        with self._lock:
            return {
                "retry.attempts": self.attempts,
                "retry.successful": self.successful,
                "retry.failed": self.failed,
                "retry.delay": self.delay,
                "total_attempts": self.attempts,
                "successful_retries": self.successful,
                "failed_retries": self.failed,
                "total_delay": self.delay,
                "calls": self.calls,
                "budget_exhausted": self.budget_exhausted,
            }

    def __repr__(self) -> str:
        return (f"RetryMetrics(calls={self.calls}, retries={self.attempts}, "
                f"successful={self.successful}, failed={self.failed})")


GLOBAL_METRICS = RetryMetrics()


def get_retry_metrics() -> dict[str, Any]:
    """Process-wide retry counters, summed over every executor and retry layer."""
    return GLOBAL_METRICS.snapshot()


def reset_retry_metrics() -> None:
    """Zero the process-wide retry counters (tests, dashboards)."""
    GLOBAL_METRICS.reset()
