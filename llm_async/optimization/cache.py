"""Response cache: backends, the seed's ``get_cache()`` facade, and the cache layer.

Backends
    :class:`MemoryBackend` — in-process, bounded by entries *and* bytes, least recently used out,
    TTL checked against an injected clock. It offers sync and async methods.
    :class:`AiocacheBackend` — any ``aiocache`` cache; :class:`RedisBackend` builds an aiocache
    ``RedisCache`` (redis-py asyncio underneath) for a cache shared by many processes. Values
    cross the wire as JSON (a :class:`~llm_async.types.ChatResponse` or plain JSON data): never
    pickle, so a shared Redis cannot be turned into code execution.

Facade
    :class:`ResponseCache` is what ``get_cache()`` returns. The seed calls it without ``await``::

        cache = get_cache()
        cached = cache.get(request_key)
        cache.set(request_key, response, ttl=3600)

    so it has **sync** ``get``/``set``/``delete``/``clear`` (in-memory backends only) and
    **async** ``aget``/``aset``/``adelete``/``aclear`` (every backend).

Layer
    :class:`CacheLayer` sits outermost but for tracing: a hit spends nothing and never reaches the
    cost layer. See its docstring for the rules.
"""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from .. import _json
from .._clock import Clock, system_clock
from ..context import CallContext
from ..domain.ports import Handler, Layer, LayerFactory, aclosing
from ..errors import ConfigurationError, InvalidRequestError
from ..types import ChatChunk, ChatRequest, ChatResponse, StreamAssembler, ToolCallDelta
from .dedup import SingleFlight
from .semantic import SimilarityIndex, TenantSpec, credential_hash, request_key, tenant_of

if TYPE_CHECKING:
    from ..client import AsyncLLMClient

__all__ = [
    "AiocacheBackend",
    "CacheBackend",
    "CacheConfig",
    "CacheLayer",
    "CacheStats",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "SyncCacheBackend",
    "cache_layer_factory",
    "decode_value",
    "encode_value",
    "estimate_size",
    "get_cache",
    "replay_chunks",
    "set_cache",
]

logger = logging.getLogger("llm_async.cache")

MiB = 1024 * 1024
_ZERO = Decimal(0)
#: Only complete answers are stored (an answer cut by a content filter or a broken stream is not).
STORABLE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls"})


# -- statistics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Live counters of a cache (``entries``/``bytes``: ``None`` when the backend cannot tell)."""

    hits: int
    misses: int
    stores: int
    errors: int
    evictions: int
    expirations: int
    entries: int | None
    bytes: int | None

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


# -- backends ---------------------------------------------------------------------------------


@runtime_checkable
class CacheBackend(Protocol):
    """Where entries live. ``None`` is never a stored value: it means "not there"."""

    async def aget(self, key: str) -> Any:
        """The value under ``key``, or ``None``."""
        ...

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        """Store ``value`` for ``ttl`` seconds (``None``: until evicted)."""
        ...

    async def adelete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        ...

    async def aclear(self) -> None:
        """Remove every entry of this cache."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class SyncCacheBackend(CacheBackend, Protocol):
    """A backend that can also answer without ``await`` (an in-process one)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, ttl: float | None) -> None: ...

    def delete(self, key: str) -> bool: ...

    def clear(self) -> None: ...


def estimate_size(value: Any) -> int:
    """Approximate bytes an entry holds in memory (used for the ``max_bytes`` bound)."""
    if isinstance(value, ChatResponse):
        size = 1200 + sys.getsizeof(value.content or "")
        for call in value.tool_calls:
            size += 600 + len(call.function.arguments) + len(call.function.name) + len(call.id)
        return size
    if isinstance(value, str | bytes):
        return 64 + sys.getsizeof(value)
    try:
        return 64 + len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return 64 + sys.getsizeof(value)


class _Entry:
    __slots__ = ("expires", "size", "value")

    def __init__(self, value: Any, size: int, expires: float | None) -> None:
        self.value = value
        self.size = size
        self.expires = expires


