"""The default pipeline of :class:`~llm_async.AsyncLLMClient`, outermost first.

Order is semantics (see docs/concepts/layers.md)::

    tracing → cache → dedup → fallback → retry → cost/budget → circuit breaker
            → concurrency → rate limit → transport (which applies the timeouts)

A cache hit spends nothing; dedup bills a shared call once; the cost layer sees every attempt
(each retry and each fallback model is reserved, checked and billed on its own, at its own
model's price) and the budget rejects before anything queues; every retry passes back through
the breaker and the limits, so retries never burst; an
open breaker ends the retry loop at once and lets fallback move on; time spent queued in our own
limits never counts as a provider timeout, because the transport, innermost, owns the timeouts.

Each feature contributes one entry below; an entry returns ``None`` when the client's options
switch it off. Every import is lazy, so a feature that is off costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .domain.ports import LayerFactory

if TYPE_CHECKING:
    from .client import AsyncLLMClient

__all__ = ["default_layers"]

LayerEntry = Callable[["AsyncLLMClient"], LayerFactory | None]


def _tracing(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 7: spans, metrics and dashboard statistics for every logical call (outermost).

    Off with ``tracing=False``; ``capture_content=True`` records message content on spans.
    ``tracer_provider=``, ``meter_provider=`` and ``observability=`` client keywords are passed
    through (default: the global providers and the process-wide observability).
    """
    if not client.options.tracing:
        return None
    from functools import partial

    from .observability.tracing import TracingLayer

    extra = client.options.extra
    endpoints = {name: url for name, transport in client.transports.items()
                 if isinstance(url := getattr(transport, "base_url", None), str)}
    return partial(TracingLayer, capture_content=client.options.capture_content,
                   endpoints=endpoints, tracer_provider=extra.get("tracer_provider"),
                   meter_provider=extra.get("meter_provider"),
                   observability=extra.get("observability"))


