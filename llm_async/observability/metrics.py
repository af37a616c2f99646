"""Metrics on the OpenTelemetry metrics API: the GenAI client histograms and the live-state
instruments.

Two families of instruments:

* **GenAI client histograms** (semantic conventions, recorded once per logical call by
  :class:`~llm_async.observability.tracing.TracingLayer`):

  ======================================================  ==========  ===========================
  instrument                                              unit        buckets (advisory)
  ======================================================  ==========  ===========================
  ``gen_ai.client.operation.duration``                    ``s``       :data:`DURATION_BUCKETS`
  ``gen_ai.client.token.usage`` (``gen_ai.token.type``)   ``{token}`` :data:`TOKEN_BUCKETS`
  ``gen_ai.client.operation.time_to_first_chunk``         ``s``       :data:`DURATION_BUCKETS`
  ======================================================  ==========  ===========================

* **Live-state instruments** (:data:`LIVE_METRIC_NAMES`, the names of the public contract),
  observable instruments that read live state when the SDK collects: ``circuit.state`` and
  ``circuit.requests.{total,successful,failed,rejected}`` (every breaker of every client whose
  tracing layer reports to an observability registered here, and of the process registry;
  attributes ``circuit.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``),
  ``cost.total``, ``cost.by_model``, ``cost.by_user``, ``cost.requests`` (the process-wide cost
  manager), ``retry.attempts``, ``retry.successful``, ``retry.failed``, ``retry.delay`` (the
  process-wide retry metrics), plus ``cache.hit_ratio`` and ``dedup.joins`` (counted by the
  tracing layers).

Nothing here costs anything until a meter provider from an SDK is configured: with only the
API installed (or nothing at all) :func:`genai_metrics` returns ``None`` and the tracing layer
skips recording.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .otel import INSTRUMENTATION
from .panels import split_name
from .sources import (
    circuit_state_value,
    lookup,
    process_breakers,
    process_cost_manager,
    retry_metrics,
)

try:
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry.metrics import CallbackOptions, Observation, _internal as _otel_metrics_state

    HAVE_OTEL_METRICS = True
except ImportError:  # pragma: no cover - exercised in a subprocess test
    HAVE_OTEL_METRICS = False

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider

    from .facade import Observability

__all__ = [
    "DURATION_BUCKETS",
    "LIVE_METRIC_NAMES",
    "TOKEN_BUCKETS",
    "GenAIMetrics",
    "genai_metrics",
    "register_live_metrics",
]

#: Bucket boundaries (seconds) the conventions advise for durations and time to first chunk.
DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
#: Explicit bucket boundaries the conventions advise for token counts.
TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
#: Every observable instrument :func:`register_live_metrics` creates.
LIVE_METRIC_NAMES: tuple[str, ...] = (
    "circuit.state",
    "circuit.requests.total",
    "circuit.requests.successful",
    "circuit.requests.failed",
    "circuit.requests.rejected",
    "cost.total",
    "cost.by_model",
    "cost.by_user",
    "cost.requests",
    "retry.attempts",
    "retry.successful",
    "retry.failed",
    "retry.delay",
    "cache.hit_ratio",
    "dedup.joins",
)

_METER_NAME = INSTRUMENTATION


def _version() -> str:
    from .._version import __version__

    return __version__


def is_noop_meter_provider(provider: object) -> bool:
    """True for the API's placeholder providers (no SDK configured)."""
    return type(provider).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider")


class GenAIMetrics:
    """The three GenAI client histograms on one meter."""

    __slots__ = ("duration", "time_to_first_chunk", "token_usage")

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk of a streaming response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def record(
        self,
        attributes: dict[str, Any],
        *,
        duration: float,
        error_type: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        time_to_first_chunk: float | None = None,
    ) -> None:
        """Record one logical call: its duration, two token points, and its time to first chunk."""
        if error_type is not None:
            self.duration.record(duration, {**attributes, "error.type": error_type})
        else:
            self.duration.record(duration, attributes)
        if input_tokens is not None:
            self.token_usage.record(input_tokens, {**attributes, "gen_ai.token.type": "input"})
        if output_tokens is not None:
            self.token_usage.record(output_tokens, {**attributes, "gen_ai.token.type": "output"})
        if time_to_first_chunk is not None:
            self.time_to_first_chunk.record(time_to_first_chunk, attributes)


