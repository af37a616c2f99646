"""Observability: OpenTelemetry traces and metrics on the GenAI conventions, the observability
facade of the public contract (``get_observability()``), and a live dashboard page.

Names load lazily, so importing this package imports neither OpenTelemetry nor aiohttp.web::

    from llm_async.observability import get_observability

    obs = get_observability()
    span = obs.trace_operation("llm_call", model="gpt-4")
    obs.finish_operation(span, status="success")
    print(obs.get_dashboard_data()["avg_duration_ms"])

Modules: ``stats`` (the rolling window), ``classify`` (error types and root causes), ``otel``
(the optional OpenTelemetry imports and span helpers), ``tracing`` (the layer), ``metrics``
(instruments), ``sources`` and ``panels`` (live state of breakers, budgets and spend),
``facade`` (:class:`Observability`) and ``dashboard`` (the web page).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "CallRecord": ".stats",
    "RollingStats": ".stats",
    "Observability": ".facade",
    "OperationSpan": ".facade",
    "get_observability": ".facade",
    "set_observability": ".facade",
    "ERROR_TYPES": ".classify",
    "error_type": ".classify",
    "failure_type": ".classify",
    "root_cause": ".classify",
    "TracingLayer": ".tracing",
    "DURATION_BUCKETS": ".metrics",
    "TOKEN_BUCKETS": ".metrics",
    "LIVE_METRIC_NAMES": ".metrics",
    "GenAIMetrics": ".metrics",
    "register_live_metrics": ".metrics",
    "DashboardServer": ".dashboard",
    "create_dashboard_app": ".dashboard",
    "serve_dashboard": ".dashboard",
    "setup_dashboard": ".dashboard",
}

__all__ = [
    "DURATION_BUCKETS",
    "ERROR_TYPES",
    "LIVE_METRIC_NAMES",
    "TOKEN_BUCKETS",
    "CallRecord",
    "DashboardServer",
    "GenAIMetrics",
    "Observability",
    "OperationSpan",
    "RollingStats",
    "TracingLayer",
    "create_dashboard_app",
    "error_type",
    "failure_type",
    "get_observability",
    "register_live_metrics",
    "root_cause",
    "serve_dashboard",
    "set_observability",
    "setup_dashboard",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .classify import ERROR_TYPES, error_type, failure_type, root_cause
    from .dashboard import DashboardServer, create_dashboard_app, serve_dashboard, setup_dashboard
    from .facade import Observability, OperationSpan, get_observability, set_observability
    from .metrics import (
        DURATION_BUCKETS,
        LIVE_METRIC_NAMES,
        TOKEN_BUCKETS,
        GenAIMetrics,
        register_live_metrics,
    )
    from .stats import CallRecord, RollingStats
    from .tracing import TracingLayer
