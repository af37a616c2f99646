"""The sliding time window of call outcomes (calls, failures, slow calls) in time buckets,
and the adaptive thresholds learnt from it."""

from __future__ import annotations

import math

from .config import CircuitBreakerConfig

#: At most this many logical calls are remembered as failing (the oldest is forgotten first).
MAX_FAILING_CALLS = 10_000


class OutcomeWindow:
    """Calls, failures and slow calls over the last ``window`` seconds, in time buckets.

    Each logical call counts once: a call named ``call`` whose latest outcome was a failure is
    remembered, and its next outcome (a retry's) replaces that failure instead of adding to it.
    """

    __slots__ = ("_buckets", "_epoch", "_failed", "_failing", "_slow", "_total", "_width")

    def __init__(self, window: float, buckets: int) -> None:
        self._width = window / buckets
        # [epoch, total, failed, slow] per bucket
        self._buckets: list[list[int]] = [[-1, 0, 0, 0] for _ in range(buckets)]
        # The sums of the live buckets as seen from bucket ``_epoch`` (None: recompute). Kept
        # up to date by ``add`` within that bucket, so ``totals`` needs no loop per call.
        self._epoch: int | None = None
        self._total = self._failed = self._slow = 0
        # Calls whose latest outcome was a failure: call id -> epoch of that failure.
        self._failing: dict[str, int] = {}

    def add(self, now: float, failed: bool, slow: bool, call: str | None = None) -> None:
        """Count one outcome; for a named ``call`` it replaces the call's earlier failure."""
        if call is not None and self._failing:
            earlier = self._failing.pop(call, None)
            if earlier is not None:
                self._retract(earlier)
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
        if failed and call is not None:
            if len(self._failing) >= MAX_FAILING_CALLS:
                del self._failing[next(iter(self._failing))]
            self._failing[call] = epoch

    def _retract(self, epoch: int) -> None:
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
        self._failing.clear()


class AdaptiveThresholds:
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
