"""In-flight deduplication: concurrent identical calls share one upstream call.

* :class:`Deduplicator` — ``get_deduplicator().deduplicate(key, executor)``, accepting sync and
  async executors (built on :class:`~llm_async.optimization.singleflight.SingleFlight`).
* :class:`DedupLayer` — the pipeline layer. Unary calls go through a ``SingleFlight``;
  streams are **fanned out** (see :class:`DedupLayer` for why).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload

from ..context import CallContext
from ..domain.ports import Handler, Layer
from ..errors import APIConnectionError, InvalidRequestError
from ..types import ChatChunk, ChatRequest, ChatResponse
from .semantic import TenantSpec, request_key
from .singleflight import DedupStats, SingleFlight, spawn

__all__ = [
    "DedupConfig",
    "DedupLayer",
    "DedupStats",
    "Deduplicator",
    "SingleFlight",
    "get_deduplicator",
]

T = TypeVar("T")


class _SyncFlight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Deduplicator:
    """One execution for concurrent callers: ``dedup.deduplicate(key=..., executor=...)``.

    * **async executors** (an ``async def``, or a callable that returns an awaitable, such as
      ``lambda: client.chat(...)``): ``deduplicate`` returns an awaitable;
      ``await dedup.deduplicate(key=k, executor=...)`` joins any call in flight for ``k`` on this
      event loop, or starts one. Semantics are :class:`SingleFlight`'s.
    * **sync executors** (a callable that returns a plain value): ``deduplicate`` returns the
      value. Called from threads without a running event loop, concurrent calls with the same
      key share one execution (the others block until it ends and get its value or exception).
      Called inside a running event loop, a sync executor simply runs: it blocks the loop, so no
      other coroutine can be waiting on the same key.

    Keys are any hashable value; entries exist only while a call is in flight.
    """

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SingleFlight[Any]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()
        self._sync: dict[Hashable, _SyncFlight] = {}
        self.sync_started = 0
        self.sync_joined = 0

    def flights(self) -> SingleFlight[Any]:
        """The :class:`SingleFlight` of the running event loop."""
        loop = asyncio.get_running_loop()
        flights = self._loops.get(loop)
        if flights is None:
            flights = self._loops[loop] = SingleFlight()
        return flights

    @overload
    def deduplicate(self, key: Hashable, executor: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        ...

    @overload
    def deduplicate(self, key: Hashable, executor: Callable[[], T]) -> T:
        ...

    def deduplicate(self, key: Hashable, executor: Callable[[], Any]) -> Any:
        """Run ``executor`` once for concurrent callers with the same ``key`` (see the class)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._run_sync(key, executor)
        flights = self.flights()
        if flights.active(key) or inspect.iscoroutinefunction(executor):
            flight, _ = flights.start(key, executor)
            return flights.wait(key, flight)
        value = executor()
        if inspect.isawaitable(value):
            awaitable = value
            flight, _ = flights.start(key, lambda: awaitable)
            return flights.wait(key, flight)
        return value

    async def run(self, key: Hashable, executor: Callable[[], Awaitable[T]]) -> T:
        """The typed async form: ``await dedup.run(key, lambda: client.chat(...))``."""
        return cast(T, await self.flights().do(key, executor))

    def _run_sync(self, key: Hashable, executor: Callable[[], Any]) -> Any:
        with self._lock:
            flight = self._sync.get(key)
            leader = flight is None
            if flight is None:
                flight = self._sync[key] = _SyncFlight()
                self.sync_started += 1
            else:
                self.sync_joined += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = executor()
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                if self._sync.get(key) is flight:
                    del self._sync[key]
            flight.done.set()

    def statistics(self) -> DedupStats:
        """Counters of the running loop's flights plus the sync ones."""
        try:
            stats = self.flights().statistics()
        except RuntimeError:
            stats = DedupStats(0, 0, 0, 0)
        return DedupStats(stats.started + self.sync_started, stats.joined + self.sync_joined,
                          stats.in_flight + len(self._sync), stats.cancelled)

    def __repr__(self) -> str:
        return f"Deduplicator(sync_in_flight={len(self._sync)})"


_default: Deduplicator | None = None
_default_lock = threading.Lock()


