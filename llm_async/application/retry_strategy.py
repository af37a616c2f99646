"""Retries: pure delay policies, a retry budget, a small retry loop and the pipeline's RetryLayer.

The decision "retry this error after how long?" is a pure policy,
``strategy.delay(attempt, error, config) -> float | None`` (``None``: do not retry); the loops
(:class:`RetryExecutor` for plain callables, :class:`RetryLayer` in the pipeline) only sleep and
call again. ``attempt`` counts the attempts made so far, so the first retry asks with
``attempt=1``.

Schedules (``b = base_delay``, ``g = exponential_base``, ``n = attempt``), capped at
``max_delay`` and then jittered:

* :class:`ExponentialBackoffRetry`: ``b · g^(n−1)``
* :class:`LinearBackoffRetry`: ``b · n``
* :class:`FibonacciBackoffRetry`: ``b · F(n+1)``, ``F = 1, 1, 2, 3, 5, …`` (``b, 2b, 3b, 5b``)
* :class:`AdaptiveRetry`: exponential, rescaled by what it has learnt (see its docstring)

Jitter (``d`` = capped delay): ``"full"`` → ``U(0, d)``; ``"equal"`` → ``d/2 + U(0, d/2)``;
``"decorrelated"`` → ``min(max_delay, U(b, 3·previous))``; ``"none"`` → ``d``.

Which errors are retried is :func:`classify_error`: connection errors, timeouts, 408, 409, 429,
5xx and overloaded errors are; 400, 401, 403, 404, context length, invalid requests, budgets,
billing quotas, an open circuit and anything after a stream's first chunk are not. A provider's
``x-should-retry`` header wins (it sets ``error.retryable``). A ``Retry-After`` /
``retry-after-ms`` hint is honoured up to ``retry_after_cap``; a longer hint ends the retries,
so a fallback can move on instead of waiting minutes.
"""

from __future__ import annotations

import inspect
import math
import random
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Literal, ParamSpec, TypeVar, overload

from .._clock import Clock, system_clock
from ..context import CallContext
from ..domain.ports import Handler, Layer
from ..errors import ConfigurationError, ErrorKind, InvalidRequestError, LLMError
from ..types import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "AdaptiveRetry",
    "ErrorKind",
    "ErrorPolicy",
    "ExponentialBackoffRetry",
    "FibonacciBackoffRetry",
    "Jitter",
    "LinearBackoffRetry",
    "RetryBudget",
    "RetryConfig",
    "RetryExecutor",
    "RetryLayer",
    "RetryMetrics",
    "RetryStrategy",
    "apply_jitter",
    "classify_error",
    "get_retry_metrics",
    "is_retryable",
    "reset_retry_metrics",
]

P = ParamSpec("P")
T = TypeVar("T")

Jitter = Literal["none", "full", "equal", "decorrelated"]
_JITTERS: tuple[str, ...] = ("none", "full", "equal", "decorrelated")


#: The kinds the retry policy tells apart (policies and budgets are keyed by them); any other
#: retryable error is :attr:`ErrorKind.RETRYABLE`.
_RETRY_KINDS = frozenset({
    ErrorKind.RATE_LIMIT, ErrorKind.OVERLOADED, ErrorKind.SERVER, ErrorKind.TIMEOUT,
    ErrorKind.CONNECTION, ErrorKind.REQUEST_TIMEOUT, ErrorKind.CONFLICT, ErrorKind.PROTOCOL,
})


