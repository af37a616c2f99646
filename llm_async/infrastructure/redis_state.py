"""Circuit-breaker state and rate-limit buckets in Redis, shared by several worker processes.

The implementations live in :mod:`llm_async.infrastructure.state.redis_breaker` and
:mod:`llm_async.infrastructure.state.redis_limits`; this module re-exports them.
``RedisPermit`` is the breaker's permit,
:class:`~llm_async.application.circuit_breaker.CircuitPermit`.
"""

from __future__ import annotations

from ..application.circuit_breaker import CircuitPermit as RedisPermit
from .state.redis_breaker import RedisCircuitBreaker, redis_breaker_factory
from .state.redis_limits import RedisBucketStore

__all__ = ["RedisBucketStore", "RedisCircuitBreaker", "RedisPermit", "redis_breaker_factory"]
