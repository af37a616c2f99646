"""The process-wide registry of named breakers."""

from __future__ import annotations

import threading

from ..._clock import Clock, system_clock
from ...errors import (
    ConfigurationError,
)
from .breaker import CircuitBreaker
from .config import CircuitBreakerConfig

__all__ = [
    "all_circuit_breakers",
    "get_circuit_breaker",
    "remove_circuit_breaker",
]


_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()


def get_circuit_breaker(name: str, config: CircuitBreakerConfig | None = None, *,
                        clock: Clock = system_clock) -> CircuitBreaker:
    """The process-wide breaker called ``name``, created with ``config`` on first use.

    Later calls return the same breaker; a different ``config`` for an existing name raises
    :class:`~llm_async.errors.ConfigurationError` rather than being silently ignored.
    """
    with _registry_lock:
        breaker = _registry.get(name)
        if breaker is None:
            breaker = _registry[name] = CircuitBreaker(name, config, clock=clock)
        elif config is not None and config != breaker.config:
            raise ConfigurationError(
                f"circuit breaker {name!r} already exists with another config")
        return breaker


def all_circuit_breakers() -> dict[str, CircuitBreaker]:
    """Every breaker of the registry, by name."""
    with _registry_lock:
        return dict(_registry)


def remove_circuit_breaker(name: str) -> CircuitBreaker | None:
    """Drop ``name`` from the registry (returns it, or ``None``)."""
    with _registry_lock:
        return _registry.pop(name, None)
