"""Optimization layers: response cache, in-flight dedup, batching, prompt optimizer.

The process-wide objects answer without ``await``::

    from llm_async.optimization import get_cache, PromptOptimizer, get_deduplicator

    cache = get_cache()                       # sync get/set on the in-memory cache,
    cached = cache.get(request_key)           # await cache.aget/aset for every backend
    cache.set(request_key, response, ttl=3600)

    optimized = PromptOptimizer().optimize(text=long_prompt, max_tokens=1000,
                                           remove_redundancy=True)

    dedup = get_deduplicator()
    result = dedup.deduplicate(key=request_hash, executor=lambda: expensive_call())
    # an async executor returns an awaitable: result = await dedup.deduplicate(...)

Names load lazily: importing this package does not import aiocache or Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    # cache
    "AiocacheBackend": ".cache",
    "CacheBackend": ".cache",
    "CacheConfig": ".cache",
    "CacheLayer": ".cache",
    "CacheStats": ".cache",
    "MemoryBackend": ".cache",
    "RedisBackend": ".cache",
    "ResponseCache": ".cache",
    "get_cache": ".cache",
    "set_cache": ".cache",
    # keys and similarity
    "Embedder": ".semantic",
    "HashingEmbedder": ".semantic",
    "SimilarityIndex": ".semantic",
    "canonical_request": ".semantic",
    "normalize_text": ".semantic",
    "request_key": ".semantic",
    # dedup
    "DedupConfig": ".dedup",
    "DedupLayer": ".dedup",
    "Deduplicator": ".dedup",
    "SingleFlight": ".singleflight",
    "get_deduplicator": ".dedup",
    # batching
    "AnthropicBatchAPI": ".batching",
    "BatchJob": ".batching",
    "BatchProgress": ".batching",
    "BatchQueue": ".batching",
    "BatchResults": ".batching",
    "BatchingLayer": ".batching",
    "OpenAIBatchAPI": ".batching",
    "TextProgress": ".batching",
    "batch_api_for": ".batching",
    "chat_many": ".batching",
    # prompt
    "OptimizationReport": ".prompt",
    "OptimizedPrompt": ".prompt",
    "PromptOptimizer": ".prompt",
}

__all__ = [
    "AiocacheBackend",
    "AnthropicBatchAPI",
    "BatchJob",
    "BatchProgress",
    "BatchQueue",
    "BatchResults",
    "BatchingLayer",
    "CacheBackend",
    "CacheConfig",
    "CacheLayer",
    "CacheStats",
    "DedupConfig",
    "DedupLayer",
    "Deduplicator",
    "Embedder",
    "HashingEmbedder",
    "MemoryBackend",
    "OpenAIBatchAPI",
    "OptimizationReport",
    "OptimizedPrompt",
    "PromptOptimizer",
    "RedisBackend",
    "ResponseCache",
    "SimilarityIndex",
    "SingleFlight",
    "TextProgress",
    "batch_api_for",
    "canonical_request",
    "chat_many",
    "get_cache",
    "get_deduplicator",
    "normalize_text",
    "request_key",
    "set_cache",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:  # pragma: no cover
    from .batching import (
        AnthropicBatchAPI,
        BatchingLayer,
        BatchJob,
        BatchProgress,
        BatchQueue,
        BatchResults,
        OpenAIBatchAPI,
        TextProgress,
        batch_api_for,
        chat_many,
    )
    from .cache import (
        AiocacheBackend,
        CacheBackend,
        CacheConfig,
        CacheLayer,
        CacheStats,
        MemoryBackend,
        RedisBackend,
        ResponseCache,
        get_cache,
        set_cache,
    )
    from .dedup import DedupConfig, DedupLayer, Deduplicator, get_deduplicator
    from .prompt import OptimizationReport, OptimizedPrompt, PromptOptimizer
    from .semantic import (
        Embedder,
        HashingEmbedder,
        SimilarityIndex,
        canonical_request,
        normalize_text,
        request_key,
    )
    from .singleflight import SingleFlight