def _cache(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 6: the response cache. On with ``cache_enabled=True``, or when it is ``None`` and a
    ``cache=`` was passed or ``LLM_CACHE_ENABLED`` is set; ``cache_ttl`` (else ``LLM_CACHE_TTL``)
    is the lifetime; ``cache_config=CacheConfig(...)`` (client keyword) tunes the rest."""
    options = client.options
    enabled = options.cache_enabled
    if enabled is None:
        enabled = options.cache is not None or options.settings.cache_enabled
    if not enabled:
        return None
    from .optimization.cache import cache_layer_factory

    return cache_layer_factory(client)


def _dedup(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 6: concurrent identical calls share one upstream call (``dedup_enabled=True``);
    ``dedup_config=DedupConfig(...)`` (client keyword) tunes it."""
    if not client.options.dedup_enabled:
        return None
    from .optimization.dedup import dedup_layer_factory

    return dedup_layer_factory(client)


def _cost(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 5: cost tracking and hard budgets, per attempt (reserve the worst case before
    sending, bill every attempt that was sent). Off with ``track_cost=False`` or
    ``cost_manager=None``; uses
    ``client.cost_manager`` (the process-wide manager unless one was passed), which gets the
    ``daily`` / ``monthly`` budgets of the client's settings. ``cost_options={...}`` (client
    keyword) passes ``CostLayer`` options such as ``cap_output`` or ``default_max_tokens``."""
    manager = client.cost_manager
    if not client.options.track_cost or manager is None:
        return None
    from .application.cost_manager import cost_layer_factory

    manager.apply_settings(client.settings)
    options = dict(client.options.extra.get("cost_options") or {})
    return cost_layer_factory(manager, **options)


def _fallback(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 4: move to the next model of ``fallback_models`` when one fails. Always present, so
    ``options={"fallback_models": [...]}`` works per call; a pass-through when the list is
    empty."""
    from functools import partial

    from .application.fallback import FallbackLayer

    return partial(FallbackLayer, models=tuple(client.options.fallback_models or ()),
                   max_depth=int(client.options.extra.get("fallback_max_depth", 3)),
                   resolve=client.resolve)


def _retry(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 4: retries. ``retry_config=DEFAULT`` reads ``LLM_MAX_RETRIES`` /
    ``LLM_RETRY_BACKOFF_BASE``; ``None`` turns retries off; a ``RetryStrategy`` (e.g.
    ``AdaptiveRetry()``) or a ``RetryConfig`` is used as given. ``retry_budget=`` (client
    keyword) shares or disables (``None``) the retry budget."""
    from functools import partial

    from .application.retry_strategy import (
        ExponentialBackoffRetry,
        RetryConfig,
        RetryLayer,
        RetryStrategy,
    )
    from .client import DEFAULT

    config = client.options.retry_config
    if config is None:
        return None
    if config is DEFAULT:
        config = RetryConfig.from_settings(client.settings)
    strategy = config if isinstance(config, RetryStrategy) else ExponentialBackoffRetry(config)
    extra = client.options.extra
    return partial(RetryLayer, strategy=strategy,
                   budget=extra.get("retry_budget", "per_provider"),
                   clock=extra.get("clock") or _system_clock())


def _circuit_breaker(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 4: one breaker per (provider, model). ``circuit_breaker_config=DEFAULT`` reads
    ``LLM_CIRCUIT_FAILURE_THRESHOLD`` / ``LLM_CIRCUIT_TIMEOUT``; ``None`` turns it off.
    ``circuit_breaker_factory=`` (client keyword) supplies other breakers, e.g. Redis-backed."""
    from functools import partial

    from .application.circuit_breaker import CircuitBreakerConfig, CircuitBreakerLayer
    from .client import DEFAULT

    config = client.options.circuit_breaker_config
    if config is None:
        return None
    if config is DEFAULT:
        config = CircuitBreakerConfig.from_settings(client.settings)
    extra = client.options.extra
    return partial(CircuitBreakerLayer, config=config,
                   factory=extra.get("circuit_breaker_factory"),
                   shared=bool(extra.get("shared_circuit_breakers", False)),
                   clock=extra.get("clock") or _system_clock())


def _concurrency(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 4: at most ``max_concurrency`` calls in flight per provider (off when ``None``)."""
    if client.options.max_concurrency is None:
        return None
    from functools import partial

    from .application.rate_limit import ConcurrencyLimitLayer

    return partial(ConcurrencyLimitLayer, max_concurrency=client.options.max_concurrency,
                   clock=client.options.extra.get("clock") or _system_clock())


def _rate_limit(client: AsyncLLMClient) -> LayerFactory | None:
    """Issue 4: RPM/TPM buckets. ``rate_limit=`` is a ``RateLimitConfig`` or a dict of its
    fields (off when ``None``); ``rate_limit_store=`` (client keyword) shares the buckets, e.g.
    ``RedisBucketStore``."""
    option = client.options.rate_limit
    if option is None:
        return None
    from functools import partial

    from .application.rate_limit import RateLimitConfig, RateLimitLayer

    if isinstance(option, RateLimitConfig):
        config = option
    else:
        from .errors import ConfigurationError

        try:
            config = RateLimitConfig(**option)
        except TypeError as exc:
            raise ConfigurationError(
                f"rate_limit must be a RateLimitConfig or a dict of its fields, got {option!r}"
            ) from exc
    extra = client.options.extra
    return partial(RateLimitLayer, config=config, store=extra.get("rate_limit_store"),
                   clock=extra.get("clock") or _system_clock())


def _system_clock() -> Any:
    from ._clock import system_clock

    return system_clock


def _entries() -> list[LayerEntry]:
    """One function per default layer, outermost first."""
    return [_tracing, _cache, _dedup, _fallback, _retry, _cost, _circuit_breaker, _concurrency,
            _rate_limit]


def default_layers(client: AsyncLLMClient) -> list[LayerFactory]:
    """The layer factories of ``client``'s default pipeline."""
    layers: list[LayerFactory] = []
    for entry in _entries():
        factory = entry(client)
        if factory is not None:
            layers.append(factory)
    return layers