class _Registration:
    """What one meter provider holds: the histograms and the observabilities its gauges read."""

    __slots__ = ("__weakref__", "genai", "live", "observabilities")

    def __init__(self) -> None:
        self.genai: GenAIMetrics | None = None
        self.live = False
        self.observabilities: weakref.WeakSet[Observability] = weakref.WeakSet()


_registrations: weakref.WeakKeyDictionary[Any, _Registration] = weakref.WeakKeyDictionary()


def _registration(provider: MeterProvider) -> _Registration:
    reg = _registrations.get(provider)
    if reg is None:
        reg = _registrations[provider] = _Registration()
    return reg


_UNKNOWN = object()


def _global_unset() -> bool:
    """True while no global meter provider is set (read without the API's environment lookup;
    an API that keeps it elsewhere takes the slow path)."""
    return getattr(_otel_metrics_state, "_METER_PROVIDER", _UNKNOWN) is None


def _resolve(meter_provider: MeterProvider | None) -> MeterProvider | None:
    if not HAVE_OTEL_METRICS:
        return None
    if meter_provider is None and _global_unset():
        return None
    provider = meter_provider if meter_provider is not None else _otel_metrics.get_meter_provider()
    if is_noop_meter_provider(provider):
        return None
    return provider


def genai_metrics(meter_provider: MeterProvider | None = None,
                  observability: Observability | None = None) -> GenAIMetrics | None:
    """The GenAI histograms on ``meter_provider`` (or the global one), created once per provider.

    Returns ``None`` when OpenTelemetry is not installed or no SDK meter provider is configured,
    so callers skip recording at no cost. The first call for a provider also registers the
    live-state instruments on it (:func:`register_live_metrics`).
    """
    if meter_provider is None and (not HAVE_OTEL_METRICS or _global_unset()):
        return None  # the per-call fast path without an SDK (what _resolve would find)
    provider = _resolve(meter_provider)
    if provider is None:
        return None
    reg = _registrations.get(provider)
    if reg is not None and reg.genai is not None and (
            observability is None or observability in reg.observabilities):
        return reg.genai
    reg = _registration(provider)
    if reg.genai is None:
        reg.genai = GenAIMetrics(provider.get_meter(_METER_NAME, _version()))
    register_live_metrics(provider, observability)
    return reg.genai


def register_live_metrics(meter_provider: MeterProvider | None = None,
                          observability: Observability | None = None) -> bool:
    """Register the live-state instruments (:data:`LIVE_METRIC_NAMES`) on a provider.

    Idempotent per provider; ``observability`` is added to the set whose cache hits and dedup
    joins ``cache.hit_ratio`` and ``dedup.joins`` report. Returns ``False`` when there is no SDK
    meter provider to register on.
    """
    provider = _resolve(meter_provider)
    if provider is None:
        return False
    reg = _registration(provider)
    if observability is not None:
        reg.observabilities.add(observability)
    if reg.live:
        return True
    reg.live = True
    meter = provider.get_meter(_METER_NAME + ".state", _version())
    gauge = meter.create_observable_gauge
    counter = meter.create_observable_counter
    ref = weakref.ref(reg)

    gauge("circuit.state", [_circuit(ref, "state")], unit="1",
          description="Circuit breaker state: 0 closed, 1 half-open, 2 open.")
    for part in ("total", "successful", "failed", "rejected"):
        counter(f"circuit.requests.{part}", [_circuit(ref, part)], unit="{request}",
                description=f"Requests seen by the circuit breaker ({part}).")
    counter("cost.total", [_cost_total], unit="USD", description="Total cost of LLM calls.")
    counter("cost.by_model", [_cost_by("by_model", "gen_ai.request.model")], unit="USD",
            description="Cost of LLM calls per model.")
    counter("cost.by_user", [_cost_by("by_user", "user.id")], unit="USD",
            description="Cost of LLM calls per user.")
    counter("cost.requests", [_cost_requests], unit="{request}",
            description="Number of calls the cost manager recorded.")
    for part, unit in (("attempts", "{attempt}"), ("successful", "{retry}"),
                       ("failed", "{retry}"), ("delay", "s")):
        counter(f"retry.{part}", [_retry(part)], unit=unit,
                description=f"Retry strategy: {part}.")
    gauge("cache.hit_ratio", [_cache_ratio(ref)], unit="1",
          description="Share of traced calls answered from the cache.")
    counter("dedup.joins", [_dedup_joins(ref)], unit="{request}",
            description="Calls that joined an identical call in flight.")
    return True


