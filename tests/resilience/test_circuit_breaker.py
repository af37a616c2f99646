"""CircuitBreaker semantics with an injected clock: no test sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import threading

import pytest

from llm_async import FakeClock
from llm_async.application.circuit_breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerOpenError,
    CircuitState,
    all_circuit_breakers,
    default_is_failure,
    get_circuit_breaker,
    remove_circuit_breaker,
)
from llm_async.config import Settings
from llm_async.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitBreakerOpenError as TreeError,
    ConfigurationError,
    ContextLengthExceededError,
    NotFoundError,
    OverloadedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamError,
)

CONSECUTIVE = CircuitBreakerConfig(failure_threshold=3, success_threshold=2, timeout=10.0,
                                   failure_rate_threshold=None, jitter=0.0)


def _fail(breaker: CircuitBreaker, error: BaseException | None = None) -> None:
    breaker.acquire().record(error or ServerError("500"))


def _ok(breaker: CircuitBreaker, duration: float | None = None) -> None:
    breaker.acquire().success(duration)


def test_open_error_is_the_one_from_the_error_tree() -> None:
    assert CircuitBreakerOpenError is TreeError


def test_consecutive_failures_open_and_success_resets_the_count() -> None:
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=FakeClock())
    _fail(breaker)
    _fail(breaker)
    _ok(breaker)
    _fail(breaker)
    _fail(breaker)
    assert breaker.state is CircuitState.CLOSED
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitBreakerOpenError) as info:
        breaker.acquire()
    assert info.value.name == "svc" and info.value.retry_after == 10.0
    assert breaker.metrics()["circuit.requests.rejected"] == 1


def test_caller_errors_are_ignored_not_counted() -> None:
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=FakeClock())
    for error in (BadRequestError("400"), AuthenticationError("401"), NotFoundError("404"),
                  ContextLengthExceededError("long"), QuotaExceededError("quota"),
                  RateLimitError("429")):
        _fail(breaker, error)
        _fail(breaker, error)
        _fail(breaker, error)
    assert breaker.state is CircuitState.CLOSED
    status = breaker.status()
    assert status["ignored_requests"] == 18 and status["failed_requests"] == 0
    # ignored calls do not reset a run of real failures either
    _fail(breaker)
    _fail(breaker, BadRequestError("400"))
    _fail(breaker)
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN


@pytest.mark.parametrize("error", [
    ServerError("500"), OverloadedError("529"), APIConnectionError("reset"),
    APITimeoutError("slow", phase="idle"), StreamError("cut", cause=APIConnectionError("x")),
    RuntimeError("a plain function's failure"),
], ids=lambda e: type(e).__name__)
def test_counted_failures(error: BaseException) -> None:
    assert default_is_failure(error) is True


def test_classification_edges() -> None:
    assert default_is_failure(RateLimitError("429"), count_rate_limits=True) is True
    assert default_is_failure(StreamError("x", cause=BadRequestError("400"))) is False
    assert default_is_failure(asyncio.CancelledError()) is None
    config = CircuitBreakerConfig(is_failure=lambda e: isinstance(e, KeyError))
    assert config.classify(KeyError("k")) is True and config.classify(ServerError("x")) is False


def test_half_open_probes_are_bounded_and_close_after_successes() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=1, success_threshold=2, timeout=5.0,
                               half_open_max_calls=2, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN
    clock.advance(4.9)
    with pytest.raises(CircuitBreakerOpenError):
        breaker.acquire()
    clock.advance(0.1)
    first = breaker.acquire()
    second = breaker.acquire()
    assert breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitBreakerOpenError) as info:
        breaker.acquire()  # only two probes at once
    assert info.value.retry_after is None
    first.success()
    third = breaker.acquire()  # a probe slot came free
    second.success()
    assert breaker.state is CircuitState.CLOSED
    third.success()  # a stale probe of the finished half-open period changes nothing
    assert breaker.state is CircuitState.CLOSED
    assert breaker.status()["half_open_in_flight"] == 0


def test_failed_probe_reopens_with_exponential_backoff_and_closing_resets_it() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=1, success_threshold=1, timeout=2.0,
                               backoff_multiplier=3.0, max_timeout=30.0, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    durations = []
    _fail(breaker)
    for _ in range(4):
        durations.append(breaker.status()["retry_after"])
        clock.advance(durations[-1])
        _fail(breaker)  # the probe fails: open again, for longer
    assert durations == [2.0, 6.0, 18.0, 30.0]
    clock.advance(30.0)
    _ok(breaker)
    assert breaker.state is CircuitState.CLOSED
    _fail(breaker)
    assert breaker.status()["retry_after"] == 2.0  # trips were forgotten on close


def test_open_duration_jitter_stays_in_bounds() -> None:
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=10.0, jitter=0.2)
    seen = []
    for seed in range(50):
        breaker = CircuitBreaker("svc", cfg, clock=FakeClock(), rng=random.Random(seed))
        _fail(breaker)
        seen.append(breaker.status()["retry_after"])
    assert all(8.0 <= d <= 12.0 for d in seen)
    assert len(set(seen)) > 40  # spread, so breakers tripped together do not probe together


def test_retry_after_on_the_tripping_error_lengthens_the_open_time() -> None:
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=5.0, jitter=0.0,
                               count_rate_limits=True)
    breaker = CircuitBreaker("svc", cfg, clock=FakeClock())
    _fail(breaker, RateLimitError("slow", retry_after=42.0))
    assert breaker.status()["retry_after"] == 42.0


def test_failure_rate_window_with_minimum_calls() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=100, failure_rate_threshold=0.5,
                               minimum_calls=10, window=10.0, window_buckets=10, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    for _ in range(4):
        _fail(breaker)
        _ok(breaker)
    _fail(breaker)
    assert breaker.state is CircuitState.CLOSED  # 5 of 9: under the minimum
    assert breaker.status()["failure_rate"] is None
    _ok(breaker)
    assert breaker.state is CircuitState.OPEN  # 5 of 10 = 50% once the minimum is reached


def test_window_forgets_old_calls() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=100, failure_rate_threshold=0.5,
                               minimum_calls=4, window=10.0, window_buckets=5, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    for _ in range(3):
        _fail(breaker)
    clock.advance(11.0)  # those failures slide out of the window
    for _ in range(3):
        _ok(breaker)
    _fail(breaker)
    status = breaker.status()
    assert status["calls_in_window"] == 4 and status["failure_rate"] == 0.25
    assert breaker.state is CircuitState.CLOSED


def test_slow_calls_open_the_breaker() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=100, slow_call_threshold=2.0,
                               slow_call_rate_threshold=0.6, minimum_calls=5, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    _ok(breaker, 0.1)
    _ok(breaker, 0.1)
    _ok(breaker, 2.5)
    _ok(breaker, 3.0)
    assert breaker.state is CircuitState.CLOSED
    # duration measured by the clock when not given
    permit = breaker.acquire()
    clock.advance(5.0)
    permit.success()
    assert breaker.state is CircuitState.OPEN
    assert breaker.status()["slow_requests"] == 3


def test_slow_probe_reopens() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=1.0, slow_call_threshold=1.0,
                               jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    _fail(breaker)
    clock.advance(1.0)
    _ok(breaker, 1.5)
    assert breaker.state is CircuitState.OPEN


def test_release_gives_back_a_probe_without_an_outcome() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=1.0, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    _fail(breaker)
    clock.advance(1.0)
    permit = breaker.acquire()
    with pytest.raises(CircuitBreakerOpenError):
        breaker.acquire()
    permit.record(asyncio.CancelledError())  # a cancellation: no outcome, probe released
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.acquire().release()
    breaker.acquire().success()
    breaker.acquire().success()
    assert breaker.state is CircuitState.CLOSED


def test_reset_force_open_and_listeners(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=clock)
    seen: list[tuple[str, CircuitState, CircuitState]] = []
    unsubscribe = breaker.subscribe(lambda *args: seen.append(args))
    breaker.subscribe(lambda *args: 1 / 0)  # a broken listener does not break the breaker
    with caplog.at_level(logging.WARNING, logger="llm_async.circuit"):
        breaker.force_open()
    assert seen == [("svc", CircuitState.CLOSED, CircuitState.OPEN)]
    assert any("closed -> open" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    clock.advance(1e9)
    with pytest.raises(CircuitBreakerOpenError) as info:
        breaker.acquire()  # forced: never half-opens by itself
    assert info.value.retry_after is None
    assert breaker.status()["forced_open"] is True
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    assert seen[-1] == ("svc", CircuitState.OPEN, CircuitState.CLOSED)
    unsubscribe()
    breaker.force_open()
    assert len(seen) == 2


def test_metrics_and_status_have_the_documented_names() -> None:
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=FakeClock())
    _ok(breaker)
    _fail(breaker)
    metrics = breaker.metrics()
    assert metrics["circuit.state"] == "closed"
    assert metrics["circuit.requests.total"] == 2
    assert metrics["circuit.requests.successful"] == 1
    assert metrics["circuit.requests.failed"] == 1
    assert metrics["circuit.requests.rejected"] == 0
    status = breaker.status()
    assert {"name", "state", "failure_count", "failure_rate", "opened_until"} <= set(status)
    assert status["state"] == "closed" and status["failure_count"] == 1
    assert "CircuitBreaker('svc'" in repr(breaker)


def test_call_sync_function_and_the_documented_example() -> None:
    config = CircuitBreakerConfig(failure_threshold=5, success_threshold=2, timeout=60.0)
    breaker = CircuitBreaker("my_service", config)

    def my_function(a: int, b: int) -> int:
        return a + b

    try:
        result = breaker.call(my_function, 1, 2)
    except CircuitBreakerOpenError:
        pytest.fail("closed breaker rejected a call")
    assert result == 3
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert breaker.metrics()["circuit.requests.failed"] == 1


async def test_call_with_coroutines() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=clock)

    async def double(x: int) -> int:
        return 2 * x

    assert await breaker.call(double, 4) == 8  # coroutine function → awaitable
    assert await breaker.call_async(double, 5) == 10
    assert await breaker.call(lambda: double(6)) == 12  # a lambda returning a coroutine
    assert breaker.call_async is not None and breaker.successful == 3

    async def broken() -> None:
        raise ServerError("down")

    for _ in range(3):
        with pytest.raises(ServerError):
            await breaker.call(broken)
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call_async(double, 1)


async def test_cancelled_call_records_nothing_and_frees_the_probe() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=1, timeout=1.0, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    _fail(breaker)
    clock.advance(1.0)
    gate = asyncio.Event()

    async def hangs() -> None:
        await gate.wait()

    task = asyncio.create_task(breaker.call_async(hangs))
    await asyncio.sleep(0)
    assert breaker.status()["half_open_in_flight"] == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    status = breaker.status()
    assert status["half_open_in_flight"] == 0 and status["state"] == "half_open"
    assert status["failed_requests"] == 1  # only the original failure


def test_permit_context_manager() -> None:
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=FakeClock())
    with breaker.acquire():
        pass
    with pytest.raises(ServerError), breaker.acquire():
        raise ServerError("x")
    assert (breaker.successful, breaker.failed) == (1, 1)


def test_adaptive_thresholds_follow_the_documented_formula() -> None:
    clock = FakeClock()
    cfg = CircuitBreakerConfig(failure_threshold=3, failure_rate_threshold=0.5,
                               minimum_calls=10, window=10.0, window_buckets=10,
                               adaptive=True, jitter=0.0)
    breaker = CircuitBreaker("svc", cfg, clock=clock)
    # a steady 30% baseline: 3 failures in every 10 calls, spread so no run reaches 3
    pattern = [True, False, False, True, False, False, True, False, False, False]
    for _ in range(10):
        for failed in pattern:
            if failed:
                _fail(breaker)
            else:
                _ok(breaker)
            clock.advance(0.1)
    status = breaker.status()
    p = status["baseline_failure_rate"]
    assert p == pytest.approx(0.3, abs=0.01)
    n = status["calls_in_window"]
    expected_k = min(12, max(3, math.ceil(math.log(0.01 / n) / math.log(p))))
    assert status["failure_threshold"] == expected_k > 3
    assert status["failure_rate_threshold"] == pytest.approx(p + (1 - p) * 0.5)
    assert breaker.state is CircuitState.CLOSED
    # three failures in a row no longer trip it; the learnt run length does
    for _ in range(expected_k - 1):
        _fail(breaker)
    assert breaker.state is CircuitState.CLOSED
    _fail(breaker)
    assert breaker.state is CircuitState.OPEN


def test_config_validation_and_settings() -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreakerConfig(failure_threshold=0)
    with pytest.raises(ConfigurationError):
        CircuitBreakerConfig(failure_rate_threshold=1.5)
    with pytest.raises(ConfigurationError):
        CircuitBreakerConfig(timeout=100.0, max_timeout=50.0)
    settings = Settings.from_env({"LLM_CIRCUIT_FAILURE_THRESHOLD": "7",
                                  "LLM_CIRCUIT_TIMEOUT": "900"})
    config = CircuitBreakerConfig.from_settings(settings)
    assert (config.failure_threshold, config.timeout, config.max_timeout) == (7, 900.0, 900.0)


def test_registry() -> None:
    try:
        first = get_circuit_breaker("external_service")
        assert get_circuit_breaker("external_service") is first
        assert all_circuit_breakers()["external_service"] is first
        assert first.call(lambda: "ok") == "ok"
        with pytest.raises(ConfigurationError):
            get_circuit_breaker("external_service", CircuitBreakerConfig(failure_threshold=9))
    finally:
        remove_circuit_breaker("external_service")
    assert "external_service" not in all_circuit_breakers()


def test_threads_share_one_breaker_consistently() -> None:
    breaker = CircuitBreaker("svc", CircuitBreakerConfig(failure_threshold=10_000,
                                                         failure_rate_threshold=None))

    def work() -> None:
        for i in range(500):
            with contextlib.suppress(ServerError):
                breaker.call(lambda i=i: i if i % 2 else (_ for _ in ()).throw(ServerError("x")))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.total == 4000
    assert breaker.successful == 2000 and breaker.failed == 2000


def test_calls_in_flight_together_do_not_make_a_failure_streak() -> None:
    """Only calls admitted after the last success extend the streak: concurrent callers that
    happen to fail one after another are not an outage."""
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=FakeClock())
    in_flight = [breaker.acquire() for _ in range(6)]
    in_flight[0].success()
    for permit in in_flight[1:]:  # five failures in a row, all admitted before that success
        permit.record(ServerError("500"))
    assert breaker.state is CircuitState.CLOSED
    assert breaker.status()["failure_count"] == 0
    # Calls admitted after the success do make a streak, one after another or together.
    later = [breaker.acquire() for _ in range(3)]
    for permit in later:
        permit.record(ServerError("500"))
    assert breaker.state is CircuitState.OPEN


def test_the_rate_window_counts_each_logical_call_once() -> None:
    """A call that fails and then succeeds on retry counts as one successful call."""
    config = CircuitBreakerConfig(failure_threshold=100, failure_rate_threshold=0.5,
                                  minimum_calls=4, jitter=0.0)
    breaker = CircuitBreaker("svc", config, clock=FakeClock())
    for call in ("a", "b", "c", "d"):
        breaker.acquire(call).record(ServerError("500"))  # first attempt fails ...
        if call != "d":
            breaker.acquire(call).success()  # ... its retry succeeds
    status = breaker.status()
    assert breaker.state is CircuitState.CLOSED
    assert status["calls_in_window"] == 4 and status["failure_rate"] == 0.25
    # A logical call that keeps failing counts once, however many attempts it makes ...
    for _ in range(3):
        breaker.acquire("e").record(ServerError("500"))
    status = breaker.status()
    assert status["calls_in_window"] == 5 and status["failure_rate"] == 0.4
    # ... and failing calls do open it (3 of 6 calls).
    breaker.acquire("f").record(ServerError("500"))
    assert breaker.state is CircuitState.OPEN


def test_the_open_error_chains_and_names_the_last_failure() -> None:
    breaker = CircuitBreaker("svc", CONSECUTIVE, clock=FakeClock())
    for status in (500, 502, 503):
        _fail(breaker, ServerError(f"upstream {status}", status=status, provider="openai"))
    with pytest.raises(CircuitBreakerOpenError) as info:
        breaker.acquire()
    cause = info.value.__cause__
    assert isinstance(cause, ServerError) and cause.status == 503
    assert cause.__traceback__ is None  # a detached copy: no frames kept alive
    assert "last failure: ServerError: upstream 503" in str(info.value)
    assert info.value.status is None  # the rejection itself had no HTTP status
    breaker.reset()
    breaker.force_open()
    with pytest.raises(CircuitBreakerOpenError) as info:
        breaker.acquire()
    assert info.value.__cause__ is None  # forced open: nothing failed
