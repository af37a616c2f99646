"""The synchronous facade: ``invoke_chat`` for code that is not async.

``from llm_async.facade import get_llm_client_service, invoke_chat, LLMClientService`` replaces
``from app.services.llm_client import invoke_chat`` and nothing else changes::

    client = get_llm_client_service()
    response = client.invoke_chat(model="gpt-4", messages=[{"role": "user", "content": "Hello"}])
    for chunk in client.stream_chat(model="gpt-4", messages=[...]):
        print(chunk.delta, end="")

How it works. A service owns **one** long-lived event loop, run by anyio in a daemon thread and
driven through an anyio :class:`~anyio.from_thread.BlockingPortal`; the real
:class:`~llm_async.AsyncLLMClient` is built and always used on that loop. A sync call hands a
coroutine to the portal and blocks the calling thread until it finishes — never one
``asyncio.run()`` per call, so connections, breakers, retry budgets and the cost ledger live as
long as the service. Because the loop is the service's own:

* many threads may call at once (the portal serialises nothing; calls run concurrently on the
  loop);
* a thread that already runs an event loop (a notebook, an async web framework calling legacy
  code) may call too: its loop is blocked for the call's duration, as any sync call blocks it,
  but nothing deadlocks. From ``async def`` code prefer ``await service.ainvoke_chat(...)``,
  which does not block the caller's loop;
* a sync stream is iterated by **one** task of the service's loop (a "pump") that hands chunks
  over a zero-buffer anyio memory stream, so the layers' context managers and context variables
  stay in one task; breaking out of the ``for`` loop (or ``close()``, or ``with``) cancels that
  task, which closes the stream and its connection.

Shutdown: ``close()`` (or ``with LLMClientService(...)``) closes the client — its aiohttp
sessions — on its own loop, then stops the loop and joins the thread. A service that is never
closed is closed when garbage-collected or at interpreter exit (a :func:`weakref.finalize`,
which runs from :mod:`atexit` after every non-daemon thread has finished), so no "unclosed client
session" or "event loop is closed" warning is printed.

Processes: after ``os.fork()`` the child has none of the parent's threads, so the service's loop
is gone there. A fork hook marks every service's runtime as left behind; the child's first call
builds a fresh runtime and client from the same arguments (connections, breakers and ledgers
start anew in the child), and a child that never calls exits without waiting for a loop that is
not there. The parent's objects are never touched in the child: their sockets and the loop's
selector are shared with the parent.

Why not :func:`anyio.from_thread.start_blocking_portal`: it runs the loop in a pooled
(non-daemon) thread in some anyio 4.x releases, which Python joins *before* ``atexit`` handlers
run, so a service still open at exit would hang the interpreter. The thread here is a plain
daemon thread running :func:`anyio.run`; the portal is anyio's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import itertools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from decimal import Decimal
from enum import Enum
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal

from .client import DEFAULT, AsyncLLMClient, ChatStream
from .config import Settings
from .errors import InvalidRequestError
from .types import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "LLMClientService",
    "SyncChatStream",
    "get_llm_client_service",
    "invoke_chat",
    "reset_llm_client_service",
    "stream_chat",
]

T = TypeVar("T")

_SHUTDOWN_JOIN_SECONDS = 10.0
_names = itertools.count(1)
#: Every live runtime of this process (so a fork hook can find them).
_runtimes: weakref.WeakSet[_Runtime] = weakref.WeakSet()
#: Runtimes a fork left behind in this (child) process: kept, never finalised here.
_left_behind: list[_Runtime] = []
#: Serialises rebuilding a service's runtime after a fork (re-created in every child).
_rebuild_lock = threading.Lock()


def _closed_error() -> InvalidRequestError:
    return InvalidRequestError("the LLM client service is closed")


class _Call:
    """One call handed to the loop, cancellable from the calling thread at any moment: also
    while it is still being spawned (a Ctrl-C that lands before the portal returned its
    future must cancel it too)."""

    __slots__ = ("cancelled", "func", "scope")

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False

    async def run(self) -> Any:
        with anyio.CancelScope() as scope:
            self.scope = scope
            if self.cancelled:
                scope.cancel()
            result = self.func()
            if inspect.isawaitable(result):
                result = await result
            return result
        raise anyio.get_cancelled_exc_class()()  # cancelled: the caller is gone

    def cancel(self) -> None:
        """Run on the loop's thread (ordered with :meth:`run`, so it cannot be missed)."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class _Runtime:
    """One event loop in a daemon thread, driven through an anyio blocking portal.

    Holds no reference to the service, so a :func:`weakref.finalize` of the service may call
    :meth:`shutdown`.
    """

    def __init__(self, name: str) -> None:
        ready: concurrent.futures.Future[tuple[BlockingPortal, asyncio.AbstractEventLoop]] = (
            concurrent.futures.Future())
        self.client: AsyncLLMClient | None = None
        self.stopped = False
        #: Set in a forked child: the loop and its thread stayed in the parent.
        self.forked = False
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self.thread.start()
        self.portal, self.loop = ready.result()
        _runtimes.add(self)

    @staticmethod
    def _run(ready: concurrent.futures.Future[tuple[BlockingPortal,
                                                    asyncio.AbstractEventLoop]]) -> None:
        async def main() -> None:
            async with BlockingPortal() as portal:
                ready.set_result((portal, asyncio.get_running_loop()))
                await portal.sleep_until_stopped()

        try:
            anyio.run(main)
        except BaseException as exc:  # pragma: no cover - the loop itself failed to start
            if not ready.done():
                ready.set_exception(exc)

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on this runtime's own event loop thread."""
        return threading.get_ident() == self.thread.ident

    def _check(self) -> None:
        if self.stopped:
            raise _closed_error()
        if self.in_loop_thread():
            raise InvalidRequestError(
                "a sync LLMClientService method was called from the service's own event loop; "
                "await ainvoke_chat() (or use the AsyncLLMClient) there instead")

    @overload
    def call(self, func: Callable[[], Awaitable[T]]) -> T: ...

    @overload
    def call(self, func: Callable[[], T]) -> T: ...

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` (a coroutine function or a plain one) on the loop; block for its result."""
        call = _Call(func)
        future: concurrent.futures.Future[Any] | None = None
        try:
            future = self.submit(call.run)
            return future.result()
        except concurrent.futures.CancelledError:
            raise _closed_error() from None
        except BaseException:
            # The waiting thread was interrupted (KeyboardInterrupt), possibly before the portal
            # handed back the future: cancel the call on the loop too, so nothing keeps running
            # for a caller who is gone. (When ``func`` itself raised, this does nothing.)
            if future is None or not future.done():
                self.cancel_soon(call.cancel)
            raise

    def cancel_soon(self, cancel: Callable[[], None]) -> None:
        """Run ``cancel`` on the loop's thread, from any thread, without waiting."""
        if self.stopped and self.forked:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already stopped
            self.loop.call_soon_threadsafe(cancel)

    def submit(self, func: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Start ``func`` on the loop; a future of its result (cancelling it cancels the task)."""
        self._check()
        try:
            return self.portal.start_task_soon(func)
        except RuntimeError:
            if self.stopped:
                raise _closed_error() from None
            raise

    def start_task(self, func: Callable[..., Awaitable[Any]]) -> concurrent.futures.Future[Any]:
        """Start ``func`` (which takes ``task_status``) and wait until it reports started."""
        self._check()
        future, _ = self.portal.start_task(func)
        return future

    def abandon(self) -> None:
        """In a forked child: this runtime's loop and thread stayed in the parent. Mark it
        stopped without touching anything it owns (its sockets and selector are the parent's
        too) and keep it alive, so that no finaliser of its objects ever runs here."""
        self.stopped = self.forked = True
        self._lock = threading.Lock()
        _left_behind.append(self)

    def shutdown(self) -> None:
        """Close the client on its loop, stop the loop and join the thread (idempotent)."""
        if self.forked or self.pid != os.getpid():
            return  # the loop is in another process: nothing here to wait for
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
        if self.in_loop_thread():
            # Finalised by the garbage collector on the loop itself: the loop cannot wait for
            # its own shutdown, so a helper thread does it.
            threading.Thread(target=self._shutdown, name=f"{self.thread.name}-stop",
                             daemon=True).start()
            return
        self._shutdown()

    def _shutdown(self) -> None:
        try:
            client = self.client
            if client is not None and self.thread.is_alive():
                self.portal.call(client.aclose)
        finally:
            with contextlib.suppress(RuntimeError):  # the portal had already stopped
                self.portal.call(self.portal.stop, True)
            self.thread.join(_SHUTDOWN_JOIN_SECONDS)


class _Pump:
    """Iterates one :class:`ChatStream` in one task of the service's loop.

    Chunks cross to the consuming thread over a zero-buffer memory stream, so the provider is
    read only as fast as the caller consumes (back-pressure), and every layer's context managers
    enter and exit in the same task. ``stop()`` cancels the task; the stream is closed in
    ``finally`` under a shield, which releases its connection and whatever the layers hold.
    """

    def __init__(self, stream: ChatStream) -> None:
        self.stream = stream
        self.error: BaseException | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the pump; on the loop's thread, so it is ordered with :meth:`run`'s start."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, self.receive = anyio.create_memory_object_stream[ChatChunk](0)
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        if self.cancelled:
            self.scope.cancel()
        try:
            with self.scope:
                task_status.started()
                try:
                    async for chunk in self.stream:
                        await send.send(chunk)
                except anyio.BrokenResourceError:  # the consumer went away
                    pass
                except Exception as exc:
                    self.error = exc
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()
            send.close()  # wakes a waiting receiver with EndOfStream
            self.receive.close()
            self.done.set()

    async def next(self) -> ChatChunk | None:
        """The next chunk, ``None`` at the end; raises the stream's error."""
        try:
            return await self.receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        await self.done.wait()
        error, self.error = self.error, None
        if error is not None:
            raise error
        return None

    async def stop(self) -> None:
        self.cancel()
        await self.done.wait()


class SyncChatStream:
    """A streaming call for sync code: an iterator of :class:`~llm_async.ChatChunk`.

    Nothing is sent until the first ``next()``. Leaving early — ``break`` out of a ``for`` loop
    (the iterator is then dropped), ``close()``, or the end of a ``with`` block — cancels the
    stream on the service's loop and releases its connection. When the stream ends,
    ``final_response`` holds the assembled answer, usage included. Iterate from one thread at a
    time.
    """

    def __init__(self, runtime: _Runtime, stream: ChatStream) -> None:
        self._runtime = runtime
        self._stream = stream
        self._pump: _Pump | None = None
        self._finished = False
        self._closed = False

    @property
    def request(self) -> ChatRequest:
        """The validated :class:`~llm_async.ChatRequest`."""
        return self._stream.request

    @property
    def final_response(self) -> ChatResponse | None:
        """The assembled answer once the stream has ended (``None`` before)."""
        return self._stream.final_response

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._stream.text

    @property
    def closed(self) -> bool:
        """Whether the stream has ended or been closed (its connection is released)."""
        return self._closed

    def __iter__(self) -> SyncChatStream:
        return self

    def __next__(self) -> ChatChunk:
        if self._finished:
            raise StopIteration
        pump = self._pump
        if pump is None:
            pump = _Pump(self._stream)
            try:
                self._runtime.start_task(pump.run)
            except BaseException:
                # Interrupted while the pump was being started: it may run anyway, so cancel
                # it on the loop (a scope cancelled before it is entered cancels on entry).
                self._finished = self._closed = True
                self._runtime.cancel_soon(pump.cancel)
                raise
            self._pump = pump
        try:
            chunk = self._runtime.call(pump.next)
        except BaseException:
            self.close()
            raise
        if chunk is None:
            self.close()
            raise StopIteration
        return chunk

    def text_stream(self) -> Iterator[str]:
        """Only the text deltas (of the first choice when ``n`` > 1 was asked for)."""
        for chunk in self:
            if chunk.delta and not chunk.index:
                yield chunk.delta

    def get_final_response(self) -> ChatResponse:
        """Consume whatever is left and return the assembled answer."""
        for _ in self:
            pass
        if self.final_response is None:
            raise InvalidRequestError("the stream was closed before it finished")
        return self.final_response

    def close(self) -> None:
        """Stop the stream and release its connection (idempotent; safe after the end)."""
        if self._closed:
            return
        self._closed = self._finished = True
        runtime, pump = self._runtime, self._pump
        if runtime.stopped:  # the service's shutdown cancelled every stream already
            return
        if runtime.in_loop_thread():  # garbage-collected on the loop: no waiting there
            if pump is not None:
                pump.cancel()
            return
        try:
            if pump is not None:
                runtime.call(pump.stop)
            else:  # never started: nothing was sent, nothing is held
                runtime.call(self._stream.aclose)
        except InvalidRequestError:  # closed concurrently
            pass

    def __enter__(self) -> SyncChatStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown anything may be gone
            self.close()

    def __repr__(self) -> str:
        state = "done" if self.final_response else ("closed" if self._closed else "open")
        return f"SyncChatStream(model={self._stream.request.model!r}, {state})"


class LLMClientService:
    """A synchronous LLM client: the synchronous facade over one :class:`~llm_async.AsyncLLMClient`.

    Configuration comes from the environment (:class:`~llm_async.config.Settings`, validated
    here, at start-up: a bad variable raises :class:`~llm_async.ConfigurationError` naming it);
    arguments override it, and ``LLM_FORCE_MOCK=1`` switches any configuration to the mock
    provider. ``circuit_breaker_config`` and ``retry_config`` take the resilience module's
    ``CircuitBreakerConfig`` / ``RetryConfig`` (``None`` turns the feature off). Any other
    keyword (``transport=``, ``layers=``, ``timeout=``, ``fallback_models=``, ``cost_manager=``,
    ``cache_enabled=``, ...) goes to :class:`~llm_async.AsyncLLMClient` unchanged.

    Thread-safe: one service is meant to be shared by every thread of a process (see
    :func:`get_llm_client_service`).
    """

    def __init__(
        self,
        provider: str | None = None,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        circuit_breaker_config: Any = DEFAULT,
        retry_config: Any = DEFAULT,
        settings: Settings | None = None,
        **client_options: Any,
    ) -> None:
        settings = settings if settings is not None else Settings.from_env()
        effective = "mock" if settings.force_mock else (provider or settings.effective_provider)
        if "transport" not in client_options and "transports" not in client_options:
            settings.check_credentials(effective, api_key=api_key, base_url=base_url)
        self.settings = settings
        self._make = functools.partial(
            AsyncLLMClient, provider, api_key=api_key, base_url=base_url, model=model,
            settings=settings, circuit_breaker_config=circuit_breaker_config,
            retry_config=retry_config, **client_options)
        self._start()

    def _start(self) -> None:
        runtime = _Runtime(name=f"llm-async-service-{next(_names)}")
        try:
            # Built on its loop, so whatever a layer binds to "the running loop" is that one.
            client = runtime.call(self._make)
        except BaseException:
            runtime.shutdown()
            raise
        runtime.client = client
        self._runtime = runtime
        self._client = client
        self._finalizer = weakref.finalize(self, runtime.shutdown)

    def _live(self) -> _Runtime:
        """The runtime to use: after a fork, a new one built in this process on first use."""
        runtime = self._runtime
        if runtime.forked:
            with _rebuild_lock:
                if self._runtime.forked:
                    self._finalizer.detach()
                    self._start()
                runtime = self._runtime
        return runtime

    # -- calls ------------------------------------------------------------------------------

    def invoke_chat(self, model: str | None = None, messages: Any = None,
                    **params: Any) -> ChatResponse:
        """Send one chat request and return the whole answer (blocks this thread).

        ``params`` are those of :meth:`AsyncLLMClient.chat <llm_async.AsyncLLMClient.chat>`
        (``temperature``, ``max_tokens``, ``tools``, ``timeout``, ``user_id``, ...).
        """
        return self._live().call(
            functools.partial(self._client.chat, model, messages, **params))

    def stream_chat(self, model: str | None = None, messages: Any = None,
                    **params: Any) -> SyncChatStream:
        """Stream an answer: ``for chunk in service.stream_chat(...)``.

        The request is validated now, so bad input raises here, before anything is sent.
        """
        stream = self._live().call(
            functools.partial(self._client.stream, model, messages, **params))
        return SyncChatStream(self._runtime, stream)

    async def ainvoke_chat(self, model: str | None = None, messages: Any = None,
                           **params: Any) -> ChatResponse:
        """:meth:`invoke_chat` for asyncio code: runs on the service's loop without blocking
        the caller's (cancelling the caller cancels the call)."""
        runtime = self._live()
        call = functools.partial(self._client.chat, model, messages, **params)
        if runtime.in_loop_thread():
            return await call()
        return await asyncio.wrap_future(runtime.submit(call))

    @overload
    def call(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T: ...

    @overload
    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` — a coroutine function or a plain one — on the service's
        loop and return its result: the way to reach anything of :attr:`client` from sync code
        (``service.call(service.client.layer, RetryLayer)``)."""
        return self._live().call(functools.partial(func, *args, **kwargs))

    # -- status -----------------------------------------------------------------------------

    def get_cost_metrics(self) -> dict[str, Any]:
        """The cost ledger's totals as plain numbers: ``total_cost`` (USD, a float),
        ``requests``, ``by_model``, ``by_user``, ``by_project``, token counts, the documented
        ``cost.*`` names and ``budgets`` (each budget's status). Zeros when cost tracking is off
        (``track_cost=False``). The exact :class:`~decimal.Decimal` figures are on
        :attr:`cost_manager`."""
        return self._live().call(functools.partial(_cost_metrics, self._client))

    def get_circuit_breaker_status(self, model: str | None = None) -> dict[str, Any]:
        """The breakers' state: ``state`` (``closed`` / ``open`` / ``half_open``; the worst
        over every (provider, model) breaker, or ``model``'s one), and ``breakers`` keyed by
        ``provider/model``."""
        return self._live().call(
            functools.partial(_circuit_breaker_status, self._client, model))

    def get_retry_metrics(self) -> dict[str, Any]:
        """Retry counters: ``total_attempts``, ``successful_retries``, ``failed_retries``,
        ``total_delay`` and the documented ``retry.*`` names."""
        return self._live().call(functools.partial(_retry_metrics, self._client))

    # -- introspection and lifecycle ------------------------------------------------------

    @property
    def client(self) -> AsyncLLMClient:
        """The underlying client. It lives on the service's loop: use it only from coroutines
        that run there."""
        self._live()
        return self._client

    @property
    def cost_manager(self) -> Any:
        """The :class:`~llm_async.application.cost_manager.CostManager` that bills this
        service's calls (``None`` when cost tracking is off). Thread-safe."""
        return self.call(_cost_manager_of, self._client)

    @property
    def provider(self) -> str:
        """The provider calls go to (``mock`` under ``LLM_FORCE_MOCK=1``)."""
        return self._client.provider

    @property
    def closed(self) -> bool:
        runtime = self._runtime
        return runtime.stopped and not runtime.forked

    def close(self) -> None:
        """Close the client and its connections, stop the loop and its thread (idempotent)."""
        if self._runtime.forked:  # nothing of this process to close
            self._finalizer.detach()
            self._runtime.forked = False
            return
        self._finalizer()

    def __enter__(self) -> LLMClientService:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"LLMClientService(provider={self.provider!r}, {state})"


# -- status readers (run on the service's loop) ---------------------------------------------


def _plain(value: Any) -> Any:
    """Decimals to floats, enums to their values, datetimes to ISO text, recursively."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _cost_manager_of(client: AsyncLLMClient) -> Any:
    """The manager of the client's cost layer; ``None`` when the pipeline tracks no cost."""
    from .application.cost_manager import CostLayer

    layer = client.layer(CostLayer)
    return None if layer is None else layer.manager


def _cost_metrics(client: AsyncLLMClient) -> dict[str, Any]:
    from .application.cost_manager import CostMetrics

    manager = _cost_manager_of(client)
    if manager is None:  # track_cost=False: nothing is recorded
        return {**_plain(CostMetrics().to_dict()), "budgets": {}, "enabled": False}
    data: dict[str, Any] = _plain(manager.get_metrics().to_dict())
    data.update(_plain(manager.metrics()))
    data["budgets"] = {name: _plain(status.to_dict())
                       for name, status in manager.get_all_budget_statuses().items()}
    data["enabled"] = True
    return data


def _circuit_breaker_status(client: AsyncLLMClient, model: str | None) -> dict[str, Any]:
    from .application.circuit_breaker import CircuitBreakerLayer, CircuitState

    layer = client.layer(CircuitBreakerLayer)
    if layer is None:  # circuit_breaker_config=None: nothing ever trips
        return {"state": CircuitState.CLOSED.value, "enabled": False, "breakers": {},
                "circuit.state": CircuitState.CLOSED.value}
    if model is not None:
        provider, bare = client.resolve(model)
        name = f"{provider or 'default'}/{bare}"
        breaker = layer.breakers.get(name)
        if breaker is None:  # not called yet: a breaker that would start closed
            return {"name": name, "state": CircuitState.CLOSED.value, "enabled": True}
        return {**breaker.status(), **breaker.metrics(), "enabled": True}
    metrics = layer.metrics()
    metrics.pop("breakers", None)
    return {**metrics, **layer.status(), "enabled": True}


def _retry_metrics(client: AsyncLLMClient) -> dict[str, Any]:
    from .application.retry_strategy import RetryLayer, RetryMetrics

    layer = client.layer(RetryLayer)
    if layer is None:  # retry_config=None: no retries, all counters zero
        return {**RetryMetrics().snapshot(), "enabled": False}
    return {**layer.metrics(), "enabled": True}


# -- the process-wide service ---------------------------------------------------------------

_service_lock = threading.Lock()
_service: LLMClientService | None = None


def get_llm_client_service() -> LLMClientService:
    """The process-wide service, configured from the environment on first use (thread-safe).

    A closed service is replaced by a new one on the next call.
    """
    global _service
    service = _service
    if service is not None and not service.closed:
        return service
    with _service_lock:
        if _service is None or _service.closed:
            _service = LLMClientService()
        return _service


def reset_llm_client_service() -> None:
    """Close the process-wide service; the next :func:`get_llm_client_service` builds a new one
    from the environment as it is then."""
    global _service
    with _service_lock:
        service, _service = _service, None
    if service is not None:
        service.close()


def _after_fork_in_child() -> None:
    global _service_lock, _rebuild_lock
    _service_lock = threading.Lock()
    _rebuild_lock = threading.Lock()
    for runtime in list(_runtimes):
        if runtime.pid != os.getpid():
            runtime.abandon()
    _runtimes.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def invoke_chat(model: str | None = None, messages: Any = None, **params: Any) -> ChatResponse:
    """``invoke_chat(model=..., messages=[...])`` on the process-wide service."""
    return get_llm_client_service().invoke_chat(model, messages, **params)


def stream_chat(model: str | None = None, messages: Any = None,
                **params: Any) -> SyncChatStream:
    """``for chunk in stream_chat(model=..., messages=[...])`` on the process-wide service."""
    return get_llm_client_service().stream_chat(model, messages, **params)
