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

from ...errors import CircuitBreakerOpenError
from .breaker import CircuitBreaker
from .config import CircuitBreakerConfig, CircuitState, StateListener, default_is_failure
from .layer import CircuitBreakerLayer
from .permit import AsyncBreaker, BreakerPermit, CircuitPermit, PermitOwner
from .registry import all_circuit_breakers, get_circuit_breaker, remove_circuit_breaker

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