def get_deduplicator() -> Deduplicator:
    """The process-wide :class:`Deduplicator`."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Deduplicator()
    return _default


# -- the layer ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DedupConfig:
    """Settings of :class:`DedupLayer`.

    ``tenant`` scopes sharing the same way the cache does (``"auto"``: ``metadata.tenant_id``,
    else ``user_id``, else the client's API-key hash), so one tenant never receives an answer
    produced for another. ``streams``: ``"fanout"`` (share one upstream stream) or
    ``"passthrough"`` (never deduplicate streams). ``only_deterministic``: share only requests
    with ``temperature == 0``; off by default, since concurrent identical requests asking for
    independent samples are rare — opt such a call out with ``options={"dedup": False}``.
    """

    tenant: TenantSpec = "auto"
    streams: str = "fanout"
    only_deterministic: bool = False
    credential: str | None = None

    def __post_init__(self) -> None:
        if self.streams not in ("fanout", "passthrough"):
            raise InvalidRequestError("DedupConfig.streams must be 'fanout' or 'passthrough'",
                                      field="streams")


class _StreamFlight:
    """One upstream stream shared by several subscribers, with a replay buffer."""

    __slots__ = ("chunks", "done", "error", "subscribers", "task", "waiters")

    def __init__(self) -> None:
        self.chunks: list[ChatChunk] = []
        self.done = False
        self.error: BaseException | None = None
        self.subscribers = 0
        self.task: asyncio.Task[None] | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        await fut


class DedupLayer(Layer):
    """Concurrent identical requests share one upstream call.

    The key is the canonical request (provider, model, messages, parameters, tools, response
    format), scoped to the tenant. Every waiter gets the result (followers get a copy, so one
    caller mutating its response does not affect another) or the same typed error. A follower
    is marked with ``ctx.event("dedup_join")`` and ``ctx.dedup_follower = True``; the
    layers inside this one (cost, retry, ...) run once, for the leader, so a shared call is
    billed once. Per call, ``options={"dedup": False}`` opts out.

    **Streams are fanned out.** One task reads the upstream stream into a replay buffer, and
    every subscriber — including one that joins late — reads the buffer from the start at its
    own pace. Why fan-out rather than pass-through: identical concurrent streams are common
    exactly when they are expensive (a UI retrying or reconnecting, many users opening the same
    prompt), and a replay buffer makes a late joiner see the same answer from its first chunk.
    The costs: the buffer holds one response per key in flight (bounded by ``max_tokens``), and a
    slow subscriber does not slow the upstream read (others are never held back by it). The
    upstream stream is cancelled only when every subscriber has closed its stream, and an error
    reaches every subscriber after the chunks that preceded it. ``DedupConfig(streams=
    "passthrough")`` turns stream sharing off.
    """

    def __init__(self, inner: Handler, config: DedupConfig | None = None) -> None:
        super().__init__(inner)
        self.config = config or DedupConfig()
        self.flights: SingleFlight[ChatResponse] = SingleFlight()
        self._streams: dict[str, _StreamFlight] = {}
        self.streams_started = 0
        self.streams_joined = 0

    def key(self, request: ChatRequest) -> str | None:
        """The sharing key of ``request``, or ``None`` when it must not be shared."""
        opt = request.options.get("dedup", True)
        if opt is False:
            return None
        if opt is not True:
            raise InvalidRequestError(f"options['dedup'] must be a bool, got {opt!r}",
                                      field="options.dedup")
        if self.config.only_deterministic and request.temperature != 0:
            return None
        return request_key(request, tenant=self.config.tenant,
                           credential=self.config.credential, prefix="dedup:")

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        key = self.key(request)
        if key is None:
            return await self.inner.chat(request, ctx)

        def joined() -> None:
            ctx.dedup_follower = True
            ctx.event("dedup_join", key=key)

        response, leader = await self.flights.do_flagged(
            key, lambda: self.inner.chat(request, ctx), joined)
        return response if leader else response.model_copy()

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        key = self.key(request)
        if key is None or self.config.streams == "passthrough":
            return self.inner.stream(request, ctx)
        return self._subscribe(key, request, ctx)

    async def _produce(self, key: str, flight: _StreamFlight, request: ChatRequest,
                       ctx: CallContext) -> None:
        try:
            async with aclosing(self.inner.stream(request, ctx)) as chunks:
                async for chunk in chunks:
                    flight.chunks.append(chunk)
                    flight.notify()
        except asyncio.CancelledError:
            flight.error = APIConnectionError("the shared upstream stream was cancelled")
            raise
        except BaseException as exc:  # every subscriber re-raises it
            flight.error = exc
        finally:
            flight.done = True
            if self._streams.get(key) is flight:
                del self._streams[key]
            flight.notify()

    async def _subscribe(self, key: str, request: ChatRequest,
                         ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        flight = self._streams.get(key)
        if flight is None or flight.done:
            flight = self._streams[key] = _StreamFlight()
            flight.task = spawn(self._produce(key, flight, request, ctx))
            self.streams_started += 1
        else:
            self.streams_joined += 1
            ctx.dedup_follower = True
            ctx.event("dedup_join", key=key, stream=True)
        flight.subscribers += 1
        index = 0
        try:
            while True:
                if index < len(flight.chunks):
                    chunk = flight.chunks[index]
                    index += 1
                    yield chunk
                elif flight.done:
                    if flight.error is not None:
                        raise flight.error
                    return
                else:
                    await flight.wait()
        finally:
            flight.subscribers -= 1
            if flight.subscribers == 0 and not flight.done:
                if self._streams.get(key) is flight:
                    del self._streams[key]
                if flight.task is not None:
                    flight.task.cancel()

    def statistics(self) -> DedupStats:
        """Unary and stream counters together."""
        stats = self.flights.statistics()
        return DedupStats(stats.started + self.streams_started,
                          stats.joined + self.streams_joined,
                          stats.in_flight + len(self._streams), stats.cancelled)

    async def aclose(self) -> None:
        for flight in list(self._streams.values()):
            if flight.task is not None:
                flight.task.cancel()
        await self.inner.aclose()

    def __repr__(self) -> str:
        stats = self.statistics()
        return (f"DedupLayer(in_flight={stats.in_flight}, started={stats.started}, "
                f"joined={stats.joined})")
