"""The seed's observability facade, and the rolling-window statistics behind the dashboard.

::

    from llm_async.observability import get_observability

    obs = get_observability()
    span = obs.trace_operation("llm_call", model="gpt-4")
    try:
        result = perform_operation()
        obs.finish_operation(span, status="success")
    except Exception as e:
        obs.finish_operation(span, status="error", error=str(e))
        raise
    dashboard = obs.get_dashboard_data()
    print(dashboard["avg_duration_ms"])

Every :class:`~llm_async.observability.tracing.TracingLayer` reports its calls to an
:class:`Observability` (the process-wide one from :func:`get_observability` unless given another),
and user code reports its own operations with :meth:`Observability.trace_operation`. Both land in
one :class:`RollingStats`: time buckets of ``resolution`` seconds covering the last ``window``
seconds. Memory is bounded: at most ``window / resolution`` buckets, each with at most
``max_keys`` names per dimension (model, provider, operation; further names fold into
``"_other"``), and latencies kept as relative-error sketches (1 % accuracy) instead of lists.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .._clock import Clock, system_clock
from ..errors import InvalidRequestError, redact

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = [
    "CallRecord",
    "Observability",
    "OperationSpan",
    "RollingStats",
    "get_observability",
    "set_observability",
]

Status = Literal["ok", "error", "cancelled"]

# -- latency sketch ---------------------------------------------------------------------------
#
# A value v > 0 falls in bucket ceil(log_gamma(v)); every value of a bucket is within ALPHA of
# the bucket's representative value, so quantiles have a relative error of at most ALPHA. Buckets
# are counts in a dict, merged by addition: a sketch is small, mergeable and bounded.

ALPHA = 0.01
_GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
_TINY = 1e-6  # seconds; anything at or below counts as zero
_ZERO = -(10**6)


def _sketch_index(seconds: float) -> int:
    return _ZERO if seconds <= _TINY else math.ceil(math.log(seconds) / _LOG_GAMMA)


def _sketch_quantiles(sketch: Mapping[int, int], qs: Iterable[float]) -> list[float | None]:
    total = sum(sketch.values())
    if total == 0:
        return [None for _ in qs]
    items = sorted(sketch.items())
    out: list[float | None] = []
    for q in qs:
        rank = max(0, math.ceil(q * total) - 1)  # nearest rank, 0-based
        seen = 0
        value = 0.0
        for index, count in items:
            seen += count
            if seen > rank:
                value = 0.0 if index == _ZERO else 2.0 * _GAMMA**index / (_GAMMA + 1.0)
                break
        out.append(value)
    return out


@dataclass(slots=True)
class CallRecord:
    """One finished call or operation, as the tracing layer and the facade report it.

    ``status`` is ``"ok"``, ``"error"`` or ``"cancelled"`` (the caller cancelled it; not counted
    as an error). ``duration`` and ``time_to_first_chunk`` are in seconds.
    """

    operation: str = "chat"
    model: str | None = None
    provider: str | None = None
    duration: float = 0.0
    status: Status = "ok"
    error_type: str | None = None
    time_to_first_chunk: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal | float | None = None
    cache_hit: bool = False
    retries: int = 0
    dedup_joined: bool = False
    fallbacks: int = 0
    rejections: int = 0
    stream: bool = False


class _Agg:
    """Aggregates of one name (or of everything) in one time bucket."""

    __slots__ = (
        "cache_hits",
        "cancelled",
        "cost",
        "count",
        "dedup_joins",
        "duration_sum",
        "durations",
        "error_types",
        "errors",
        "fallbacks",
        "input_tokens",
        "output_tokens",
        "rejections",
        "retries",
        "streams",
        "ttfc",
        "ttfc_count",
        "ttfc_sum",
    )

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.cancelled = 0
        self.duration_sum = 0.0
        self.durations: dict[int, int] = {}
        self.ttfc_count = 0
        self.ttfc_sum = 0.0
        self.ttfc: dict[int, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = Decimal(0)
        self.cache_hits = 0
        self.retries = 0
        self.dedup_joins = 0
        self.fallbacks = 0
        self.rejections = 0
        self.streams = 0
        self.error_types: dict[str, int] | None = None

    def add(self, rec: CallRecord, duration_index: int, ttfc_index: int | None,
            cost: Decimal | None) -> None:
        """Count ``rec`` (its sketch indexes and Decimal cost are computed once, by the caller)."""
        self.count += 1
        status = rec.status
        if status != "ok":
            if status == "error":
                self.errors += 1
                etype = rec.error_type or "_OTHER"
                types = self.error_types
                if types is None:
                    types = self.error_types = {}
                types[etype] = types.get(etype, 0) + 1
            else:
                self.cancelled += 1
        self.duration_sum += rec.duration
        durations = self.durations
        durations[duration_index] = durations.get(duration_index, 0) + 1
        if ttfc_index is not None:
            self.ttfc_count += 1
            self.ttfc_sum += rec.time_to_first_chunk or 0.0
            ttfc = self.ttfc
            ttfc[ttfc_index] = ttfc.get(ttfc_index, 0) + 1
        self.input_tokens += rec.input_tokens
        self.output_tokens += rec.output_tokens
        if cost is not None:
            self.cost += cost
        if rec.cache_hit:
            self.cache_hits += 1
        if rec.stream:
            self.streams += 1
        if rec.dedup_joined:
            self.dedup_joins += 1
        if rec.retries or rec.fallbacks or rec.rejections:
            self.retries += rec.retries
            self.fallbacks += rec.fallbacks
            self.rejections += rec.rejections

    def merge(self, other: _Agg) -> None:
        for name in ("count", "errors", "cancelled", "duration_sum", "ttfc_count", "ttfc_sum",
                     "input_tokens", "output_tokens", "cost", "cache_hits", "retries",
                     "dedup_joins", "fallbacks", "rejections", "streams"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.durations, other.durations), (self.ttfc, other.ttfc)):
            for index, count in theirs.items():
                mine[index] = mine.get(index, 0) + count
        if other.error_types:
            types = self.error_types
            if types is None:
                types = self.error_types = {}
            for etype, count in other.error_types.items():
                types[etype] = types.get(etype, 0) + count

    def summary(self, seconds: float) -> dict[str, Any]:
        """The JSON-ready statistics of this aggregate over ``seconds`` of wall time."""
        p50, p95, p99 = _sketch_quantiles(self.durations, (0.5, 0.95, 0.99))
        t50, t95 = _sketch_quantiles(self.ttfc, (0.5, 0.95))
        settled = self.count - self.cancelled
        return {
            "total_requests": self.count,
            "successful_requests": self.count - self.errors - self.cancelled,
            "failed_requests": self.errors,
            "cancelled_requests": self.cancelled,
            "error_rate": self.errors / settled if settled else 0.0,
            "requests_per_second": self.count / seconds if seconds > 0 else 0.0,
            "avg_duration_ms": _ms(self.duration_sum / self.count) if self.count else None,
            "p50_duration_ms": _ms(p50),
            "p95_duration_ms": _ms(p95),
            "p99_duration_ms": _ms(p99),
            "avg_time_to_first_chunk_ms": (_ms(self.ttfc_sum / self.ttfc_count)
                                           if self.ttfc_count else None),
            "p50_time_to_first_chunk_ms": _ms(t50),
            "p95_time_to_first_chunk_ms": _ms(t95),
            "streams": self.streams,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "total_cost": float(self.cost),
            "cache_hits": self.cache_hits,
            "cache_hit_rate": self.cache_hits / self.count if self.count else 0.0,
            "retries": self.retries,
            "dedup_joins": self.dedup_joins,
            "fallbacks": self.fallbacks,
            "circuit_rejections": self.rejections,
            "errors_by_type": dict(sorted((self.error_types or {}).items())),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


_Key = tuple[str, str]
_OVERALL: _Key = ("all", "")
_DIMENSIONS = ("model", "provider", "operation")
_DIM_POSITION = {"model": 0, "provider": 1, "operation": 2}
_Combo = tuple[str | None, str | None, str]


class RollingStats:
    """Per-call statistics over a rolling time window, in bounded memory.

    Time is cut into buckets of ``resolution`` seconds; only the last ``window`` seconds are
    kept. Each bucket aggregates everything, and each model, provider and operation name (at most
    ``max_keys`` names per dimension and bucket; more fold into ``"_other"``).
    """

    def __init__(self, *, window: float = 300.0, resolution: float = 5.0, max_keys: int = 64,
                 clock: Clock = system_clock) -> None:
        if not resolution > 0 or not window >= resolution:
            raise InvalidRequestError("need window >= resolution > 0", field="window")
        if max_keys < 1:
            raise InvalidRequestError("max_keys must be >= 1", field="max_keys")
        self.window = float(window)
        self.resolution = float(resolution)
        self.max_keys = max_keys
        self.clock = clock
        self.buckets = math.ceil(window / resolution)
        # Per bucket: (index, aggregates by key, names per dimension, combos). A call counts
        # once, in the aggregate of its (model, provider, operation) combo, which remembers
        # the keys (names folded as in ``_keys``) it is merged into when read; beyond
        # ``4 * max_keys`` combos, calls are added to the keyed aggregates directly.
        self._data: deque[tuple[int, dict[_Key, _Agg], dict[str, int],
                                dict[_Combo, tuple[_Agg, list[_Key]]]]] = deque()
        self._max_combos = 4 * max_keys
        self._lock = threading.Lock()

    def _evict(self, index: int) -> None:
        data = self._data
        oldest = index - self.buckets + 1
        while data and data[0][0] < oldest:
            data.popleft()

    def record(self, rec: CallRecord) -> None:
        """Add one call to the current bucket."""
        index = math.floor(self.clock.now() / self.resolution)
        duration = rec.duration  # _sketch_index, inlined (once per call)
        duration_index = (_ZERO if duration <= _TINY
                          else math.ceil(math.log(duration) / _LOG_GAMMA))
        ttfc = rec.time_to_first_chunk
        ttfc_index = None if ttfc is None else _sketch_index(ttfc)
        cost = rec.cost
        if cost is not None and not isinstance(cost, Decimal):
            cost = Decimal(str(cost))
        combo = (rec.model, rec.provider, rec.operation)
        with self._lock:
            data = self._data
            if not data or data[-1][0] != index:
                self._evict(index)
                data.append((index, {}, {}, {}))
            _, aggs, names, combos = data[-1]
            entry = combos.get(combo)
            if entry is None:
                keys = self._keys(aggs, names, combo)
                if len(combos) >= self._max_combos:
                    for key in keys:
                        agg = aggs.get(key)
                        if agg is None:
                            agg = aggs[key] = _Agg()
                        agg.add(rec, duration_index, ttfc_index, cost)
                    return
                entry = combos[combo] = (_Agg(), keys)
            entry[0].add(rec, duration_index, ttfc_index, cost)

    def _keys(self, aggs: dict[_Key, _Agg], names: dict[str, int],
              combo: _Combo) -> list[_Key]:
        """The keys a call of ``combo`` (model, provider, operation) counts under in a bucket;
        a name beyond ``max_keys`` in its dimension folds into ``"_other"``. Names are only
        ever added to a bucket, so the answer holds for the rest of the bucket."""
        model, provider, operation = combo
        keys: list[_Key] = []
        for key in (_OVERALL, ("model", model), ("provider", provider),
                    ("operation", operation)):
            if key[1] is None:
                continue
            dim = key[0]
            if dim != "all" and key not in aggs and not self._known(combo, dim, key[1]):
                if names.get(dim, 0) >= self.max_keys:
                    key = (dim, "_other")
                else:
                    names[dim] = names.get(dim, 0) + 1
            keys.append(key)  # type: ignore[arg-type]
        return keys

    def _known(self, combo: _Combo, dim: str, name: str) -> bool:
        """Whether ``name`` already counts in ``dim`` of the current bucket through a combo."""
        position = _DIM_POSITION[dim]
        for other, (_, keys) in self._data[-1][3].items():
            if other[position] == name and (dim, name) in keys:
                return True
        return False

    @staticmethod
    def _bucket_aggs(aggs: dict[_Key, _Agg],
                     combos: dict[_Combo, tuple[_Agg, list[_Key]]]) -> dict[_Key, _Agg]:
        """A bucket's aggregates by key: its keyed ones plus every combo merged in (fresh
        objects; the stored ones are left as they are)."""
        out: dict[_Key, _Agg] = {}
        for key, part in aggs.items():
            out[key] = total = _Agg()
            total.merge(part)
        for part, keys in combos.values():
            for key in keys:
                found = out.get(key)
                if found is None:
                    found = out[key] = _Agg()
                found.merge(part)
        return out

    @property
    def live_buckets(self) -> int:
        """Time buckets held now (at most :attr:`buckets`)."""
        return len(self._data)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()

    def snapshot(self) -> dict[str, Any]:
        """Overall, per-dimension and per-bucket statistics of the live window."""
        now = self.clock.now()
        index = math.floor(now / self.resolution)
        with self._lock:
            self._evict(index)
            buckets = [(i, self._bucket_aggs(aggs, combos)) for i, aggs, _, combos in self._data]
            merged: dict[_Key, _Agg] = {}
            for _, aggs in buckets:
                for key, part in aggs.items():
                    total = merged.get(key)
                    if total is None:
                        total = merged[key] = _Agg()
                    total.merge(part)
            per_bucket = {i: aggs.get(_OVERALL) for i, aggs in buckets}
            per_model = {i: {k[1]: a for k, a in aggs.items() if k[0] == "model"}
                         for i, aggs in buckets}
            # Seconds covered: from the oldest live bucket (or the window) up to now.
            first = buckets[0][0] if buckets else index
            covered = max(self.resolution, now - first * self.resolution)
            covered = min(covered, self.window)
            out = (merged.get(_OVERALL) or _Agg()).summary(covered)
            for dim in _DIMENSIONS:
                out[f"by_{dim}"] = {
                    name: agg.summary(covered)
                    for (kind, name), agg in sorted(merged.items()) if kind == dim
                }
            series = []
            wall_offset = time.time() - now
            for i in range(index - self.buckets + 1, index + 1):
                agg = per_bucket.get(i)
                point: dict[str, Any] = {"t": round((i * self.resolution) + wall_offset, 3)}
                if agg is None:
                    point.update(requests=0, errors=0, requests_per_second=0.0,
                                 avg_duration_ms=None, p95_duration_ms=None, tokens=0,
                                 cost=0.0, cost_by_model={})
                else:
                    (p95,) = _sketch_quantiles(agg.durations, (0.95,))
                    point.update(
                        requests=agg.count, errors=agg.errors,
                        requests_per_second=agg.count / self.resolution,
                        avg_duration_ms=_ms(agg.duration_sum / agg.count),
                        p95_duration_ms=_ms(p95),
                        tokens=agg.input_tokens + agg.output_tokens, cost=float(agg.cost),
                        cost_by_model={m: float(a.cost) for m, a in per_model[i].items()},
                    )
                series.append(point)
            out["series"] = series
        return out

    def __repr__(self) -> str:
        return (f"RollingStats(window={self.window:g}s, resolution={self.resolution:g}s, "
                f"live_buckets={len(self._data)})")


class OperationSpan:
    """A user operation started by :meth:`Observability.trace_operation`.

    Also a context manager: ``with obs.trace_operation("embed", model="m") as span:`` finishes
    with ``status="success"``, or ``"error"`` when the block raises; inside the block its
    OpenTelemetry span (if any) is the current span.
    """

    __slots__ = ("_observability", "_token", "attributes", "duration", "error", "finished",
                 "name", "otel_span", "started", "status")

    def __init__(self, observability: Observability, name: str, attributes: dict[str, Any],
                 started: float, otel_span: Span | None) -> None:
        self._observability = observability
        self.name = name
        self.attributes = attributes
        self.started = started
        self.otel_span = otel_span
        self.finished = False
        self.status: str | None = None
        self.error: str | None = None
        self.duration: float | None = None
        self._token: object = None

    def set_attribute(self, key: str, value: Any) -> None:
        """Add an attribute (also on the OpenTelemetry span)."""
        self.attributes[key] = value
        if self.otel_span is not None:
            from .tracing import attribute_value

            clean = attribute_value(value)
            if clean is not None:
                self.otel_span.set_attribute(key, clean)

    def add_event(self, name: str, **attributes: Any) -> None:
        """Record an event on the OpenTelemetry span (a no-op without one)."""
        if self.otel_span is not None:
            from .tracing import event_attributes

            self.otel_span.add_event(name, event_attributes(attributes))

    def __enter__(self) -> OperationSpan:
        if self.otel_span is not None:
            from opentelemetry import context, trace

            self._token = context.attach(trace.set_span_in_context(self.otel_span))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        token, self._token = self._token, None
        if token is not None:
            from opentelemetry import context

            context.detach(token)  # type: ignore[arg-type]
        if self.finished:
            return
        if exc is None:
            self._observability.finish_operation(self, status="success")
        else:
            from .tracing import error_type

            self._observability.finish_operation(
                self, status="error", error=str(exc), error_type=error_type(exc))

    def __repr__(self) -> str:
        state = self.status if self.finished else "open"
        return f"OperationSpan({self.name!r}, {state})"


_OK = frozenset({"success", "ok"})
_ERROR = frozenset({"error", "failure", "failed"})


class Observability:
    """Traces, statistics and the dashboard's data, for the tracing layers and for user code.

    ``window`` and ``resolution`` (seconds) shape the rolling statistics; ``max_keys`` bounds the
    names kept per dimension. ``tracer_provider`` is used for the spans of
    :meth:`trace_operation` (default: the global provider, if an SDK configured one).
    """

    def __init__(self, *, window: float = 300.0, resolution: float = 5.0, max_keys: int = 64,
                 clock: Clock = system_clock,
                 tracer_provider: TracerProvider | None = None) -> None:
        self.clock = clock
        self.stats = RollingStats(window=window, resolution=resolution, max_keys=max_keys,
                                  clock=clock)
        self.tracer_provider = tracer_provider
        self._lock = threading.Lock()
        self._active = 0
        self._life = {"requests": 0, "errors": 0, "cancelled": 0, "cache_hits": 0,
                      "dedup_joins": 0, "retries": 0, "fallbacks": 0, "circuit_rejections": 0,
                      "input_tokens": 0, "output_tokens": 0}
        self._life_cost = Decimal(0)

    # -- used by the tracing layers ---------------------------------------------------------

    def call_started(self) -> None:
        """Count a call in flight (pair with :meth:`call_finished`)."""
        with self._lock:
            self._active += 1

    def call_finished(self, record: CallRecord) -> None:
        """Record a finished call that :meth:`call_started` counted."""
        with self._lock:
            self._active -= 1
            self._count(record)
        self.stats.record(record)

    def record(self, record: CallRecord) -> None:
        """Add a finished call to the statistics (not counted as in flight before)."""
        with self._lock:
            self._count(record)
        self.stats.record(record)

    def _count(self, record: CallRecord) -> None:
        life = self._life
        life["requests"] += 1
        if record.status != "ok":
            life["errors" if record.status == "error" else "cancelled"] += 1
        if record.cache_hit:
            life["cache_hits"] += 1
        if record.dedup_joined:
            life["dedup_joins"] += 1
        if record.retries or record.fallbacks or record.rejections:
            life["retries"] += record.retries
            life["fallbacks"] += record.fallbacks
            life["circuit_rejections"] += record.rejections
        life["input_tokens"] += record.input_tokens
        life["output_tokens"] += record.output_tokens
        cost = record.cost
        if cost is not None:
            self._life_cost += cost if isinstance(cost, Decimal) else Decimal(str(cost))

    @property
    def active_operations(self) -> int:
        """Calls and operations in flight."""
        return self._active

    def lifetime(self) -> dict[str, Any]:
        """Counters since start (or :meth:`reset`): requests, errors, cache hits, tokens, cost..."""
        with self._lock:
            out: dict[str, Any] = dict(self._life)
            out["total_cost"] = float(self._life_cost)
        return out

    # -- the seed's API ---------------------------------------------------------------------

    def trace_operation(self, name: str, **attributes: Any) -> OperationSpan:
        """Start timing (and tracing) an operation; finish it with :meth:`finish_operation`.

        ``attributes`` are free-form; ``model`` and ``provider`` group the operation in the
        dashboard's per-model and per-provider statistics, and ``input_tokens``,
        ``output_tokens``, ``cost`` and ``cache_hit`` are counted when given (here or when
        finishing).
        """
        if not isinstance(name, str) or not name:
            raise InvalidRequestError("an operation needs a name", field="name")
        otel_span = None
        from .tracing import start_operation_span

        otel_span = start_operation_span(self.tracer_provider, name, attributes)
        with self._lock:
            self._active += 1
        return OperationSpan(self, name, dict(attributes), self.clock.now(), otel_span)

    def finish_operation(self, span: OperationSpan, status: str = "success",
                         error: str | None = None, **attributes: Any) -> None:
        """End an operation: ``status="success"``, or ``"error"`` with ``error=str(exc)``.

        Finishing twice does nothing. ``attributes`` are added to the span before it ends
        (``error_type=`` sets ``error.type``; default ``_OTHER`` for errors).
        """
        if span.finished:
            return
        if status in _OK:
            state: Status = "ok"
        elif status in _ERROR:
            state = "error"
        elif status == "cancelled":
            state = "cancelled"
        else:
            raise InvalidRequestError(
                f"status must be 'success' or 'error', got {status!r}", field="status")
        span.finished = True
        span.status = "success" if state == "ok" else status
        span.error = redact(error) if error else None
        span.duration = max(0.0, self.clock.now() - span.started)
        attrs = span.attributes
        attrs.update(attributes)
        etype = None
        if state != "ok":
            etype = str(attrs.get("error_type") or ("cancelled" if state == "cancelled"
                                                    else "_OTHER"))
        if span.otel_span is not None:
            from .tracing import end_operation_span

            end_operation_span(span.otel_span, attributes, etype, span.error)
        cost = attrs.get("cost")
        with self._lock:
            self._active -= 1
        self.record(CallRecord(
            operation=span.name,
            model=_opt_str(attrs.get("model")),
            provider=_opt_str(attrs.get("provider")),
            duration=span.duration,
            status=state,
            error_type=etype,
            input_tokens=_int(attrs.get("input_tokens")),
            output_tokens=_int(attrs.get("output_tokens")),
            cost=cost if isinstance(cost, Decimal | float | int) else None,
            cache_hit=bool(attrs.get("cache_hit", False)),
        ))

    def get_dashboard_data(self) -> dict[str, Any]:
        """Everything the dashboard shows, as JSON-ready data.

        Top level (over the rolling window): ``total_requests``, ``successful_requests``,
        ``failed_requests``, ``cancelled_requests``, ``error_rate``, ``requests_per_second``,
        ``avg_duration_ms``, ``p50/p95/p99_duration_ms``, ``avg/p50/p95_time_to_first_chunk_ms``,
        ``input_tokens``, ``output_tokens``, ``total_tokens``, ``total_cost``, ``cache_hits``,
        ``cache_hit_rate``, ``retries``, ``dedup_joins``, ``fallbacks``,
        ``circuit_rejections``, ``errors_by_type``; the same statistics ``by_model``,
        ``by_provider`` and ``by_operation``; ``series`` (one point per time bucket);
        ``circuit_breakers`` (every breaker: ``state``, ``total``, ``successful``, ``failed``,
        ``rejected`` and its full metrics in ``raw``), ``retry_metrics`` and
        ``cost_metrics`` (the process-wide figures), ``lifetime`` counters and
        ``active_operations``. Latency figures are ``None`` when there is no sample.
        """
        from .metrics import circuit_breaker_metrics, cost_metrics, retry_metrics

        data = self.stats.snapshot()
        data["window_seconds"] = self.stats.window
        data["resolution_seconds"] = self.stats.resolution
        data["generated_at"] = time.time()
        data["active_operations"] = self._active
        data["lifetime"] = self.lifetime()
        data["circuit_breakers"] = {name: _breaker_summary(m)
                                    for name, m in circuit_breaker_metrics().items()}
        data["retry_metrics"] = _jsonable(retry_metrics())
        data["cost_metrics"] = _jsonable(cost_metrics())
        return data

    def reset(self) -> None:
        """Forget the statistics and lifetime counters (calls in flight still finish)."""
        self.stats.clear()
        with self._lock:
            for key in self._life:
                self._life[key] = 0
            self._life_cost = Decimal(0)

    def __repr__(self) -> str:
        life = self._life
        return (f"Observability(requests={life['requests']}, errors={life['errors']}, "
                f"active={self._active}, {self.stats!r})")


def _breaker_summary(metrics: Any) -> dict[str, Any]:
    """One breaker's state and counts under fixed keys, with its full metrics in ``raw``."""
    from .metrics import lookup

    state = lookup(metrics, "circuit.state")
    state = getattr(state, "value", state)
    out: dict[str, Any] = {"state": str(state).lower() if state is not None else None}
    for part in ("total", "successful", "failed", "rejected"):
        out[part] = _jsonable(lookup(metrics, f"circuit.{part}"))
    out["raw"] = _jsonable(metrics)
    return out


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _jsonable(value: Any) -> Any:
    """Metrics from other modules (Decimals, enums, dataclasses) as JSON-ready values."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, str | int | float):
        return enum_value
    if hasattr(value, "__dict__"):
        return {k: _jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


_default: Observability | None = None
_default_lock = threading.Lock()


def get_observability() -> Observability:
    """The process-wide :class:`Observability` (created on first use)."""
    global _default
    obs = _default
    if obs is None:
        with _default_lock:
            obs = _default
            if obs is None:
                obs = _default = Observability()
    return obs


def set_observability(observability: Observability | None) -> None:
    """Replace the process-wide :class:`Observability` (``None``: a fresh one on next use)."""
    global _default
    with _default_lock:
        _default = observability
