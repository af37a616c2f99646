"""What the service reports about its client's layers (cost, circuit breakers, retries), read
on the service's loop and returned as plain numbers and text."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from ..client import AsyncLLMClient


def _plain(value: Any) -> Any:
    """Decimals to floats, enums to their values, datetimes to ISO text, recursively."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cost_manager_of(client: AsyncLLMClient) -> Any:
    """The manager of the client's cost layer; ``None`` when the pipeline tracks no cost."""
    from ..application.cost_manager import CostLayer

    layer = client.layer(CostLayer)
    return None if layer is None else layer.manager


def _cost_metrics(client: AsyncLLMClient) -> dict[str, Any]:
    from ..application.cost_manager import CostMetrics

    manager = _cost_manager_of(client)
    if manager is None:  # track_cost=False: nothing is recorded
        return {**_plain(CostMetrics().to_dict()), "budgets": {}, "enabled": False}
    data: dict[str, Any] = _plain(manager.get_metrics().to_dict())
    data.update(_plain(manager.metrics()))
    data["budgets"] = {name: _plain(status.to_dict())
                       for name, status in manager.get_all_budget_statuses().items()}
    data["enabled"] = True
    return data


def _circuit_breaker_status(client: AsyncLLMClient, model: str | None) -> dict[str, Any]:
    from ..application.circuit_breaker import CircuitBreakerLayer, CircuitState

    layer = client.layer(CircuitBreakerLayer)
    if layer is None:  # circuit_breaker_config=None: nothing ever trips
        return {"state": CircuitState.CLOSED.value, "enabled": False, "breakers": {},
                "circuit.state": CircuitState.CLOSED.value}
    if model is not None:
        provider, bare = client.resolve(model)
        name = f"{provider or 'default'}/{bare}"
        breaker = layer.breakers.get(name)
        if breaker is None:  # not called yet: a breaker that would start closed
            return {"name": name, "state": CircuitState.CLOSED.value, "enabled": True}
        return {**breaker.status(), **breaker.metrics(), "enabled": True}
    metrics = layer.metrics()
    metrics.pop("breakers", None)
    return {**metrics, **layer.status(), "enabled": True}


def _retry_metrics(client: AsyncLLMClient) -> dict[str, Any]:
    from ..application.retry_strategy import RetryLayer, RetryMetrics

    layer = client.layer(RetryLayer)
    if layer is None:  # retry_config=None: no retries, all counters zero
        return {**RetryMetrics().snapshot(), "enabled": False}
    return {**layer.metrics(), "enabled": True}