# -- live-state readers -------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        return float(value)
    return None


def cost_metrics() -> Mapping[str, Any]:
    """The process-wide cost manager's ``metrics()`` ({} when the cost module is absent)."""
    manager = process_cost_manager()
    if manager is None:
        return {}
    metrics = manager.metrics()
    return metrics if isinstance(metrics, Mapping) else dict(getattr(metrics, "__dict__", {}))


def _breakers(reg: _Registration) -> list[Any]:
    """Every breaker of the clients reporting to ``reg``'s observabilities, then the process
    registry's (each once)."""
    out: list[Any] = []
    seen: set[int] = set()
    observabilities = list(reg.observabilities)
    groups = [obs.sources.breakers() for obs in observabilities] or [process_breakers()]
    for group in groups:
        for breaker in group:
            if id(breaker) not in seen:
                seen.add(id(breaker))
                out.append(breaker)
    return out


Callback = Callable[["CallbackOptions"], Iterable["Observation"]]


def _circuit(ref: weakref.ref[_Registration], part: str) -> Callback:
    def observe(options: CallbackOptions) -> Iterator[Observation]:
        reg = ref()
        if reg is None:
            return
        for index, breaker in enumerate(_breakers(reg)):
            name = str(getattr(breaker, "name", "") or index)
            metrics = breaker.metrics()
            attrs = {"circuit.name": name}
            provider, model = split_name(name)
            if provider is not None and model is not None:
                attrs["gen_ai.provider.name"] = provider
                attrs["gen_ai.request.model"] = model
            value: float | None
            if part == "state":
                state = circuit_state_value(lookup(metrics, "circuit.state"))
                value = None if state is None else float(state)
            else:
                value = _number(lookup(metrics, f"circuit.{part}"))
            if value is not None:
                yield Observation(value, attrs)

    return observe


def _cost_total(options: CallbackOptions) -> Iterator[Observation]:
    value = _number(lookup(cost_metrics(), "cost.total"))
    if value is not None:
        yield Observation(value)


def _cost_requests(options: CallbackOptions) -> Iterator[Observation]:
    value = _number(lookup(cost_metrics(), "cost.requests"))
    if value is not None:
        yield Observation(value)


def _cost_by(figure: str, attribute: str) -> Callback:
    def observe(options: CallbackOptions) -> Iterator[Observation]:
        table = lookup(cost_metrics(), f"cost.{figure}")
        if isinstance(table, Mapping):
            for key, amount in table.items():
                value = _number(amount)
                if value is not None:
                    yield Observation(value, {attribute: str(key)})

    return observe


def _retry(part: str) -> Callback:
    def observe(options: CallbackOptions) -> Iterator[Observation]:
        value = _number(lookup(retry_metrics(), f"retry.{part}"))
        if value is not None:
            yield Observation(value)

    return observe


def _cache_ratio(ref: weakref.ref[_Registration]) -> Callback:
    def observe(options: CallbackOptions) -> Iterator[Observation]:
        reg = ref()
        if reg is None:
            return
        calls = hits = 0
        for obs in list(reg.observabilities):
            life = obs.lifetime()
            calls += life["requests"]
            hits += life["cache_hits"]
        if calls:
            yield Observation(hits / calls)

    return observe


def _dedup_joins(ref: weakref.ref[_Registration]) -> Callback:
    def observe(options: CallbackOptions) -> Iterator[Observation]:
        reg = ref()
        if reg is None:
            return
        yield Observation(sum(obs.lifetime()["dedup_joins"] for obs in list(reg.observabilities)))

    return observe
