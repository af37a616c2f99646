"""Retry policies, jitter, classification, budget, adaptive learning and the executor."""

from __future__ import annotations

import math
import random

import pytest

from llm_async import FakeClock
from llm_async.application.retry_strategy import (
    AdaptiveRetry,
    ErrorKind,
    ErrorPolicy,
    ExponentialBackoffRetry,
    FibonacciBackoffRetry,
    LinearBackoffRetry,
    RetryBudget,
    RetryConfig,
    RetryExecutor,
    apply_jitter,
    classify_error,
    get_retry_metrics,
    is_retryable,
    reset_retry_metrics,
)
from llm_async.config import Settings
from llm_async.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    CircuitBreakerOpenError,
    ConfigurationError,
    ConflictError,
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    StreamError,
    error_from_response,
)

NO_JITTER = RetryConfig(max_attempts=6, base_delay=1.0, max_delay=100.0, jitter="none")


def test_schedules_without_jitter() -> None:
    err = ServerError("boom")
    exp = ExponentialBackoffRetry(NO_JITTER)
    lin = LinearBackoffRetry(NO_JITTER)
    fib = FibonacciBackoffRetry(NO_JITTER)
    assert [exp.delay(n, err) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert [lin.delay(n, err) for n in range(1, 6)] == [1, 2, 3, 4, 5]
    assert [fib.delay(n, err) for n in range(1, 6)] == [1, 2, 3, 5, 8]
    # the attempt limit: 6 attempts in all, so no delay after the 6th
    assert exp.delay(6, err) is None


def test_exponential_base_and_cap() -> None:
    config = RetryConfig(max_attempts=10, base_delay=0.5, exponential_base=3.0, max_delay=5.0,
                         jitter="none")
    strategy = ExponentialBackoffRetry(config)
    assert [strategy.delay(n, ServerError("x")) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 5.0]
    # a huge attempt number does not overflow
    assert strategy.delay(9, ServerError("x")) == 5.0


def test_delay_is_pure_given_the_config_argument() -> None:
    strategy = ExponentialBackoffRetry(NO_JITTER)
    other = RetryConfig(max_attempts=3, base_delay=0.1, jitter="none")
    assert strategy.delay(2, ServerError("x"), other) == pytest.approx(0.2)
    assert strategy.delay(3, ServerError("x"), other) is None
    assert strategy.delay(2, ServerError("x")) == 2.0


@pytest.mark.parametrize("mode", ["full", "equal", "decorrelated"])
def test_jitter_bounds(mode: str) -> None:
    rng = random.Random(7)
    samples = [apply_jitter(mode, 8.0, base=1.0, cap=10.0, previous=4.0, rng=rng)
               for _ in range(2000)]
    if mode == "full":
        assert min(samples) >= 0 and max(samples) <= 8.0
        assert min(samples) < 1.0 and max(samples) > 7.0  # spread over the whole range
    elif mode == "equal":
        assert min(samples) >= 4.0 and max(samples) <= 8.0
    else:
        assert min(samples) >= 1.0 and max(samples) <= 10.0  # U(base, 3·prev) capped
        assert max(samples) > 9.0


def test_decorrelated_uses_previous_delay() -> None:
    config = RetryConfig(max_attempts=10, base_delay=1.0, max_delay=1000.0, jitter="decorrelated")
    strategy = ExponentialBackoffRetry(config, rng=random.Random(1))
    small = [strategy.delay(3, ServerError("x"), previous=1.0) for _ in range(200)]
    large = [strategy.delay(3, ServerError("x"), previous=100.0) for _ in range(200)]
    assert max(d for d in small if d is not None) <= 3.0
    assert max(d for d in large if d is not None) > 100.0


def test_jitter_flags_and_validation() -> None:
    assert RetryConfig(jitter=True).jitter == "full"
    assert RetryConfig(jitter=False).jitter == "none"
    with pytest.raises(ConfigurationError):
        RetryConfig(jitter="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        RetryConfig(max_attempts=0)
    with pytest.raises(ConfigurationError):
        RetryConfig(base_delay=2.0, max_delay=1.0)
    with pytest.raises(ConfigurationError):
        RetryConfig(policies={"nonsense": ErrorPolicy()})
    with pytest.raises(ConfigurationError):
        ErrorPolicy(max_attempts=0)


RETRYABLE = [
    (APIConnectionError("refused"), ErrorKind.CONNECTION),
    (APITimeoutError("slow", phase="first_chunk"), ErrorKind.TIMEOUT),
    (RequestTimeoutError("408"), ErrorKind.REQUEST_TIMEOUT),
    (ConflictError("409"), ErrorKind.CONFLICT),
    (RateLimitError("429"), ErrorKind.RATE_LIMIT),
    (ServerError("500"), ErrorKind.SERVER),
    (OverloadedError("529"), ErrorKind.OVERLOADED),
    (TimeoutError(), ErrorKind.TIMEOUT),
    (ConnectionResetError(), ErrorKind.CONNECTION),
]
FATAL = [
    BadRequestError("400"), AuthenticationError("401"), PermissionDeniedError("403"),
    NotFoundError("404"), ContextLengthExceededError("too long"), InvalidRequestError("bad"),
    BudgetExceededError("over"), QuotaExceededError("quota"), CircuitBreakerOpenError("open"),
    StreamError("cut", cause=ServerError("500")), ValueError("a bug"),
]


@pytest.mark.parametrize(("error", "kind"), RETRYABLE, ids=lambda v: type(v).__name__)
def test_retryable_classification(error: BaseException, kind: ErrorKind) -> None:
    assert classify_error(error) is kind
    assert is_retryable(error)


@pytest.mark.parametrize("error", FATAL, ids=lambda e: type(e).__name__)
def test_fatal_classification(error: BaseException) -> None:
    assert classify_error(error) is ErrorKind.FATAL
    assert ExponentialBackoffRetry().delay(1, error) is None


def test_classification_from_wire_and_x_should_retry() -> None:
    assert classify_error(error_from_response(503, None)) is ErrorKind.OVERLOADED
    assert classify_error(error_from_response(
        429, {"error": {"type": "insufficient_quota", "message": "pay"}})) is ErrorKind.FATAL
    # the provider's x-should-retry header wins both ways
    assert not is_retryable(error_from_response(500, None, headers={"x-should-retry": "false"}))
    assert is_retryable(error_from_response(400, None, headers={"x-should-retry": "true"}))
    # foreign errors: only with retry_on
    config = RetryConfig(retry_on=(KeyError,))
    assert classify_error(KeyError("k"), config) is ErrorKind.RETRYABLE
    assert classify_error(KeyError("k")) is ErrorKind.FATAL


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    config = RetryConfig(max_attempts=5, base_delay=0.01, retry_after_cap=30.0)
    strategy = ExponentialBackoffRetry(config, rng=random.Random(3))
    delays = [strategy.delay(1, RateLimitError("slow", retry_after=7.0)) for _ in range(50)]
    assert all(d is not None and 7.0 <= d <= 7.7 for d in delays)
    assert strategy.delay(1, RateLimitError("slow", retry_after=31.0)) is None
    # the header values are parsed by the error mapping (retry-after-ms first)
    err = error_from_response(429, None, headers={"retry-after-ms": "1500", "retry-after": "9"})
    assert err.retry_after == 1.5
    assert 1.5 <= (strategy.delay(1, err) or 0) <= 1.65


def test_per_error_type_policies() -> None:
    config = RetryConfig(
        max_attempts=3, base_delay=1.0, jitter="none",
        policies={
            ErrorKind.RATE_LIMIT: ErrorPolicy(max_attempts=6, base_delay=2.0),
            "overloaded": ErrorPolicy(retry=False),
            ConflictError: ErrorPolicy(max_attempts=2, max_delay=0.5),
        })
    strategy = ExponentialBackoffRetry(config)
    # rate limits: 6 attempts with a larger base
    assert [strategy.delay(n, RateLimitError("x")) for n in range(1, 7)] == [2, 4, 8, 16, 20, None]
    # server errors keep the defaults
    assert [strategy.delay(n, ServerError("x")) for n in (1, 2, 3)] == [1, 2, None]
    assert strategy.delay(1, OverloadedError("x")) is None
    assert [strategy.delay(n, ConflictError("x")) for n in (1, 2)] == [0.5, None]


def test_from_settings_reads_the_documented_variables() -> None:
    settings = Settings.from_env({"LLM_MAX_RETRIES": "5", "LLM_RETRY_BACKOFF_BASE": "3.0"})
    config = RetryConfig.from_settings(settings)
    assert config.max_attempts == 6
    assert config.exponential_base == 3.0


def test_retry_budget_numbers() -> None:
    budget = RetryBudget()
    assert budget.available == 500
    assert budget.acquire(ErrorKind.SERVER) == 5
    assert budget.acquire(ErrorKind.TIMEOUT) == 10
    assert budget.available == 485
    budget.on_success(15)  # a success after retries gives back what they took
    assert budget.available == 500
    for _ in range(100):
        assert budget.acquire(ErrorKind.SERVER) == 5
    assert budget.acquire(ErrorKind.SERVER) is None
    assert budget.statistics() == {"available": 0, "capacity": 500, "exhausted": 1}
    budget.on_success()  # a clean success refunds 1
    assert budget.available == 1


def test_executor_sync_retries_and_sleeps() -> None:
    clock = FakeClock()
    slept: list[float] = []
    config = RetryConfig(max_attempts=4, base_delay=1.0, jitter="none")

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    executor = RetryExecutor(ExponentialBackoffRetry(config), clock=clock, sync_sleep=sleep)
    calls: list[tuple[int, int]] = []

    def flaky(a: int, b: int) -> int:
        calls.append((a, b))
        if len(calls) < 3:
            raise ServerError("boom")
        return a + b

    assert executor.execute(flaky, 2, 3) == 5
    assert calls == [(2, 3)] * 3
    assert slept == [1.0, 2.0]
    metrics = executor.metrics()
    assert metrics["retry.attempts"] == 2 and metrics["retry.successful"] == 1
    assert metrics["retry.delay"] == 3.0 and metrics["successful_retries"] == 1


def test_executor_gives_up_and_raises_the_last_error() -> None:
    executor = RetryExecutor(ExponentialBackoffRetry(RetryConfig(max_attempts=3, base_delay=0)),
                             sync_sleep=lambda d: None)
    errors = [ServerError("one"), OverloadedError("two"), ServerError("three")]

    def failing() -> None:
        raise errors.pop(0)

    with pytest.raises(ServerError, match="three"):
        executor.execute(failing)
    assert executor.metrics()["retry.failed"] == 1
    # a fatal error is raised at once
    calls = []

    def bad() -> None:
        calls.append(1)
        raise AuthenticationError("no key")

    with pytest.raises(AuthenticationError):
        executor.execute(bad)
    assert calls == [1]


def test_executor_deadline_bounds_total_time() -> None:
    clock = FakeClock()
    config = RetryConfig(max_attempts=20, base_delay=1.0, jitter="none", deadline=10.0)
    executor = RetryExecutor(ExponentialBackoffRetry(config), clock=clock,
                             sync_sleep=clock.advance)

    def failing() -> None:
        raise ServerError("down")

    with pytest.raises(ServerError):
        executor.execute(failing)
    # waits of 1, 2, 4 (total 7); the next (8) would cross the 10 s deadline
    assert clock.now() == 7.0


async def test_executor_async_forms() -> None:
    clock = FakeClock()
    executor = RetryExecutor(ExponentialBackoffRetry(RetryConfig(max_attempts=3, base_delay=0.5,
                                                                 jitter="none")), clock=clock)
    attempts = []

    async def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise APIConnectionError("reset")
        return x * 2

    assert await executor.execute_async(flaky, 21) == 42
    # execute() with a coroutine function returns an awaitable
    attempts.clear()
    assert await executor.execute(flaky, 5) == 10
    assert clock.sleeps == [0.5, 0.5]
    # a plain function through execute_async
    assert await executor.execute_async(lambda: "plain") == "plain"


def test_global_retry_metrics_aggregate_every_executor() -> None:
    reset_retry_metrics()
    first = RetryExecutor(ExponentialBackoffRetry(RetryConfig(base_delay=0)),
                          sync_sleep=lambda d: None)
    second = RetryExecutor(LinearBackoffRetry(RetryConfig(base_delay=0)),
                           sync_sleep=lambda d: None)
    for executor in (first, second):
        state = {"n": 0}

        def flaky(state: dict[str, int] = state) -> str:
            state["n"] += 1
            if state["n"] == 1:
                raise ServerError("once")
            return "ok"

        assert executor.execute(flaky) == "ok"
    totals = get_retry_metrics()
    assert totals["retry.attempts"] == 2 and totals["successful_retries"] == 2
    assert set(totals) >= {"retry.attempts", "retry.successful", "retry.failed", "retry.delay",
                           "total_attempts", "successful_retries", "failed_retries",
                           "total_delay"}


def test_executor_budget_stops_a_retry_storm() -> None:
    budget = RetryBudget(capacity=20)
    executor = RetryExecutor(ExponentialBackoffRetry(RetryConfig(max_attempts=5, base_delay=0)),
                             budget=budget, sync_sleep=lambda d: None)
    calls = {"n": 0}

    def down() -> None:
        calls["n"] += 1
        raise ServerError("down")

    for _ in range(10):
        with pytest.raises(ServerError):
            executor.execute(down)
    # 20 tokens pay for 4 retries in all; the 10 calls then fail after one attempt each
    assert calls["n"] == 10 + 4
    assert executor.metrics()["budget_exhausted"] >= 6


def test_adaptive_retry_learns_recovery_time_and_success_rate() -> None:
    config = RetryConfig(max_attempts=5, base_delay=1.0, max_delay=1000.0, jitter="none")
    strategy = AdaptiveRetry(config, alpha=0.5)
    err = ServerError("x")
    # nothing learnt yet: plain exponential
    assert [strategy.delay(n, err) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    # faults recover after 30 s: the schedule (total 1+2+4+8 = 15) is stretched ×2
    strategy.observe(ErrorKind.SERVER, True, 30.0)
    assert [strategy.delay(n, err) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    # another kind is unaffected
    assert strategy.delay(1, APIConnectionError("x")) == 1
    # retries stop helping: success rate 1 → 0.5 → 0.25 → attempts shrink
    strategy.observe(ErrorKind.SERVER, False, None)
    stats = strategy.statistics()["server"]
    assert stats["success_rate"] == 0.5 and stats["recovery"] == 30.0
    assert strategy.attempts_allowed(ErrorKind.SERVER, 5) == 1 + round(4 * 0.5)
    strategy.observe(ErrorKind.SERVER, False, None)
    strategy.observe(ErrorKind.SERVER, False, None)
    assert strategy.attempts_allowed(ErrorKind.SERVER, 5) == 2  # always keeps one retry
    assert strategy.delay(2, err) is None
    # scale is clamped to [min_scale, max_scale]
    fast = AdaptiveRetry(config, alpha=1.0)
    fast.observe(ErrorKind.RATE_LIMIT, True, 0.001)
    assert fast.delay(1, RateLimitError("x")) == 0.25


async def test_adaptive_retry_observes_real_runs() -> None:
    clock = FakeClock()
    strategy = AdaptiveRetry(RetryConfig(max_attempts=4, base_delay=1.0, jitter="none"))
    executor = RetryExecutor(strategy, clock=clock)
    failures = {"n": 0}

    async def recovers_after_two() -> str:
        failures["n"] += 1
        if failures["n"] <= 2:
            raise OverloadedError("busy")
        return "ok"

    assert await executor.execute_async(recovers_after_two) == "ok"
    learnt = strategy.statistics()["overloaded"]
    assert learnt["recovery"] == 3.0  # waited 1 + 2 before the attempt that worked
    assert learnt["samples"] == 1
    assert math.isclose(learnt["success_rate"], 1.0)


def test_documented_strategy_examples() -> None:
    # the design document's example, as written
    config = RetryConfig(max_attempts=5, base_delay=1.0, exponential_base=2.0)
    strategy = ExponentialBackoffRetry(config)
    executor = RetryExecutor(strategy)

    def my_function(a: int, b: int) -> int:
        return a * b

    assert executor.execute(my_function, 6, 7) == 42
    assert isinstance(RetryExecutor(AdaptiveRetry()).strategy, AdaptiveRetry)
    assert "ExponentialBackoffRetry" in repr(executor)