class MemoryBackend:
    """A bounded in-process LRU with per-entry TTL.

    Bounded by ``max_entries`` and by ``max_bytes`` (estimated with :func:`estimate_size`); when
    either is exceeded, least recently used entries go first. Expired entries are dropped when
    read and when evicting. Values are stored as given (no copy, no serialisation), which makes a
    hit a dictionary lookup. Thread-safe.

    aiocache's ``SimpleMemoryCache`` is unbounded and arms one timer per key, so the in-memory
    backend is our own; any aiocache cache still plugs in through :class:`AiocacheBackend`.
    """

    def __init__(self, max_entries: int = 10_000, max_bytes: int = 64 * MiB, *,
                 clock: Clock = system_clock) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be >= 1", variable="max_entries")
        if max_bytes < 1:
            raise ConfigurationError("max_bytes must be >= 1", variable="max_bytes")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def keys(self) -> list[str]:
        """Current keys, least recently used first."""
        with self._lock:
            return list(self._data)

    def get(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return None
        with self._lock:
            if entry.expires is not None and entry.expires <= self.clock.now():
                self._remove(key)
                self.expirations += 1
                return None
            if key in self._data:
                self._data.move_to_end(key)
        return entry.value

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        if value is None:
            raise InvalidRequestError("None cannot be cached (it means 'not cached')")
        size = estimate_size(value)
        expires = None if ttl is None else self.clock.now() + ttl
        with self._lock:
            self._remove(key)
            if size > self.max_bytes:
                self.evictions += 1
                return
            self._data[key] = _Entry(value, size, expires)
            self.nbytes += size
            if len(self._data) > self.max_entries or self.nbytes > self.max_bytes:
                self._evict()

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.nbytes = 0

    def _remove(self, key: str) -> bool:
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        self.nbytes -= entry.size
        return True

    def _evict(self) -> None:
        now = self.clock.now()
        expired = [k for k, e in self._data.items() if e.expires is not None and e.expires <= now]
        for key in expired:
            self._remove(key)
            self.expirations += 1
        while self._data and (len(self._data) > self.max_entries
                              or self.nbytes > self.max_bytes):
            _, entry = self._data.popitem(last=False)
            self.nbytes -= entry.size
            self.evictions += 1

    async def aget(self, key: str) -> Any:
        return self.get(key)

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        self.set(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        return self.delete(key)

    async def aclear(self) -> None:
        self.clear()

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return (f"MemoryBackend(entries={len(self._data)}/{self.max_entries}, "
                f"bytes={self.nbytes}/{self.max_bytes})")


_TAG = "__llm_async__"


def encode_value(value: Any) -> bytes:
    """JSON bytes of a cache value: a :class:`ChatResponse` (``raw``/``parsed`` dropped) or
    JSON-serialisable data."""
    if isinstance(value, ChatResponse):
        payload: Any = {_TAG: "chat_response",
                        "v": value.model_dump(mode="json", exclude={"raw", "parsed"})}
    else:
        payload = {_TAG: "json", "v": value}
    try:
        return _json.dumps(payload)
    except TypeError as exc:
        raise InvalidRequestError(
            f"a shared cache stores JSON data or ChatResponse, not {type(value).__name__}"
        ) from exc


def decode_value(data: bytes | str | None) -> Any:
    """The inverse of :func:`encode_value` (``None`` for anything unreadable)."""
    if data is None:
        return None
    try:
        payload = _json.loads(data)
    except ValueError:
        return None
    if not isinstance(payload, dict) or _TAG not in payload:
        return None
    if payload[_TAG] == "chat_response":
        return ChatResponse.model_validate(payload["v"])
    return payload.get("v")


class AiocacheBackend:
    """Any aiocache cache (``aiocache.Cache(...)``, ``RedisCache``, ``MemcachedCache``) as a
    backend. The cache's own serializer is used; :class:`RedisBackend` sets a JSON one."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    async def aget(self, key: str) -> Any:
        return await self.cache.get(key)

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        if value is None:
            raise InvalidRequestError("None cannot be cached (it means 'not cached')")
        await self.cache.set(key, value, ttl=ttl)

    async def adelete(self, key: str) -> bool:
        return bool(await self.cache.delete(key))

    async def aclear(self) -> None:
        await self.cache.clear()

    async def aclose(self) -> None:
        await self.cache.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.cache).__name__})"


def _json_serializer() -> Any:
    from aiocache.serializers import BaseSerializer

    class JsonValueSerializer(BaseSerializer):  # type: ignore[misc]
        """aiocache serializer for :func:`encode_value` bytes (no text decoding)."""

        DEFAULT_ENCODING = None

        def dumps(self, value: Any) -> bytes:
            return encode_value(value)

        def loads(self, value: Any) -> Any:
            return decode_value(value)

    return JsonValueSerializer()


class RedisBackend(AiocacheBackend):
    """A cache in Redis, shared by every process that uses the same ``url`` and ``namespace``.

    Redis keys are ``{namespace}:{key}``.

    Built on aiocache's ``RedisCache`` (redis-py's asyncio client); needs the ``redis`` extra.
    TTLs are Redis's own (``PSETEX``), so entries expire even if no process is running. Each
    operation is bounded by ``timeout`` seconds; a failing Redis makes the layer miss, never
    fail a call.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, namespace: str = "llm_async",
                 timeout: float = 2.0, pool_max_size: int | None = None) -> None:
        try:
            from aiocache import RedisCache
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "RedisBackend needs the 'redis' extra: "
                "pip install 'llm-async-client[redis]'") from exc
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigurationError(f"expected a redis:// URL, got {url!r}", variable="url")
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise ConfigurationError(f"bad database number in {url!r}", variable="url")
        self.url = url
        self.namespace = namespace
        super().__init__(RedisCache(
            serializer=_json_serializer(),
            endpoint=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db),
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss",
            namespace=namespace,
            timeout=timeout,
            pool_max_size=pool_max_size,
        ))

    async def aset(self, key: str, value: Any, ttl: float | None) -> None:
        encode_value(value)  # a typed error for values Redis cannot hold, before sending
        await super().aset(key, value, None if ttl is None else float(ttl))

    async def aclose(self) -> None:
        client = self.cache.client
        closer = getattr(client, "aclose", None)  # redis-py >= 5; aiocache calls close()
        await (closer() if closer is not None else self.cache.close())

    def __repr__(self) -> str:
        host = urlsplit(self.url).hostname
        return f"RedisBackend(host={host!r}, namespace={self.namespace!r})"


