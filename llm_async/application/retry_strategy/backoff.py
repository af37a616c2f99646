"""Delay schedules: the pure policy ``strategy.delay(attempt, error, config)`` and its
exponential, linear, Fibonacci and adaptive schedules, with jitter."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError, ErrorKind
from .policy import RetryConfig, classify_error, retry_after_hint

__all__ = [
    "AdaptiveRetry",
    "ExponentialBackoffRetry",
    "FibonacciBackoffRetry",
    "LinearBackoffRetry",
    "RetryStrategy",
    "apply_jitter",
]


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
        hint = retry_after_hint(error)
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
