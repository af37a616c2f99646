"""``CacheLayer``: answer repeated requests from a :class:`~.store.ResponseCache`.

It sits outermost but for tracing: a hit spends nothing and never reaches the cost layer. See
:class:`CacheLayer` for the rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...context import CallContext
from ...domain.ports import Handler, Layer, aclosing
from ...errors import InvalidRequestError
from ...types import ChatChunk, ChatRequest, ChatResponse, StreamAssembler, ToolCallDelta
from ...types._base import trusted_copy
from ..semantic import SimilarityIndex, TenantSpec, request_key, tenant_of
from ..singleflight import SingleFlight
from .backends import CacheBackend
from .store import CacheStats, ResponseCache, check_ttl

__all__ = ["STORABLE_FINISH_REASONS", "CacheConfig", "CacheLayer", "replay_chunks"]

logger = logging.getLogger("llm_async.cache")

_ZERO = Decimal(0)
#: Only complete answers are stored (an answer cut by a content filter or a broken stream is not).
STORABLE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls"})


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Settings of :class:`CacheLayer`.

    * ``ttl``: seconds an answer lives (``None``: the :class:`ResponseCache`'s ``ttl``).
    * ``only_deterministic``: a policy that caches only ``temperature == 0`` requests unless a
      call opts in with ``options={"cache": True}``. Off by default: a cache that was switched
      on serves identical requests whatever their temperature.
    * ``tenant``: how keys are namespaced (see :data:`~llm_async.optimization.semantic.TenantSpec`);
      ``credential`` is the client's API-key hash, used by ``"auto"``/``"api_key"``.
    * ``normalize``: whitespace/case/formatting-insensitive keys.
    * ``similarity``: a :class:`~llm_async.optimization.semantic.SimilarityIndex` consulted on an
      exact miss (off by default).
    * ``coalesce_misses``: concurrent misses for one key make one upstream call (no stampede).
    """

    ttl: float | None = None
    only_deterministic: bool = False
    tenant: TenantSpec = "auto"
    credential: str | None = None
    normalize: bool = False
    similarity: SimilarityIndex | None = None
    coalesce_misses: bool = True
    key_prefix: str = "llm:v1:"

    def __post_init__(self) -> None:
        check_ttl(self.ttl)


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
    * **What is cached**: every request, whatever its temperature (with
      ``CacheConfig(only_deterministic=True)``, only ``temperature == 0`` requests and calls
      that opt in with ``options={"cache": True}``). Only complete answers (finish reason
      ``stop``, ``length`` or ``tool_calls``) are stored.
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
        ttl = check_ttl(options.get("cache_ttl"), "options.cache_ttl")
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
        return trusted_copy(value, {
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