def classify_error(error: BaseException, config: RetryConfig | None = None) -> ErrorKind:
    """The :class:`~llm_async.errors.ErrorKind` retry sees in ``error``;
    :attr:`~llm_async.errors.ErrorKind.FATAL` means "never retry".

    Library errors follow ``error.retryable`` (which honours ``x-should-retry``) and their
    ``kind``; a stream error (after the first chunk) and an open circuit are always fatal.
    Foreign exceptions are retryable only when they are :class:`TimeoutError`,
    :class:`ConnectionError` or one of ``config.retry_on``.
    """
    if isinstance(error, LLMError):
        kind = error.kind
        if kind is ErrorKind.STREAM or kind is ErrorKind.CIRCUIT_OPEN or not error.retryable:
            return ErrorKind.FATAL
        return kind if kind in _RETRY_KINDS else ErrorKind.RETRYABLE
    if isinstance(error, TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(error, ConnectionError):
        return ErrorKind.CONNECTION
    if config is not None and config.retry_on and isinstance(error, config.retry_on):
        return ErrorKind.RETRYABLE
    return ErrorKind.FATAL


def is_retryable(error: BaseException, config: RetryConfig | None = None) -> bool:
    """Whether retrying ``error`` may help (see :func:`classify_error`)."""
    return classify_error(error, config) is not ErrorKind.FATAL


def _retry_after(error: BaseException) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return max(0.0, float(value))
    return None


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """Overrides for one error kind or type; ``None`` keeps the config's value.

    ``retry=False`` never retries it; ``max_attempts`` counts the first attempt too.
    """

    max_attempts: int | None = None
    base_delay: float | None = None
    max_delay: float | None = None
    retry: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigurationError("ErrorPolicy.max_attempts must be >= 1")
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigurationError(f"ErrorPolicy.{name} must be >= 0")


_NO_POLICY = ErrorPolicy()


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How many times and how long to retry.

    ``max_attempts`` includes the first attempt (``LLM_MAX_RETRIES`` + 1). ``jitter`` is
    ``"full"``, ``"equal"``, ``"decorrelated"`` or ``"none"`` (``True``/``False`` mean full/none).
    ``retry_after_cap``: the longest server hint honoured; a longer one ends the retries.
    ``deadline``: seconds from the first attempt after which no retry starts (``None``: none).
    ``policies``: per error kind (:class:`ErrorKind` or its value) or exception type,
    an :class:`ErrorPolicy`; the most specific exception type wins, then the kind.
    ``retry_on``: extra exception types :class:`RetryExecutor` retries (for plain callables).
    """

    max_attempts: int = 7
    base_delay: float = 0.5
    max_delay: float = 20.0
    exponential_base: float = 2.0
    jitter: Jitter | bool = "full"
    retry_after_cap: float = 60.0
    deadline: float | None = None
    policies: Mapping[Any, ErrorPolicy] = field(default_factory=dict)
    retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if not self.base_delay >= 0:
            raise ConfigurationError(f"base_delay must be >= 0, got {self.base_delay!r}")
        if not self.max_delay >= self.base_delay:
            raise ConfigurationError("max_delay must be >= base_delay")
        if not self.exponential_base >= 1:
            raise ConfigurationError("exponential_base must be >= 1")
        if not self.retry_after_cap >= 0:
            raise ConfigurationError("retry_after_cap must be >= 0")
        if self.deadline is not None and not self.deadline > 0:
            raise ConfigurationError("deadline must be > 0 or None")
        jitter: Any = self.jitter
        if jitter is True:
            object.__setattr__(self, "jitter", "full")
        elif jitter is False:
            object.__setattr__(self, "jitter", "none")
        elif jitter not in _JITTERS:
            raise ConfigurationError(f"jitter must be one of {_JITTERS}, got {jitter!r}")
        policies: dict[Any, ErrorPolicy] = {}
        for key, policy in dict(self.policies).items():
            if not isinstance(policy, ErrorPolicy):
                raise ConfigurationError(f"policies[{key!r}] must be an ErrorPolicy")
            if isinstance(key, str) and not isinstance(key, ErrorKind):
                try:
                    key = ErrorKind(key)
                except ValueError:
                    raise ConfigurationError(f"unknown error kind {key!r}") from None
            elif not isinstance(key, ErrorKind) and not (
                    isinstance(key, type) and issubclass(key, BaseException)):
                raise ConfigurationError(f"policies key {key!r} is not an ErrorKind or exception")
            policies[key] = policy
        object.__setattr__(self, "policies", policies)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RetryConfig:
        """From :class:`~llm_async.config.Settings`: ``LLM_MAX_RETRIES`` and
        ``LLM_RETRY_BACKOFF_BASE``."""
        values: dict[str, Any] = {
            "max_attempts": int(settings.max_retries) + 1,
            "exponential_base": float(settings.retry_backoff_base),
        }
        values.update(overrides)
        return cls(**values)

    def policy_for(self, error: BaseException, kind: ErrorKind) -> ErrorPolicy:
        """The :class:`ErrorPolicy` that applies to ``error`` (an empty one when none does)."""
        if not self.policies:
            return _NO_POLICY
        for klass in type(error).__mro__:
            policy = self.policies.get(klass)
            if policy is not None:
                return policy
        return self.policies.get(kind, _NO_POLICY)


def apply_jitter(mode: str, delay: float, *, base: float, cap: float,
                 previous: float | None, rng: random.Random) -> float:
    """Jitter a capped delay (AWS "Exponential Backoff and Jitter" formulas)."""
    if mode == "full":
        return rng.uniform(0.0, delay)
    if mode == "equal":
        return delay / 2 + rng.uniform(0.0, delay / 2)
    if mode == "decorrelated":
        prev = base if previous is None else previous
        return min(cap, rng.uniform(base, max(base, prev * 3)))
    return delay


class RetryStrategy:
    """Base of the strategies: the retry decision, with the schedule left to :meth:`backoff`.

    ``delay(attempt, error, config)`` is the pure policy (given the random source): it
    classifies ``error``, applies the per-error policy, the attempt limit and a server hint,
    then the schedule and the jitter. :meth:`observe` lets learning strategies see outcomes.
    """

    name = "base"

    def __init__(self, config: RetryConfig | None = None, *,
                 rng: random.Random | None = None) -> None:
        self.config = config or RetryConfig()
        self.rng = rng or random.Random()

    def backoff(self, attempt: int, base: float, config: RetryConfig, kind: ErrorKind) -> float:
        """The un-jittered, uncapped delay before retry number ``attempt``."""
        raise NotImplementedError

    def attempts_allowed(self, kind: ErrorKind, max_attempts: int) -> int:
        """The attempt limit for errors of ``kind`` (learning strategies lower it)."""
        return max_attempts

    def delay(self, attempt: int, error: BaseException, config: RetryConfig | None = None,
              *, previous: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up.

        ``attempt`` is the number of attempts made so far; ``previous`` the last delay (used by
        decorrelated jitter).
        """
        cfg = config or self.config
        kind = classify_error(error, cfg)
        if kind is ErrorKind.FATAL:
            return None
        policy = cfg.policy_for(error, kind)
        if not policy.retry:
            return None
        limit = self.attempts_allowed(kind, policy.max_attempts or cfg.max_attempts)
        if attempt >= limit:
            return None
        hint = _retry_after(error)
        if hint is not None:
            if hint > cfg.retry_after_cap:
                return None
            # Never earlier than asked; up to 10% later so a crowd does not return at once.
            return hint * (1.0 + 0.1 * self.rng.random())
        base = cfg.base_delay if policy.base_delay is None else policy.base_delay
        cap = cfg.max_delay if policy.max_delay is None else policy.max_delay
        raw = min(cap, self.backoff(attempt, base, cfg, kind))
        return apply_jitter(str(cfg.jitter), raw, base=base, cap=cap, previous=previous,
                            rng=self.rng)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether :meth:`delay` would retry ``error`` after ``attempt`` attempts."""
        return self.delay(attempt, error) is not None

    def observe(self, kind: ErrorKind, succeeded: bool, recovery: float | None) -> None:
        """Learn from a finished call that failed first with ``kind`` (no-op here).

        ``recovery``: seconds from that first failure to the start of the attempt that succeeded.
        """

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(max_attempts={c.max_attempts}, "
                f"base_delay={c.base_delay}, jitter={c.jitter!r})")


class ExponentialBackoffRetry(RetryStrategy):
    """``base_delay · exponential_base^(attempt−1)``, capped and jittered."""

    name = "exponential"

    def backoff(self, attempt: int, base: float, config: RetryConfig, kind: ErrorKind) -> float:
        """``base · exponential_base^(attempt−1)``."""
        exponent = min(attempt - 1, 1000)
        try:
            return base * config.exponential_base ** exponent
        except OverflowError:
            return math.inf


class LinearBackoffRetry(RetryStrategy):
    """``base_delay · attempt``, capped and jittered."""

    name = "linear"

    def backoff(self, attempt: int, base: float, config: RetryConfig, kind: ErrorKind) -> float:
        """``base · attempt``."""
        return base * attempt


def _fibonacci(n: int) -> int:
    a, b = 1, 1
    for _ in range(min(n, 90) - 1):
        a, b = b, a + b
    return a


class FibonacciBackoffRetry(RetryStrategy):
    """``base_delay · F(attempt+1)``: ``b, 2b, 3b, 5b, 8b, …``, capped and jittered."""

    name = "fibonacci"

    def backoff(self, attempt: int, base: float, config: RetryConfig, kind: ErrorKind) -> float:
        """``base · F(attempt+1)``."""
        return base * _fibonacci(attempt + 1)


@dataclass(slots=True)
class _KindStats:
    success_rate: float = 1.0
    recovery: float | None = None
    samples: int = 0


class AdaptiveRetry(ExponentialBackoffRetry):
    """Exponential backoff that learns, per error kind, how long faults last and whether
    retrying helps.

    For each :class:`ErrorKind` ``c`` it keeps two exponentially weighted averages
    (weight ``alpha``, default 0.2), updated when a call that first failed with ``c`` ends:

    * ``ŝ_c``: the share of such calls that eventually succeeded (starts at 1);
    * ``r̂_c``: the recovery time, seconds from the first failure to the start of the attempt
      that succeeded (unknown until a call recovers).

    With ``M`` = the configured ``max_attempts``, ``raw_n = base · g^(n−1)``:

    * attempts allowed: ``m_c = 1 + max(1, round((M − 1) · ŝ_c))`` — when retries stop
      helping (a provider is down) calls give up sooner, but always keep one retry to learn;
    * delay: ``raw_n · clamp(r̂_c / Σ_{k=1}^{m_c−1} raw_k, min_scale, max_scale)`` — the schedule
      is stretched or shrunk so that its total wait matches the observed recovery time.

    A server's ``Retry-After`` still wins. The delay is then capped and jittered as usual.
    """

    name = "adaptive"

    def __init__(self, config: RetryConfig | None = None, *, alpha: float = 0.2,
                 min_scale: float = 0.25, max_scale: float = 4.0,
                 rng: random.Random | None = None) -> None:
        super().__init__(config, rng=rng)
        if not 0 < alpha <= 1:
            raise ConfigurationError("alpha must be in (0, 1]")
        if not 0 < min_scale <= max_scale:
            raise ConfigurationError("need 0 < min_scale <= max_scale")
        self.alpha = alpha
        self.min_scale = min_scale
        self.max_scale = max_scale
        self._stats: dict[ErrorKind, _KindStats] = {}
        self._lock = threading.Lock()

    def attempts_allowed(self, kind: ErrorKind, max_attempts: int) -> int:
        """``1 + max(1, round((max_attempts − 1) · ŝ_c))`` once ``c`` has been observed."""
        stats = self._stats.get(kind)
        if stats is None or max_attempts <= 1:
            return max_attempts
        return 1 + max(1, round((max_attempts - 1) * stats.success_rate))

    def backoff(self, attempt: int, base: float, config: RetryConfig, kind: ErrorKind) -> float:
        """The exponential delay, rescaled so the schedule's total matches ``r̂_c``."""
        raw = super().backoff(attempt, base, config, kind)
        stats = self._stats.get(kind)
        if stats is None or stats.recovery is None:
            return raw
        retries = max(1, self.attempts_allowed(kind, config.max_attempts) - 1)
        total = sum(super(AdaptiveRetry, self).backoff(k, base, config, kind)
                    for k in range(1, retries + 1))
        if not total > 0:
            return raw
        scale = min(self.max_scale, max(self.min_scale, stats.recovery / total))
        return raw * scale

    def observe(self, kind: ErrorKind, succeeded: bool, recovery: float | None) -> None:
        """Update ``ŝ_c`` and ``r̂_c`` (exponentially weighted, weight ``alpha``)."""
        if kind is ErrorKind.FATAL:
            return
        a = self.alpha
        with self._lock:
            stats = self._stats.setdefault(kind, _KindStats())
            stats.samples += 1
            stats.success_rate = (1 - a) * stats.success_rate + a * (1.0 if succeeded else 0.0)
            if succeeded and recovery is not None:
                stats.recovery = recovery if stats.recovery is None else \
                    (1 - a) * stats.recovery + a * recovery

    def statistics(self) -> dict[str, dict[str, Any]]:
        """What it has learnt, per error kind: success rate, recovery time, samples."""
        with self._lock:
            return {kind.value: {"success_rate": s.success_rate, "recovery": s.recovery,
                                 "samples": s.samples}
                    for kind, s in self._stats.items()}


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


_GLOBAL_METRICS = RetryMetrics()


def get_retry_metrics() -> dict[str, Any]:
    """Process-wide retry counters, summed over every executor and retry layer."""
    return _GLOBAL_METRICS.snapshot()


def reset_retry_metrics() -> None:
    """Zero the process-wide retry counters (tests, dashboards)."""
    _GLOBAL_METRICS.reset()


class _Run:
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
                if self.metrics is not _GLOBAL_METRICS:
                    _GLOBAL_METRICS.record_budget_exhausted()
                return None
            self.acquired += taken
        self.previous = delay
        self.metrics.record_retry(delay)
        if self.metrics is not _GLOBAL_METRICS:
            _GLOBAL_METRICS.record_retry(delay)
        return delay

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        if self.config.deadline is None:
            return None
        return self.config.deadline - (self.clock.now() - self.started)

    def _finish(self, ok: bool) -> None:
        retried = self.attempt > 1
        self.metrics.record_call(retried=retried, ok=ok)
        if self.metrics is not _GLOBAL_METRICS:
            _GLOBAL_METRICS.record_call(retried=retried, ok=ok)
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

    def _run(self) -> _Run:
        return _Run(self.strategy, self.strategy.config, self.budget, self.stats, self.clock)

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


class RetryLayer(Layer):
    """The pipeline's retry loop. Every attempt passes back through the layers below it
    (circuit breaker, limits), so retries never burst past them, and an open breaker ends the
    loop at once (``CircuitBreakerOpenError`` is never retried).

    Streams are retried only until the first chunk reaches the caller — including an
    in-stream error that arrives before any content (the transport raises the typed error
    then). After the first chunk a failure is a ``StreamError`` and is never retried.

    Each attempt sets ``ctx.attempt`` (1-based); each retry
    emits the event ``"retry"`` (``attempt``, ``delay``, ``error``, ``status``). Per call,
    ``options={"retry": False}`` disables retries and ``options={"retry": RetryConfig(...)}``
    replaces the config. ``budget="per_provider"`` (the default) gives each provider its own
    :class:`RetryBudget`; pass one to share it, or ``None`` for no budget. When
    ``config.deadline`` is set and the request carries a ``timeout``, each attempt's total
    timeout is cut to the time left.
    """

    def __init__(self, inner: Handler, config: RetryConfig | None = None, *,
                 strategy: RetryStrategy | None = None,
                 budget: RetryBudget | Literal["per_provider"] | None = "per_provider",
                 clock: Clock = system_clock) -> None:
        super().__init__(inner)
        self.strategy = strategy or ExponentialBackoffRetry(config or RetryConfig())
        self.config = config or self.strategy.config
        self._budget = budget
        self._budgets: dict[str, RetryBudget] = {}
        self.clock = clock
        self.stats = RetryMetrics()

    def budget_for(self, provider: str | None) -> RetryBudget | None:
        """The :class:`RetryBudget` that retries for ``provider`` draw from (or ``None``)."""
        if self._budget is None or isinstance(self._budget, RetryBudget):
            return self._budget
        key = provider or ""
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = RetryBudget()
        return budget

    def _config_for(self, request: ChatRequest) -> RetryConfig:
        option = request.options.get("retry")
        if option is None or option is True:
            return self.config
        if option is False:
            return replace(self.config, max_attempts=1)
        if isinstance(option, RetryConfig):
            return option
        raise InvalidRequestError("options['retry'] must be True, False or a RetryConfig",
                                  field="options.retry")

    def _run(self, request: ChatRequest) -> _Run:
        return _Run(self.strategy, self._config_for(request), self.budget_for(request.provider),
                    self.stats, self.clock)

    @staticmethod
    def _attempt_request(request: ChatRequest, run: _Run) -> ChatRequest:
        remaining = run.remaining()
        timeout = request.timeout
        if remaining is None or timeout is None or remaining <= 0:
            return request
        if timeout.total is not None and timeout.total <= remaining:
            return request
        return request.model_copy(update={"timeout": replace(timeout, total=remaining)})

    @staticmethod
    def _report(ctx: CallContext, attempt: int, delay: float, error: BaseException) -> None:
        ctx.event("retry", attempt=attempt, delay=delay, error=type(error).__name__,
                  status=getattr(error, "status", None))

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """Call the inner handler, retrying failures the strategy allows."""
        run = self._run(request)
        deadline = run.config.deadline is not None
        while True:
            attempt = run.attempt = run.attempt + 1
            ctx.attempt = attempt
            try:
                response = await self.inner.chat(
                    self._attempt_request(request, run) if deadline else request, ctx)
            except Exception as exc:
                delay = run.next_delay(exc)
                if delay is None:
                    run.failed()
                    raise
                self._report(ctx, attempt, delay, exc)
                await self.clock.sleep(delay)
                continue
            run.succeeded()
            return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Stream from the inner handler, retrying only until the first chunk."""
        run = self._run(request)
        while True:
            attempt = ctx.attempt = run.begin()
            committed = False
            try:
                async with aclosing(
                        self.inner.stream(self._attempt_request(request, run), ctx)) as chunks:
                    async for chunk in chunks:
                        committed = True
                        run.succeeded()  # the commit point: no retry after this
                        yield chunk
                        # Committed: pass the rest through without further checks.
                        async for chunk in chunks:
                            yield chunk
                        break
            except Exception as exc:
                if committed:
                    raise
                delay = run.next_delay(exc)
                if delay is None:
                    run.failed()
                    raise
                self._report(ctx, attempt, delay, exc)
                await self.clock.sleep(delay)
                continue
            if not committed:
                run.succeeded()  # an empty stream that ended cleanly
            return

    def metrics(self) -> dict[str, Any]:
        """This layer's counters (``retry.*`` and friendly names) and its budgets."""
        data = self.stats.snapshot()
        if isinstance(self._budget, RetryBudget):
            data["budget"] = self._budget.statistics()
        elif self._budgets:
            data["budgets"] = {k or "default": b.statistics() for k, b in self._budgets.items()}
        return data

    def __repr__(self) -> str:
        return f"RetryLayer({self.strategy!r}, inner={type(self.inner).__name__})"
