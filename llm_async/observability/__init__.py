"""Observability: OpenTelemetry traces and metrics on the GenAI conventions, the seed's facade
(``get_observability()``), and a live dashboard page.

Names load lazily, so importing this package imports neither OpenTelemetry nor aiohttp.web::

    from llm_async.observability import get_observability

    obs = get_observability()
    span = obs.trace_operation("llm_call", model="gpt-4")
    obs.finish_operation(span, status="success")
    print(obs.get_dashboard_data()["avg_duration_ms"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "CallRecord": ".facade",
    "Observability": ".facade",
    "OperationSpan": ".facade",
    "RollingStats": ".facade",
    "get_observability": ".facade",
    "set_observability": ".facade",
    "ERROR_TYPES": ".tracing",
    "TracingLayer": ".tracing",
    "error_type": ".tracing",
    "DURATION_BUCKETS": ".metrics",
    "TOKEN_BUCKETS": ".metrics",
    "SEED_METRIC_NAMES": ".metrics",
    "GenAIMetrics": ".metrics",
    "register_seed_metrics": ".metrics",
    "DashboardServer": ".dashboard",
    "create_dashboard_app": ".dashboard",
    "serve_dashboard": ".dashboard",
    "setup_dashboard": ".dashboard",
}

__all__ = [
    "DURATION_BUCKETS",
    "ERROR_TYPES",
    "SEED_METRIC_NAMES",
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
    "get_observability",
    "register_seed_metrics",
    "serve_dashboard",
    "set_observability",
    "setup_dashboard",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .dashboard import DashboardServer, create_dashboard_app, serve_dashboard, setup_dashboard
    from .facade import (
        CallRecord,
        Observability,
        OperationSpan,
        RollingStats,
        get_observability,
        set_observability,
    )
    from .metrics import (
        DURATION_BUCKETS,
        SEED_METRIC_NAMES,
        TOKEN_BUCKETS,
        GenAIMetrics,
        register_seed_metrics,
    )
    from .tracing import ERROR_TYPES, TracingLayer, error_type
