"""The observability facade (``get_observability``) and the rolling-window statistics behind it."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from llm_async import FakeClock, InvalidRequestError
from llm_async.observability import (
    CallRecord,
    Observability,
    RollingStats,
    set_observability,
)

Otel = Any
API_KEY = "sk-observability-test-key-0123456789"


def perform_operation(fail: bool) -> str:
    if fail:
        raise RuntimeError("provider exploded")
    return "ok"


def test_the_contract_example_runs_as_written() -> None:
    from llm_async.observability import get_observability

    set_observability(None)
    try:
        obs = get_observability()
        assert get_observability() is obs

        for fail in (False, False, True):
            # --- the contract's example, verbatim apart from the import ---
            span = obs.trace_operation("llm_call", model="gpt-4")
            try:
                result = perform_operation(fail)
                obs.finish_operation(span, status="success")
            except Exception as e:
                obs.finish_operation(span, status="error", error=str(e))
            dashboard = obs.get_dashboard_data()
            # ----------------------------------------------------------
        assert result == "ok"
        print(f"Avg duration: {dashboard['avg_duration_ms']}ms")
        assert dashboard["total_requests"] == 3
        assert dashboard["failed_requests"] == 1
        assert dashboard["error_rate"] == pytest.approx(1 / 3)
        assert dashboard["avg_duration_ms"] >= 0
        assert dashboard["by_model"]["gpt-4"]["total_requests"] == 3
        assert dashboard["by_operation"]["llm_call"]["errors_by_type"] == {"_OTHER": 1}
        assert span.error == "provider exploded" and span.status == "error"
    finally:
        set_observability(None)


def test_finish_operation_records_tokens_cost_and_is_idempotent(fake_clock: FakeClock) -> None:
    obs = Observability(clock=fake_clock)
    span = obs.trace_operation("embed", model="m1", provider="p1", input_tokens=10)
    assert obs.active_operations == 1
    fake_clock.advance(0.2)
    obs.finish_operation(span, status="success", output_tokens=4, cost=Decimal("0.01"),
                         cache_hit=True)
    obs.finish_operation(span, status="error", error="late")  # ignored: already finished
    assert obs.active_operations == 0
    data = obs.get_dashboard_data()
    assert data["total_requests"] == 1 and data["failed_requests"] == 0
    assert data["avg_duration_ms"] == pytest.approx(200.0)
    assert (data["input_tokens"], data["output_tokens"], data["total_tokens"]) == (10, 4, 14)
    assert data["total_cost"] == 0.01 and data["cache_hit_rate"] == 1.0
    assert data["by_provider"]["p1"]["total_requests"] == 1
    assert span.duration == pytest.approx(0.2)


def test_bad_status_and_name_are_typed_errors() -> None:
    obs = Observability()
    span = obs.trace_operation("x")
    with pytest.raises(InvalidRequestError):
        obs.finish_operation(span, status="meh")
    assert not span.finished
    with pytest.raises(InvalidRequestError):
        obs.trace_operation("")


def test_error_messages_are_redacted() -> None:
    from llm_async.errors import register_secret

    register_secret(API_KEY)
    obs = Observability()
    span = obs.trace_operation("llm_call")
    obs.finish_operation(span, status="error", error=f"auth failed for {API_KEY}")
    assert span.error == "auth failed for ***"


def test_trace_operation_emits_an_internal_span(otel: Otel) -> None:
    obs = Observability(tracer_provider=otel.tracer_provider)
    span = obs.trace_operation("llm_call", model="gpt-4", tags=["a", "b"], obj=object())
    span.set_attribute("step", 2)
    span.add_event("checkpoint", n=1)
    obs.finish_operation(span, status="error", error="boom", error_type="timeout")
    (finished,) = otel.spans()
    assert finished.name == "llm_call" and finished.kind is SpanKind.INTERNAL
    attrs = dict(finished.attributes or {})
    assert attrs["model"] == "gpt-4" and attrs["gen_ai.request.model"] == "gpt-4"
    assert attrs["tags"] == ("a", "b") and "obj" not in attrs
    assert attrs["step"] == 2 and attrs["error.type"] == "timeout"
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "boom"
    assert [e.name for e in finished.events] == ["checkpoint"]
    assert obs.get_dashboard_data()["errors_by_type"] == {"timeout": 1}


def test_trace_operation_as_a_context_manager(otel: Otel) -> None:
    obs = Observability(tracer_provider=otel.tracer_provider)
    tracer = otel.tracer_provider.get_tracer("test")
    with obs.trace_operation("pipeline", model="m") as span:
        tracer.start_span("child").end()
    assert span.finished and span.status == "success"
    with pytest.raises(KeyError), obs.trace_operation("pipeline", model="m"):
        raise KeyError("missing")
    spans = {s.name: s for s in otel.spans() if s.name == "child"}
    parent = next(s for s in otel.spans() if s.name == "pipeline")
    assert spans["child"].parent.span_id == parent.context.span_id
    failed = [s for s in otel.spans() if s.name == "pipeline"][1]
    assert failed.attributes["error.type"] == "_OTHER"
    data = obs.get_dashboard_data()
    assert (data["total_requests"], data["failed_requests"]) == (2, 1)


def test_window_forgets_old_calls(fake_clock: FakeClock) -> None:
    obs = Observability(window=60.0, resolution=10.0, clock=fake_clock)
    obs.record(CallRecord(model="old", duration=1.0))
    fake_clock.advance(30.0)
    obs.record(CallRecord(model="new", duration=3.0))
    data = obs.get_dashboard_data()
    assert data["total_requests"] == 2 and set(data["by_model"]) == {"old", "new"}
    assert len(data["series"]) == 6
    assert [p["requests"] for p in data["series"]] == [0, 0, 1, 0, 0, 1]
    fake_clock.advance(35.0)  # "old" is now 65 s old: out of the 60 s window
    data = obs.get_dashboard_data()
    assert data["total_requests"] == 1 and set(data["by_model"]) == {"new"}
    assert data["avg_duration_ms"] == pytest.approx(3000.0)
    assert obs.lifetime()["requests"] == 2  # lifetime counters keep everything
    fake_clock.advance(3600.0)
    data = obs.get_dashboard_data()
    assert data["total_requests"] == 0 and data["avg_duration_ms"] is None
    assert data["p95_duration_ms"] is None


def test_percentiles_are_within_one_percent(fake_clock: FakeClock) -> None:
    stats = RollingStats(clock=fake_clock)
    values = [i / 1000.0 for i in range(1, 1001)]  # 1 ms .. 1000 ms
    random.Random(3).shuffle(values)
    for v in values:
        stats.record(CallRecord(duration=v))
    snap = stats.snapshot()
    assert snap["avg_duration_ms"] == pytest.approx(500.5)
    assert snap["p50_duration_ms"] == pytest.approx(500.0, rel=0.01)
    assert snap["p95_duration_ms"] == pytest.approx(950.0, rel=0.01)
    assert snap["p99_duration_ms"] == pytest.approx(990.0, rel=0.01)


def test_memory_is_bounded(fake_clock: FakeClock) -> None:
    stats = RollingStats(window=50.0, resolution=5.0, max_keys=3, clock=fake_clock)
    for i in range(2000):
        stats.record(CallRecord(model=f"model-{i % 10}", provider=f"p{i % 7}",
                                duration=0.001 * (i % 500 + 1)))
        fake_clock.advance(0.5)
        assert stats.live_buckets <= stats.buckets == 10
    snap = stats.snapshot()
    names = set(snap["by_model"])
    assert "_other" in names and len(names) <= 10 * 3 + 1
    # Every call of the window is still counted, overall and summed over models.
    assert sum(m["total_requests"] for m in snap["by_model"].values()) == snap["total_requests"]
    # Now t=1000: the window is buckets [950, 1000) .. the current one, [1000, 1005), still
    # empty, so nine buckets of ten calls each.
    assert snap["total_requests"] == 90


def test_window_must_be_sane() -> None:
    with pytest.raises(InvalidRequestError):
        RollingStats(window=1.0, resolution=5.0)
    with pytest.raises(InvalidRequestError):
        RollingStats(max_keys=0)


def test_dashboard_data_is_strict_json_and_resets(fake_clock: FakeClock) -> None:
    obs = Observability(clock=fake_clock)
    obs.record(CallRecord(model="a", provider="openai", duration=0.1, status="error",
                          error_type="timeout", stream=True, time_to_first_chunk=0.05))
    obs.record(CallRecord(model="a", provider="openai", duration=0.2, status="cancelled",
                          error_type="cancelled"))
    data = obs.get_dashboard_data()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["errors_by_type"] == {"timeout": 1}
    assert data["error_rate"] == 1.0  # cancelled calls are not errors, and not in the rate
    assert data["cancelled_requests"] == 1 and data["streams"] == 1
    for key in ("avg_duration_ms", "p50_duration_ms", "p95_duration_ms", "p99_duration_ms",
                "avg_time_to_first_chunk_ms", "total_tokens", "total_cost", "cache_hit_rate",
                "retries", "by_model", "by_provider", "series", "circuit_breakers",
                "retry_metrics", "cost_metrics", "lifetime", "window_seconds"):
        assert key in data
    obs.reset()
    assert obs.get_dashboard_data()["total_requests"] == 0
    assert obs.lifetime()["requests"] == 0


def test_repr_shows_live_state() -> None:
    obs = Observability()
    obs.record(CallRecord())
    assert "requests=1" in repr(obs) and "RollingStats" in repr(obs)
    assert repr(obs.trace_operation("x")) == "OperationSpan('x', open)"


def test_public_names_are_exported_lazily() -> None:
    import llm_async
    import llm_async.observability as observability

    assert sorted(observability.__all__) == sorted(observability._EXPORTS)
    for name in observability.__all__:
        assert getattr(observability, name) is not None
    assert "get_observability" in llm_async.__all__  # the rest: llm_async.observability
    assert llm_async.get_observability is observability.get_observability
