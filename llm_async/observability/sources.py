"""Live state of the other layers, read when the dashboard or a metric reader asks for it.

:class:`LiveSources` keeps (weakly) the circuit-breaker layers and cost managers that a
:class:`~llm_async.observability.tracing.TracingLayer` finds below it in its client's stack, so
the dashboard and the ``circuit.*`` / ``cost.*`` instruments see every client's breakers (each
client has its own, per provider and model) and not only the process registry's. A client that
is closed and dropped disappears from them.

The breaker, cost and retry modules are imported inside the readers: they may be absent from a
trimmed install, and importing them here would make every tracing user pay for them.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import weakref
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "CIRCUIT_STATE_VALUES",
    "LiveSources",
    "circuit_state_value",
    "jsonable",
    "lookup",
    "process_breakers",
    "process_cost_manager",
    "retry_metrics",
]

logger = logging.getLogger("llm_async.observability")

#: ``circuit.state`` values: higher is worse.
CIRCUIT_STATE_VALUES: Mapping[str, int] = {"closed": 0, "half_open": 1, "open": 2}

#: Keys accepted for each figure, in order (the metric name first, then its dict forms).
_KEYS: Mapping[str, tuple[str, ...]] = {
    "circuit.state": ("circuit.state", "state"),
    "circuit.total": ("circuit.requests.total", "total_requests", "requests_total", "total"),
    "circuit.successful": ("circuit.requests.successful", "successful_requests",
                           "successful", "successes"),
    "circuit.failed": ("circuit.requests.failed", "failed_requests", "failed", "failures"),
    "circuit.rejected": ("circuit.requests.rejected", "rejected_requests", "rejected",
                         "rejections"),
    "cost.total": ("cost.total", "total_cost", "total"),
    "cost.by_model": ("cost.by_model", "by_model", "cost_by_model"),
    "cost.by_user": ("cost.by_user", "by_user", "cost_by_user"),
    "cost.by_project": ("cost.by_project", "by_project", "cost_by_project"),
    "cost.requests": ("cost.requests", "total_requests", "requests", "request_count"),
    "retry.attempts": ("retry.attempts", "total_attempts", "attempts", "retry_attempts"),
    "retry.successful": ("retry.successful", "successful_retries", "successful"),
    "retry.failed": ("retry.failed", "failed_retries", "failed"),
    "retry.delay": ("retry.delay", "total_delay", "delay", "total_delay_seconds"),
}


def lookup(data: Any, figure: str) -> Any:
    """The value of ``figure`` (a key of :data:`_KEYS`) in a metrics mapping, or ``None``."""
    if not isinstance(data, Mapping):
        data = getattr(data, "__dict__", {})
    for key in _KEYS[figure]:
        if key in data:
            return data[key]
    return None


def circuit_state_value(state: Any) -> int | None:
    """``circuit.state`` as a number (see :data:`CIRCUIT_STATE_VALUES`)."""
    name = getattr(state, "value", state)
    if isinstance(name, str):
        return CIRCUIT_STATE_VALUES.get(name.lower().replace("-", "_"))
    return None


def jsonable(value: Any) -> Any:
    """Values of other modules (Decimals, enums, datetimes, models) as JSON-ready values."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    enum_value = getattr(value, "value", None)
    if isinstance(enum_value, str | int | float):
        return enum_value
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump())
    if hasattr(value, "__dict__"):
        return {k: jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _optional(module: str) -> Any:
    """``llm_async.<module>``, or ``None`` when that part of the package is not installed."""
    name = f"llm_async.{module}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


def process_breakers() -> list[Any]:
    """The breakers of the process registry (shared by name across clients)."""
    module = _optional("application.circuit_breaker")
    if module is None:
        return []
    breakers = module.all_circuit_breakers()
    items: Iterable[Any] = breakers.values() if isinstance(breakers, Mapping) else breakers
    return list(items)


def process_cost_manager() -> Any:
    """The process-wide cost manager (``None`` when the cost module is absent)."""
    module = _optional("application.cost_manager")
    return None if module is None else module.get_cost_manager()


def retry_metrics() -> Mapping[str, Any]:
    """The process-wide retry metrics ({} when the retry module is absent)."""
    module = _optional("application.retry_strategy")
    if module is None:
        return {}
    metrics = module.get_retry_metrics()
    return metrics if isinstance(metrics, Mapping) else dict(getattr(metrics, "__dict__", {}))


def _is_breaker_holder(handler: Any) -> bool:
    breakers = getattr(handler, "breakers", None)
    return isinstance(breakers, Mapping) and callable(getattr(handler, "breaker_for", None))


def _is_cost_manager(value: Any) -> bool:
    return callable(getattr(value, "get_metrics", None)) and callable(
        getattr(value, "get_all_budget_statuses", None))


class LiveSources:
    """The breaker layers and cost managers of the clients reporting to one observability.

    Held weakly: registering costs nothing once a client is gone. :meth:`watch_stack` is what a
    tracing layer calls with its inner handler.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: weakref.WeakSet[Any] = weakref.WeakSet()
        self._managers: weakref.WeakSet[Any] = weakref.WeakSet()

    def watch_stack(self, handler: Any) -> None:
        """Remember the breaker layers and cost managers found in ``handler``'s stack."""
        from ..domain.ports import iter_stack

        for item in iter_stack(handler):
            if _is_breaker_holder(item):
                self.watch_breakers(item)
            manager = getattr(item, "manager", None)
            if manager is not None and _is_cost_manager(manager):
                self.watch_cost_manager(manager)

    def watch_breakers(self, holder: Any) -> None:
        """Show the breakers of ``holder`` (an object with a ``breakers`` mapping)."""
        with self._lock:
            self._holders.add(holder)

    def watch_cost_manager(self, manager: Any) -> None:
        """Show the budgets and spend of ``manager``."""
        with self._lock:
            self._managers.add(manager)

    def breakers(self) -> list[Any]:
        """Every watched client's breakers, then the process registry's (each breaker once)."""
        with self._lock:
            holders = list(self._holders)
        out: list[Any] = []
        seen: set[int] = set()
        for holder in holders:
            for breaker in list(holder.breakers.values()):
                if id(breaker) not in seen:
                    seen.add(id(breaker))
                    out.append(breaker)
        for breaker in process_breakers():
            if id(breaker) not in seen:
                seen.add(id(breaker))
                out.append(breaker)
        return out

    def cost_managers(self) -> list[Any]:
        """Every watched cost manager; the process-wide one when none is watched (a client
        with the default pipeline records to it, and is then watched anyway)."""
        with self._lock:
            managers = list(self._managers)
        if not managers:
            default = process_cost_manager()
            if default is not None:
                managers.append(default)
        return managers

