"""The observability facade of the public contract: :func:`get_observability` and
:class:`Observability`.

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
one :class:`~llm_async.observability.stats.RollingStats` (the rolling window behind the
dashboard's numbers) and in a bounded list of recent calls. The tracing layers also register the
breaker layers and cost managers of their clients (:class:`~.sources.LiveSources`), so the
dashboard shows every client's breakers, budgets and spend.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._clock import Clock, system_clock
from ..errors import InvalidRequestError, redact
from .classify import error_type
from .panels import breaker_panel, budget_panel, cost_metrics_panel, spend_panel
from .sources import LiveSources, jsonable, process_cost_manager, retry_metrics
from .stats import CallRecord, RollingStats, Status

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

#: Characters of a prompt or completion kept in the recent-calls list (content capture only).
CONTENT_PREVIEW = 500

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
            from .otel import attribute_value

            clean = attribute_value(value)
            if clean is not None:
                self.otel_span.set_attribute(key, clean)

    def add_event(self, name: str, **attributes: Any) -> None:
        """Record an event on the OpenTelemetry span (a no-op without one)."""
        if self.otel_span is not None:
            from .otel import event_attributes

            self.otel_span.add_event(name, event_attributes(attributes))

    def __enter__(self) -> OperationSpan:
        if self.otel_span is not None:
            from .otel import attach_span

            self._token = attach_span(self.otel_span)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        token, self._token = self._token, None
        if token is not None:
            from .otel import detach

            detach(token)
        if self.finished:
            return
        if exc is None:
            self._observability.finish_operation(self, status="success")
        else:
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
    ``recent_calls`` bounds the list of recent calls the dashboard shows.
    """

    #: Breakers (``provider/model``) whose latest failure is remembered, at most.
    max_failures = 256

    def __init__(self, *, window: float = 300.0, resolution: float = 5.0, max_keys: int = 64,
                 clock: Clock = system_clock, tracer_provider: TracerProvider | None = None,
                 recent_calls: int = 50) -> None:
        if not isinstance(recent_calls, int) or recent_calls < 0:
            raise InvalidRequestError("recent_calls must be an int >= 0", field="recent_calls")
        self.clock = clock
        self.sources = LiveSources()
        self._recent: deque[tuple[float, CallRecord]] = deque(maxlen=recent_calls)
        self._failures: OrderedDict[str, dict[str, Any]] = OrderedDict()
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
        self._recent.append((time.time(), record))

    def record(self, record: CallRecord) -> None:
        """Add a finished call to the statistics (not counted as in flight before)."""
        with self._lock:
            self._count(record)
        self.stats.record(record)
        self._recent.append((time.time(), record))

    def note_failure(self, provider: str | None, model: str, error_type: str,
                     message: str | None = None, *, keep: bool = False) -> None:
        """Remember the latest failure of ``provider``'s ``model`` (shown with its breaker);
        ``keep=True`` records it only when none is known yet.

        ``message`` must already be free of content and secrets (the tracing layer scrubs it);
        it is redacted again here and cut to 300 characters.
        """
        name = f"{provider or 'default'}/{model}"
        entry = {"type": error_type, "message": redact(message)[:300] if message else None,
                 "at": time.time()}
        with self._lock:
            failures = self._failures
            if keep and name in failures:
                return
            failures[name] = entry
            failures.move_to_end(name)
            while len(failures) > self.max_failures:
                failures.popitem(last=False)

    def last_failures(self) -> dict[str, dict[str, Any]]:
        """``{"provider/model": {"type", "message", "at"}}`` of the latest failures seen."""
        with self._lock:
            return {name: dict(entry) for name, entry in self._failures.items()}

    def recent_calls(self) -> list[dict[str, Any]]:
        """The latest calls, newest first (at most ``recent_calls``): time, model, status,
        error type, latency, tokens, cost (``None`` and ``unpriced`` when the model has no
        price); prompt and completion only for calls traced with content capture on."""
        return [_recent_entry(at, rec) for at, rec in reversed(list(self._recent))]

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

    # -- the facade's API -------------------------------------------------------------------

    def trace_operation(self, name: str, **attributes: Any) -> OperationSpan:
        """Start timing (and tracing) an operation; finish it with :meth:`finish_operation`.

        ``attributes`` are free-form; ``model`` and ``provider`` group the operation in the
        dashboard's per-model and per-provider statistics, and ``input_tokens``,
        ``output_tokens``, ``cost`` and ``cache_hit`` are counted when given (here or when
        finishing).
        """
        if not isinstance(name, str) or not name:
            raise InvalidRequestError("an operation needs a name", field="name")
        from .otel import start_operation_span

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
            from .otel import end_operation_span

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
        ``input_tokens``, ``output_tokens``, ``total_tokens``, ``total_cost``,
        ``priced_requests``, ``unpriced_requests`` (calls to models without a price),
        ``cache_hits``, ``cache_hit_rate``, ``retries``, ``dedup_joins``, ``fallbacks``,
        ``circuit_rejections`` and ``errors_by_type`` (failures by root cause: a call rejected
        by an open breaker counts under the failure behind it, and in ``circuit_rejections``);
        the same statistics ``by_model``, ``by_provider`` and ``by_operation``; ``series`` (one
        point per time bucket).

        Live state: ``circuit_breakers`` (every breaker of every client reporting here, and of
        the process registry: ``state``, ``provider``, ``model``, ``total``, ``successful``,
        ``failed``, ``rejected``, ``retry_after``, ``last_failure`` and its metrics in
        ``raw``), ``budgets`` (``spent``, ``limit``, ``forecast``, ...) and ``spend``
        (``by_user``, ``by_project``) of the clients' cost managers (the process-wide one when
        no client reported yet), ``recent_calls`` (see :meth:`recent_calls`),
        ``retry_metrics`` and ``cost_metrics`` (the process-wide figures), ``lifetime``
        counters and ``active_operations``. Latency figures are ``None`` when there is no
        sample.
        """
        data = self.stats.snapshot()
        data["window_seconds"] = self.stats.window
        data["resolution_seconds"] = self.stats.resolution
        data["generated_at"] = time.time()
        data["active_operations"] = self._active
        data["lifetime"] = self.lifetime()
        data["circuit_breakers"] = breaker_panel(self.sources.breakers(), self.last_failures())
        managers = self.sources.cost_managers()
        data["budgets"] = budget_panel(managers)
        data["spend"] = spend_panel(managers)
        data["recent_calls"] = self.recent_calls()
        data["retry_metrics"] = jsonable(retry_metrics())
        data["cost_metrics"] = cost_metrics_panel(process_cost_manager())
        return data

    def reset(self) -> None:
        """Forget the statistics and lifetime counters (calls in flight still finish)."""
        self.stats.clear()
        with self._lock:
            for key in self._life:
                self._life[key] = 0
            self._life_cost = Decimal(0)
            self._failures.clear()
        self._recent.clear()

    def __repr__(self) -> str:
        life = self._life
        return (f"Observability(requests={life['requests']}, errors={life['errors']}, "
                f"active={self._active}, {self.stats!r})")


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _recent_entry(at: float, rec: CallRecord) -> dict[str, Any]:
    cost = rec.cost
    entry: dict[str, Any] = {
        "at": at,
        "call_id": rec.call_id,
        "operation": rec.operation,
        "provider": rec.provider,
        "model": rec.model,
        "status": rec.status,
        "error_type": rec.error_type,
        "latency_ms": round(rec.duration * 1000.0, 3),
        "time_to_first_chunk_ms": (None if rec.time_to_first_chunk is None
                                   else round(rec.time_to_first_chunk * 1000.0, 3)),
        "input_tokens": rec.input_tokens,
        "output_tokens": rec.output_tokens,
        "cost": None if cost is None else float(cost),
        "unpriced": rec.unpriced,
        "cache_hit": rec.cache_hit,
        "stream": rec.stream,
        "retries": rec.retries,
    }
    if rec.prompt is not None or rec.completion is not None:
        entry["prompt"] = rec.prompt
        entry["completion"] = rec.completion
    return entry


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