# -- the facade -------------------------------------------------------------------------------


def _check_ttl(ttl: Any, field: str = "ttl") -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise InvalidRequestError(f"{field} must be a positive number of seconds, got {ttl!r}",
                                  field=field)
    return float(ttl)


class ResponseCache:
    """A cache of answers over a :class:`CacheBackend` (in memory by default).

    The seed's sync calls (``get``, ``set``, ``delete``, ``clear``) work with in-memory backends;
    ``aget``/``aset``/``adelete``/``aclear`` work with every backend (Redis included). ``ttl`` is
    the default time-to-live in seconds (``None``: until evicted); ``set(..., ttl=...)``
    overrides it per entry.
    """

    def __init__(self, backend: CacheBackend | None = None, *, ttl: float | None = 3600.0,
                 max_entries: int = 10_000, max_bytes: int = 64 * MiB,
                 clock: Clock = system_clock) -> None:
        self.backend: CacheBackend = backend if backend is not None else MemoryBackend(
            max_entries, max_bytes, clock=clock)
        self.ttl = _check_ttl(ttl)
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.errors = 0

    # the seed's sync API ------------------------------------------------------------------

    def _sync(self) -> SyncCacheBackend:
        backend = self.backend
        if not isinstance(backend, SyncCacheBackend):
            raise ConfigurationError(
                f"{type(backend).__name__} is async-only: use 'await cache.aget(key)' and "
                "'await cache.aset(key, value, ttl=...)'")
        return backend

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` (in-memory backends only)."""
        value = self._sync().get(key)
        return self._count(value, default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (default: the cache's ``ttl``)."""
        self._sync().set(key, value, self._ttl(ttl))
        self.stores += 1

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        return self._sync().delete(key)

    def clear(self) -> None:
        """Remove every entry."""
        self._sync().clear()

    # async API ----------------------------------------------------------------------------

    async def aget(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        return self._count(await self.backend.aget(key), default)

    async def aset(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (default: the cache's ``ttl``)."""
        await self.backend.aset(key, value, self._ttl(ttl))
        self.stores += 1

    async def adelete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        return await self.backend.adelete(key)

    async def aclear(self) -> None:
        """Remove every entry."""
        await self.backend.aclear()

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self.backend.aclose()

    # ------------------------------------------------------------------------------------

    def _ttl(self, ttl: float | None) -> float | None:
        return self.ttl if ttl is None else _check_ttl(ttl)

    def _count(self, value: Any, default: Any) -> Any:
        if value is None:
            self.misses += 1
            return default
        self.hits += 1
        return value

    def statistics(self) -> CacheStats:
        """Hits, misses, stores, backend errors, evictions and size (when known)."""
        backend = self.backend
        mem = backend if isinstance(backend, MemoryBackend) else None
        return CacheStats(
            hits=self.hits, misses=self.misses, stores=self.stores, errors=self.errors,
            evictions=0 if mem is None else mem.evictions,
            expirations=0 if mem is None else mem.expirations,
            entries=None if mem is None else len(mem), bytes=None if mem is None else mem.nbytes,
        )

    def __repr__(self) -> str:
        return (f"ResponseCache(backend={self.backend!r}, ttl={self.ttl}, hits={self.hits}, "
                f"misses={self.misses})")


_default_cache: ResponseCache | None = None
_default_lock = threading.Lock()


def get_cache() -> ResponseCache:
    """The process-wide :class:`ResponseCache` (in memory; TTL from ``LLM_CACHE_TTL``).

    Pass it to clients as ``AsyncLLMClient(cache=get_cache())`` to share it with them.
    """
    global _default_cache
    if _default_cache is None:
        with _default_lock:
            if _default_cache is None:
                from ..config import Settings

                _default_cache = ResponseCache(ttl=Settings.from_env().cache_ttl)
    return _default_cache


def set_cache(cache: ResponseCache | None) -> None:
    """Replace the process-wide cache (``None``: build a fresh one on next ``get_cache()``)."""
    global _default_cache
    _default_cache = cache


# -- the layer --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Settings of :class:`CacheLayer`.

    * ``ttl``: seconds an answer lives (``None``: the :class:`ResponseCache`'s ``ttl``).
    * ``only_deterministic``: cache only ``temperature == 0`` requests unless a call opts in
      with ``options={"cache": True}``.
    * ``tenant``: how keys are namespaced (see :data:`~llm_async.optimization.semantic.TenantSpec`);
      ``credential`` is the client's API-key hash, used by ``"auto"``/``"api_key"``.
    * ``normalize``: whitespace/case/formatting-insensitive keys.
    * ``similarity``: a :class:`~llm_async.optimization.semantic.SimilarityIndex` consulted on an
      exact miss (off by default).
    * ``coalesce_misses``: concurrent misses for one key make one upstream call (no stampede).
    """

    ttl: float | None = None
    only_deterministic: bool = True
    tenant: TenantSpec = "auto"
    credential: str | None = None
    normalize: bool = False
    similarity: SimilarityIndex | None = None
    coalesce_misses: bool = True
    key_prefix: str = "llm:v1:"

    def __post_init__(self) -> None:
        _check_ttl(self.ttl)


@dataclass(frozen=True, slots=True)
class _Plan:
    key: str
    read: bool
    ttl: float | None


def replay_chunks(response: ChatResponse) -> Iterator[ChatChunk]:
    """A stored answer as stream chunks: its reasoning, text and tool calls, then the finish
    reason with the reply's blocks (signed reasoning, citations, provider tools), refusal and
    provider extras, then the usage."""
    rid, model = response.id or None, response.model or None
    if response.reasoning:
        yield ChatChunk(reasoning=response.reasoning, id=rid, model=model)
    if response.content:
        yield ChatChunk(delta=response.content, logprobs=response.logprobs, id=rid, model=model)
    for index, call in enumerate(response.tool_calls):
        yield ChatChunk(tool_calls=[ToolCallDelta(index=index, id=call.id,
                                                  name=call.function.name,
                                                  arguments=call.function.arguments)],
                        id=rid, model=model)
    yield ChatChunk(finish_reason=response.finish_reason, parts=response.parts or None,
                    refusal_details=response.refusal, extras=response.extras or None,
                    id=rid, model=model)
    yield ChatChunk(usage=response.usage, id=rid, model=model)


class CacheLayer(Layer):
    """Answer repeated requests from a :class:`ResponseCache`.

    * **Key**: the canonical request (provider, model, messages, parameters, tools, response
      format — not metadata, timeouts or headers), namespaced per tenant.
    * **What is cached**: by default only deterministic requests (``temperature == 0``); a call
      opts in with ``options={"cache": True}``. Only complete answers (finish reason ``stop``,
      ``length`` or ``tool_calls``) are stored.
    * **Per call**: ``options={"cache": "bypass"}`` neither reads nor writes;
      ``"refresh"`` skips the read and overwrites the entry; ``"cache_ttl": seconds`` sets the
      entry's lifetime.
    * **A hit** returns a copy marked ``response.cache_hit = True`` with ``cost = 0``, sets
      ``ctx.cache_hit`` and emits ``ctx.event("cache_hit")``; nothing inside this
      layer runs, so no cost is charged and no budget is touched.
    * **Streams**: a hit replays as a stream (text, tool calls, finish reason, usage); a miss
      passes chunks through as they arrive and stores the assembled answer only if the stream
      completed (not on ``break``, error or cancellation).
    * **Misses are coalesced**: concurrent misses for one key share one upstream call, so an
      expired popular entry does not stampede the provider.
    * Backend failures (Redis down) are logged and counted and make a miss: the cache never
      fails a call.
    """

    def __init__(self, inner: Handler, cache: ResponseCache | CacheBackend | None = None,
                 config: CacheConfig | None = None, *, owns_cache: bool | None = None) -> None:
        super().__init__(inner)
        #: Whether ``aclose`` closes the cache too (by default: only a cache made here).
        self.owns_cache = cache is None if owns_cache is None else owns_cache
        if cache is None:
            cache = ResponseCache()
        elif not isinstance(cache, ResponseCache):
            cache = ResponseCache(cache)
        self.cache: ResponseCache = cache
        self.config = config or CacheConfig()
        self._flights: SingleFlight[ChatResponse] = SingleFlight()

    # -- decisions ------------------------------------------------------------------------

    def plan(self, request: ChatRequest) -> _Plan | None:
        """What to do with ``request``: ``None`` when the cache does not apply."""
        options = request.options
        mode = options.get("cache")
        opted_in = True
        read = True
        if mode is None:
            opted_in = False
        elif mode is False or mode == "bypass":
            return None
        elif mode == "refresh":
            read = False
        elif mode is not True and mode != "on":
            raise InvalidRequestError(
                f"options['cache'] must be 'bypass', 'refresh' or True, got {mode!r}",
                field="options.cache")
        ttl = _check_ttl(options.get("cache_ttl"), "options.cache_ttl")
        if not opted_in and self.config.only_deterministic and request.temperature != 0:
            return None
        config = self.config
        key = request_key(request, tenant=config.tenant, credential=config.credential,
                          normalize=config.normalize, prefix=config.key_prefix)
        return _Plan(key, read, ttl if ttl is not None else config.ttl)

    def key(self, request: ChatRequest) -> str:
        """The cache key of ``request`` (whether or not it would be cached)."""
        config = self.config
        return request_key(request, tenant=config.tenant, credential=config.credential,
                           normalize=config.normalize, prefix=config.key_prefix)

    # -- storage ---------------------------------------------------------------------------

    async def _read(self, key: str) -> Any:
        try:
            return await self.cache.aget(key)
        except Exception:
            self.cache.errors += 1
            logger.warning("cache read failed; treating as a miss", exc_info=True)
            return None

    async def lookup(self, request: ChatRequest, plan: _Plan,
                     ctx: CallContext) -> ChatResponse | None:
        """The cached answer for ``request`` marked as a hit, or ``None``."""
        started = time.perf_counter()
        value = await self._read(plan.key)
        score = None
        similarity = self.config.similarity
        if value is None and similarity is not None:
            tenant = tenant_of(request, self.config.tenant, self.config.credential)
            match = await similarity.find(request, tenant)
            if match is not None:
                value = await self._read(match.key)
                if value is None:
                    similarity.discard(request, tenant, match.key)
                else:
                    score = match.score
        if not isinstance(value, ChatResponse):
            ctx.event("cache_miss")
            return None
        ctx.cache_hit = True
        if score is None:
            ctx.event("cache_hit")
        else:
            ctx.event("cache_hit", similarity=score)
        return value.model_copy(update={
            "cache_hit": True, "cost": _ZERO, "cost_estimated": False,
            "latency": time.perf_counter() - started, "time_to_first_chunk": None,
            "requested_model": request.model,
        })

    async def store(self, request: ChatRequest, plan: _Plan, response: ChatResponse) -> bool:
        """Store a complete answer; whether it was stored."""
        if response.finish_reason not in STORABLE_FINISH_REASONS:
            return False
        value = response.model_copy(update={
            "raw": None, "cache_hit": False, "cost": None, "cost_estimated": False})
        try:
            await self.cache.aset(plan.key, value, ttl=plan.ttl)
        except Exception:
            self.cache.errors += 1
            logger.warning("cache write failed; answer not cached", exc_info=True)
            return False
        similarity = self.config.similarity
        if similarity is not None:
            tenant = tenant_of(request, self.config.tenant, self.config.credential)
            await similarity.add(request, tenant, plan.key)
        return True

    # -- handler ---------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        plan = self.plan(request)
        if plan is None:
            return await self.inner.chat(request, ctx)
        if plan.read:
            hit = await self.lookup(request, plan, ctx)
            if hit is not None:
                return hit
        if not self.config.coalesce_misses:
            return await self._fill(request, plan, ctx)

        def joined() -> None:
            ctx.dedup_follower = True
            ctx.event("dedup_join", key=plan.key)

        response, leader = await self._flights.do_flagged(
            plan.key, lambda: self._fill(request, plan, ctx), joined)
        return response if leader else response.model_copy()

    async def _fill(self, request: ChatRequest, plan: _Plan, ctx: CallContext) -> ChatResponse:
        response = await self.inner.chat(request, ctx)
        await self.store(request, plan, response)
        return response

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        plan = self.plan(request)
        if plan is None:
            return self.inner.stream(request, ctx)
        return self._stream(request, plan, ctx)

    async def _stream(self, request: ChatRequest, plan: _Plan,
                      ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        if plan.read:
            hit = await self.lookup(request, plan, ctx)
            if hit is not None:
                for chunk in replay_chunks(hit):
                    yield chunk
                return
        assembler = StreamAssembler()
        completed = False
        async with aclosing(self.inner.stream(request, ctx)) as chunks:
            async for chunk in chunks:
                assembler.add(chunk)
                yield chunk
            completed = True
        if completed:
            await self.store(request, plan, assembler.response(
                provider=request.provider or "", model=assembler.model or request.model,
                requested_model=request.model))

    def statistics(self) -> CacheStats:
        """The cache's counters."""
        return self.cache.statistics()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if self.owns_cache:
                await self.cache.aclose()

    def __repr__(self) -> str:
        stats = self.cache.statistics()
        return f"CacheLayer(hits={stats.hits}, misses={stats.misses}, entries={stats.entries})"


def client_credential(client: AsyncLLMClient) -> str | None:
    """A hash of the credentials ``client``'s transports send (for tenant namespacing)."""
    material: dict[str, Any] = {}
    for name, transport in sorted(client.transports.items()):
        auth = getattr(transport, "auth_headers", None)
        if callable(auth):
            material[name] = auth()
    return credential_hash({k: v for k, v in material.items() if v})


def cache_layer_factory(client: AsyncLLMClient) -> LayerFactory | None:
    """The cache entry of the default pipeline (``None`` when the cache is off).

    On when ``cache_enabled`` is true, or when it is ``None`` and either a ``cache`` was passed
    or ``LLM_CACHE_ENABLED`` is set. ``cache`` may be a :class:`ResponseCache` or a backend;
    ``cache_ttl`` (else ``LLM_CACHE_TTL``) is the default lifetime;
    ``cache_config=CacheConfig(...)`` (an extra keyword of the client) tunes the rest.
    """
    options = client.options
    enabled = options.cache_enabled
    if enabled is None:
        enabled = options.cache is not None or options.settings.cache_enabled
    if not enabled:
        return None
    config = options.extra.get("cache_config") or CacheConfig()
    if not isinstance(config, CacheConfig):
        raise ConfigurationError("cache_config must be a CacheConfig", variable="cache_config")
    ttl = options.cache_ttl if options.cache_ttl is not None else config.ttl
    supplied = options.cache
    if supplied is None:
        cache = ResponseCache(ttl=options.settings.cache_ttl)
    elif isinstance(supplied, ResponseCache):
        cache = supplied
    elif isinstance(supplied, CacheBackend):
        cache = ResponseCache(supplied, ttl=options.settings.cache_ttl)
    else:
        raise ConfigurationError("cache must be a ResponseCache or a cache backend",
                                 variable="cache")
    if config.credential is None:
        config = replace(config, credential=client_credential(client))
    config = replace(config, ttl=_check_ttl(ttl, "cache_ttl"))

    return partial(CacheLayer, cache=cache, config=config, owns_cache=supplied is None)
