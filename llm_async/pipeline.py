"""The default pipeline of :class:`~llm_async.AsyncLLMClient`, outermost first.

Order is semantics (see docs/concepts/layers.md)::

    tracing → cache → dedup → fallback → retry → cost/budget → circuit breaker
            → concurrency → rate limit → transport (which applies the timeouts)

A cache hit spends nothing; dedup bills a shared call once; the cost layer sees every attempt
(each retry and each fallback model is reserved, checked and billed on its own, at its own
model's price) and the budget rejects before anything queues; every retry passes back through
the breaker and the limits, so retries never burst; an open breaker ends the retry loop at once
and lets fallback move on; time spent queued in our own limits never counts as a provider
timeout, because the transport, innermost, owns the timeouts.

Every layer is built the same way: ``partial(LayerClass, **options)``, a factory that takes the
inner handler (see :func:`layer`). Each feature contributes one entry below, which reads the
client's :class:`~llm_async.client.ClientOptions` and returns ``None`` when the options switch
the feature off. Every import is lazy, so a feature that is off costs nothing to import. A new
layer is one entry function here, placed in :func:`_entries` where its order says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from .config import DEFAULT
from .domain.ports import Handler, LayerFactory
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .options import ClientView

__all__ = ["client_credential", "default_layers", "layer"]

LayerEntry = Callable[["ClientView"], LayerFactory | None]


def layer(cls: Callable[..., Handler], /, **options: Any) -> LayerFactory:
    """The factory of one layer: ``cls(inner, **options)`` once the inner handler is known."""
    return partial(cls, **options)


def client_credential(client: ClientView) -> str | None:
    """A hash of the credentials ``client``'s transports send (namespaces cache and dedup keys,
    so one API key's answers are never served to another)."""
    from .optimization.semantic import credential_hash

    material: dict[str, Any] = {}
    for name, transport in sorted(client.transports.items()):
        auth = getattr(transport, "auth_headers", None)
        if callable(auth):
            material[name] = auth()
    return credential_hash({k: v for k, v in material.items() if v})


def _tracing(client: ClientView) -> LayerFactory | None:
    """Spans, metrics and dashboard statistics for every logical call (outermost).

    Off with ``tracing=False``; ``capture_content=True`` records message content on spans;
    ``tracer_provider``, ``meter_provider`` and ``observability`` default to the global
    providers and the process-wide observability.
    """
    options = client.options
    if not options.tracing:
        return None
    from .observability.tracing import TracingLayer

    endpoints = {name: url for name, transport in client.transports.items()
                 if isinstance(url := getattr(transport, "base_url", None), str)}
    return layer(TracingLayer, capture_content=options.capture_content, endpoints=endpoints,
                 tracer_provider=options.tracer_provider, meter_provider=options.meter_provider,
                 observability=options.observability)


def _cache(client: ClientView) -> LayerFactory | None:
    """The response cache. On with ``cache_enabled=True``, or when it is ``None`` and a
    ``cache=`` was passed or ``LLM_CACHE_ENABLED`` is set; ``cache_ttl`` (else ``LLM_CACHE_TTL``)
    is the lifetime; ``cache_config=CacheConfig(...)`` tunes the rest."""
    options = client.options
    enabled = options.cache_enabled
    if enabled is None:
        enabled = options.cache is not None or options.settings.cache_enabled
    if not enabled:
        return None
    from .optimization.cache import CacheBackend, CacheConfig, CacheLayer, ResponseCache
    from .optimization.cache.store import check_ttl

    config = options.cache_config or CacheConfig()
    if not isinstance(config, CacheConfig):
        raise ConfigurationError("cache_config must be a CacheConfig", variable="cache_config")
    ttl = options.cache_ttl if options.cache_ttl is not None else config.ttl
    supplied = options.cache
    default_ttl = options.settings.cache_ttl
    if supplied is None:
        cache = ResponseCache(ttl=default_ttl)
    elif isinstance(supplied, ResponseCache):
        cache = supplied
    elif isinstance(supplied, CacheBackend):
        cache = ResponseCache(supplied, ttl=default_ttl)
    else:
        raise ConfigurationError("cache must be a ResponseCache or a cache backend",
                                 variable="cache")
    if config.credential is None:
        config = replace(config, credential=client_credential(client))
    config = replace(config, ttl=check_ttl(ttl, "cache_ttl"))
    return layer(CacheLayer, cache=cache, config=config, owns_cache=supplied is None)


def _dedup(client: ClientView) -> LayerFactory | None:
    """Concurrent identical calls share one upstream call (``dedup_enabled=True``);
    ``dedup_config=DedupConfig(...)`` tunes it; keys are namespaced per credential like the
    cache's."""
    options = client.options
    if not options.dedup_enabled:
        return None
    from .optimization.dedup import DedupConfig, DedupLayer

    config = options.dedup_config or DedupConfig()
    if not isinstance(config, DedupConfig):
        raise ConfigurationError("dedup_config must be a DedupConfig", variable="dedup_config")
    if config.credential is None:
        config = replace(config, credential=client_credential(client))
    return layer(DedupLayer, config=config)


