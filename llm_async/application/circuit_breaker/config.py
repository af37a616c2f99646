"""What a breaker counts and when it opens: :class:`CircuitBreakerConfig`, the default
failure classification and the states."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ...errors import (
    ConfigurationError,
    ErrorKind,
    LLMError,
    StreamError,
)

__all__ = [
    "CircuitBreakerConfig",
    "CircuitState",
    "StateListener",
    "default_is_failure",
]


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
