"""The default pipeline of :class:`~llm_async.AsyncLLMClient`, outermost first.

Order is semantics (see docs/concepts/layers.md)::

    tracing → cache → dedup → cost/budget → fallback → retry → circuit breaker
            → concurrency → rate limit → transport (which applies the timeouts)

A cache hit spends nothing; dedup bills a shared call once; the budget rejects before anything
queues; every retry passes back through the breaker and the limits, so retries never burst; an
open breaker ends the retry loop at once and lets fallback move on; time spent queued in our own
limits never counts as a provider timeout, because the transport, innermost, owns the timeouts.

Each feature contributes one entry below; an entry returns ``None`` when the client's options
switch it off. Every import is lazy, so a feature that is off costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .domain.ports import LayerFactory

if TYPE_CHECKING:
    from .client import AsyncLLMClient

__all__ = ["default_layers"]

LayerEntry = Callable[["AsyncLLMClient"], LayerFactory | None]


def _entries() -> list[LayerEntry]:
    """One function per default layer, outermost first."""
    return []


def default_layers(client: AsyncLLMClient) -> list[LayerFactory]:
    """The layer factories of ``client``'s default pipeline."""
    layers: list[LayerFactory] = []
    for entry in _entries():
        factory = entry(client)
        if factory is not None:
            layers.append(factory)
    return layers