def _cost(client: ClientView) -> LayerFactory | None:
    """Cost tracking and hard budgets, per attempt (reserve the worst case before sending, bill
    every attempt that was sent). Off with ``track_cost=False`` or ``cost_manager=None``; uses
    ``client.cost_manager`` (the process-wide manager unless one was passed), which gets the
    ``daily`` / ``monthly`` budgets of the client's settings. ``cost_options={...}`` passes
    ``CostLayer`` options such as ``cap_output`` or ``default_max_tokens``."""
    manager = client.cost_manager
    if not client.options.track_cost or manager is None:
        return None
    from .application.cost_manager import CostLayer

    manager.apply_settings(client.settings)
    options = dict(client.options.cost_options or {})
    return layer(CostLayer, manager=manager, **options)


def _fallback(client: ClientView) -> LayerFactory | None:
    """Move to the next model of ``fallback_models`` when one fails. Always present, so
    ``options={"fallback_models": [...]}`` works per call; a pass-through when the list is
    empty."""
    from .application.fallback import FallbackLayer

    options = client.options
    return layer(FallbackLayer, models=tuple(options.fallback_models or ()),
                 max_depth=options.fallback_max_depth, resolve=client.resolve)


def _retry(client: ClientView) -> LayerFactory | None:
    """Retries. ``retry_config=DEFAULT`` reads ``LLM_MAX_RETRIES`` / ``LLM_RETRY_BACKOFF_BASE``;
    ``None`` turns retries off; a ``RetryStrategy`` (e.g. ``AdaptiveRetry()``) or a
    ``RetryConfig`` is used as given. ``max_retries=N`` sets the number of retries after the
    first attempt (``0``: none). ``retry_budget`` shares or disables (``None``) the retry
    budget."""
    from .application.retry_strategy import (
        ExponentialBackoffRetry,
        RetryConfig,
        RetryLayer,
        RetryStrategy,
    )

    options = client.options
    config = options.retry_config
    if config is None:
        return None
    overrides: dict[str, Any] = {}
    if options.max_retries is not None:
        overrides["max_attempts"] = options.max_retries + 1
    if config is DEFAULT:
        config = RetryConfig.from_settings(client.settings, **overrides)
    elif overrides and isinstance(config, RetryConfig):
        config = replace(config, **overrides)
    elif overrides:
        raise ConfigurationError("max_retries applies to a RetryConfig; set the attempts on "
                                 f"{type(config).__name__} itself", variable="max_retries")
    strategy = config if isinstance(config, RetryStrategy) else ExponentialBackoffRetry(config)
    return layer(RetryLayer, strategy=strategy, budget=options.retry_budget,
                 clock=_clock(client))


def _circuit_breaker(client: ClientView) -> LayerFactory | None:
    """One breaker per (provider, model). ``circuit_breaker_config=DEFAULT`` reads
    ``LLM_CIRCUIT_FAILURE_THRESHOLD`` / ``LLM_CIRCUIT_TIMEOUT``; ``None`` turns it off.
    ``circuit_breaker_factory`` supplies other breakers, e.g. Redis-backed;
    ``shared_circuit_breakers=True`` uses the process-wide registry."""
    from .application.circuit_breaker import CircuitBreakerConfig, CircuitBreakerLayer

    options = client.options
    config = options.circuit_breaker_config
    if config is None:
        return None
    if config is DEFAULT:
        config = CircuitBreakerConfig.from_settings(client.settings)
    return layer(CircuitBreakerLayer, config=config, factory=options.circuit_breaker_factory,
                 shared=options.shared_circuit_breakers, clock=_clock(client))


def _concurrency(client: ClientView) -> LayerFactory | None:
    """At most ``max_concurrency`` calls in flight per provider (off when ``None``)."""
    if client.options.max_concurrency is None:
        return None
    from .application.limits import ConcurrencyLimitLayer

    return layer(ConcurrencyLimitLayer, max_concurrency=client.options.max_concurrency,
                 clock=_clock(client))


def _rate_limit(client: ClientView) -> LayerFactory | None:
    """RPM/TPM buckets. ``rate_limit=`` is a ``RateLimitConfig`` or a dict of its fields (off
    when ``None``); ``rate_limit_store`` shares the buckets, e.g. ``RedisBucketStore``."""
    option = client.options.rate_limit
    if option is None:
        return None
    from .application.limits import RateLimitConfig, RateLimitLayer

    if isinstance(option, RateLimitConfig):
        config = option
    else:
        try:
            config = RateLimitConfig(**option)
        except TypeError as exc:
            raise ConfigurationError(
                f"rate_limit must be a RateLimitConfig or a dict of its fields, got {option!r}"
            ) from exc
    return layer(RateLimitLayer, config=config, store=client.options.rate_limit_store,
                 clock=_clock(client))


def _clock(client: ClientView) -> Any:
    clock = client.options.clock
    if clock is None:
        from ._clock import system_clock

        return system_clock
    return clock


def _entries() -> list[LayerEntry]:
    """One function per default layer, outermost first."""
    return [_tracing, _cache, _dedup, _fallback, _retry, _cost, _circuit_breaker, _concurrency,
            _rate_limit]


def default_layers(client: ClientView) -> list[LayerFactory]:
    """The layer factories of ``client``'s default pipeline."""
    layers: list[LayerFactory] = []
    for entry in _entries():
        factory = entry(client)
        if factory is not None:
            layers.append(factory)
    return layers
