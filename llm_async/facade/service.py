""":class:`LLMClientService`: one :class:`~llm_async.AsyncLLMClient` on the service's own
event loop, called from sync code (and rebuilt in a forked child on first use)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, overload

from ..client import DEFAULT, AsyncLLMClient
from ..config import Settings
from ..types import ChatResponse
from .runtime import _Runtime
from .status import _circuit_breaker_status, _cost_manager_of, _cost_metrics, _retry_metrics
from .stream import SyncChatStream

__all__ = ["LLMClientService"]


T = TypeVar("T")

_names = itertools.count(1)
#: Serialises rebuilding a service's runtime after a fork (re-created in every child).
_rebuild_lock = threading.Lock()


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


def _after_fork_in_child() -> None:
    global _rebuild_lock
    _rebuild_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
