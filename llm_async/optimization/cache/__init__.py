"""The response cache: backends (where entries live), the store (``ResponseCache`` and the
process-wide ``get_cache()``) and the pipeline layer (``CacheLayer``)."""

from __future__ import annotations

from .backends import (
    AiocacheBackend,
    CacheBackend,
    MemoryBackend,
    RedisBackend,
    SyncCacheBackend,
    decode_value,
    encode_value,
)
from .layer import STORABLE_FINISH_REASONS, CacheConfig, CacheLayer, replay_chunks
from .store import CacheStats, ResponseCache, get_cache, set_cache

__all__ = [
    "STORABLE_FINISH_REASONS",
    "AiocacheBackend",
    "CacheBackend",
    "CacheConfig",
    "CacheLayer",
    "CacheStats",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "SyncCacheBackend",
    "decode_value",
    "encode_value",
    "get_cache",
    "replay_chunks",
    "set_cache",
]
