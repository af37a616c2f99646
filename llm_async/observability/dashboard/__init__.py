"""The live dashboard: a page with latency, throughput, failures by root cause, every client's
circuit breakers, cost (unpriced models marked), budgets, spend per user and project, and the
recent calls, refreshed by polling a JSON endpoint.

``app`` is the aiohttp web application (imported when used), ``demo`` the demo traffic and
``cli`` the ``llm-async dashboard`` command line; each is separate from the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "DashboardServer": ".app",
    "create_dashboard_app": ".app",
    "serve_dashboard": ".app",
    "setup_dashboard": ".app",
    "run_demo_traffic": ".demo",
}

__all__ = [
    "DashboardServer",
    "create_dashboard_app",
    "run_demo_traffic",
    "serve_dashboard",
    "setup_dashboard",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .app import DashboardServer, create_dashboard_app, serve_dashboard, setup_dashboard
    from .demo import run_demo_traffic
