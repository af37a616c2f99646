"""The dashboard's live-state panels: circuit breakers, budgets and spend per user and project.

Each function reads the state of other layers through :class:`~.sources.LiveSources` and returns
JSON-ready data; a part that cannot be read is logged and left out, never allowed to break the
rest of the page.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .sources import jsonable, lookup

__all__ = ["breaker_panel", "budget_panel", "cost_metrics_panel", "spend_panel", "split_name"]

logger = logging.getLogger("llm_async.observability")


def split_name(name: str) -> tuple[str | None, str | None]:
    """``(provider, model)`` of a breaker named ``"provider/model"`` (a client's breakers are)."""
    provider, sep, model = name.partition("/")
    if not sep or not provider or not model:
        return None, None
    return provider, model


def _breaker_state(breaker: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, status)`` of a breaker; ``status`` is ``{}`` when it has none."""
    metrics = breaker.metrics()
    status_of = getattr(breaker, "status", None)
    status = status_of() if callable(status_of) else {}
    return (dict(metrics) if isinstance(metrics, Mapping) else dict(vars(metrics)),
            dict(status) if isinstance(status, Mapping) else {})


def breaker_panel(breakers: Iterable[Any],
                  last_failures: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One entry per breaker: ``state``, ``provider``, ``model``, the request counts,
    ``retry_after`` (seconds until a probe is let in, when open), ``last_failure`` (``type``,
    ``message``, ``at``: the latest failure the tracing layers saw for that provider and model,
    or ``None``) and the breaker's own metrics in ``raw``."""
    out: dict[str, dict[str, Any]] = {}
    for index, breaker in enumerate(breakers):
        try:
            metrics, status = _breaker_state(breaker)
        except Exception:  # a shared breaker whose store is unreachable
            logger.warning("could not read circuit breaker %r",
                           getattr(breaker, "name", index), exc_info=True)
            continue
        name = str(getattr(breaker, "name", "") or status.get("name") or index)
        state = lookup(metrics, "circuit.state")
        state = getattr(state, "value", state)
        provider, model = split_name(name)
        entry: dict[str, Any] = {
            "state": str(state).lower() if state is not None else None,
            "provider": provider,
            "model": model,
        }
        for part in ("total", "successful", "failed", "rejected"):
            entry[part] = jsonable(lookup(metrics, f"circuit.{part}"))
        retry_after = status.get("retry_after")
        entry["retry_after"] = (float(retry_after)
                                if isinstance(retry_after, int | float) else None)
        failure = last_failures.get(name)
        entry["last_failure"] = dict(failure) if failure is not None else None
        entry["raw"] = jsonable(metrics)
        out[name] = entry
    return out


def _budgets_of(manager: Any) -> dict[str, Any]:
    read = getattr(manager, "get_all_budget_statuses", None)
    if not callable(read):
        return {}
    statuses = read()
    return dict(statuses) if isinstance(statuses, Mapping) else {}


def budget_panel(managers: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Every budget of every cost manager: ``scope``, ``period``, ``spent``, ``limit``,
    ``reserved``, ``remaining``, ``percentage``, ``forecast`` (projected spend at
    ``resets_at``), ``forecast_percentage``, ``exceeded``, ``hard_limit``. A name used by two
    managers gets a ``#2`` suffix."""
    out: dict[str, dict[str, Any]] = {}
    for manager in managers:
        try:
            statuses = _budgets_of(manager)
        except Exception:
            logger.warning("could not read the budgets of %r", manager, exc_info=True)
            continue
        for name, status in statuses.items():
            key, n = str(name), 2
            while key in out:
                key, n = f"{name}#{n}", n + 1
            data = jsonable(status)
            if not isinstance(data, dict):
                continue
            out[key] = {field: data.get(field) for field in (
                "scope", "period", "spent", "limit", "reserved", "remaining", "percentage",
                "forecast", "forecast_percentage", "projected_exhaustion", "resets_at",
                "exceeded", "soft_limit_reached", "hard_limit")}
    return out


def _spend_of(manager: Any) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    read = getattr(manager, "get_metrics", None)
    if callable(read):
        metrics = read()
        return (getattr(metrics, "by_user", None) or {}, getattr(metrics, "by_project", None) or {})
    metrics = manager.metrics()
    return (lookup(metrics, "cost.by_user") or {}, lookup(metrics, "cost.by_project") or {})


def spend_panel(managers: Iterable[Any]) -> dict[str, dict[str, float]]:
    """``{"by_user": {user: USD}, "by_project": {project: USD}}`` over every cost manager,
    largest first."""
    users: dict[str, Decimal] = {}
    projects: dict[str, Decimal] = {}
    for manager in managers:
        try:
            by_user, by_project = _spend_of(manager)
        except Exception:
            logger.warning("could not read the spend of %r", manager, exc_info=True)
            continue
        for table, into in ((by_user, users), (by_project, projects)):
            if not isinstance(table, Mapping):
                continue
            for key, amount in table.items():
                if isinstance(amount, Decimal | int | float) and not isinstance(amount, bool):
                    into[str(key)] = into.get(str(key), Decimal(0)) + Decimal(str(amount))
    return {
        "by_user": {k: float(v) for k, v in sorted(users.items(), key=lambda kv: -kv[1])},
        "by_project": {k: float(v) for k, v in sorted(projects.items(), key=lambda kv: -kv[1])},
    }


def cost_metrics_panel(manager: Any) -> Any:
    """The ``metrics()`` of one cost manager, JSON-ready ({} without one)."""
    if manager is None:
        return {}
    try:
        metrics = manager.metrics()
    except Exception:
        logger.warning("could not read the cost metrics of %r", manager, exc_info=True)
        return {}
    return jsonable(metrics if isinstance(metrics, Mapping) else vars(metrics))
