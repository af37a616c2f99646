"""``BatchingLayer``: unary calls through a :class:`~.queue.BatchQueue`, sent concurrently or
as provider batch jobs."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from ..._clock import Clock, system_clock
from ...context import CallContext
from ...domain.ports import Handler, Layer, iter_stack
from ...errors import ConfigurationError, InvalidRequestError, LLMError
from ...infrastructure.transports.batch_api import batch_api_for
from ...types import ChatChunk, ChatRequest, ChatResponse
from .queue import BatchQueue, BatchQueueStats

__all__ = ["BatchingLayer"]

#: What the batching queue holds per call: the request, its call context, its ContextVars.
_Item = tuple[ChatRequest, CallContext, contextvars.Context]


class BatchingLayer(Layer):
    """Send unary calls through a :class:`BatchQueue`.

    ``mode="concurrent"``: each batch's requests go through the inner handler concurrently (in
    the submitting caller's context). ``mode="provider"``: each batch becomes one provider batch
    job (half price, results within hours: for offline pipelines only); requests of different
    providers in one batch become one job per provider.

    Streams pass through unbatched: a stream wants its first token now, which is the opposite of
    waiting for a batch window, and batch endpoints do not stream.
    """

    def __init__(self, inner: Handler, *, mode: str = "concurrent", max_batch_size: int = 16,
                 max_wait: float = 0.005, max_concurrency: int = 4, max_pending: int = 1024,
                 poll_interval: float = 10.0, timeout: float | None = None,
                 clock: Clock = system_clock) -> None:
        super().__init__(inner)
        if mode not in ("concurrent", "provider"):
            raise ConfigurationError("mode must be 'concurrent' or 'provider'", variable="mode")
        self.mode = mode
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.clock = clock
        self.queue: BatchQueue[_Item, ChatResponse] = \
            BatchQueue(self._dispatch, max_batch_size=max_batch_size, max_wait=max_wait,
                       max_concurrency=max_concurrency, max_pending=max_pending, clock=clock)

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        return await self.queue.submit((request, ctx, contextvars.copy_context()))

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        return self.inner.stream(request, ctx)

    async def _dispatch(self, items: list[_Item]) -> list[ChatResponse | BaseException]:
        if self.mode == "provider":
            return await self._dispatch_provider([request for request, _, _ in items])
        loop = asyncio.get_running_loop()
        tasks = [context.run(loop.create_task, self.inner.chat(request, ctx))
                 for request, ctx, context in items]
        try:
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            for task in tasks:
                task.cancel()

    def _transport(self, provider: str | None) -> Any:
        for handler in iter_stack(self.inner):
            transports = getattr(handler, "transports", None)
            if isinstance(transports, Mapping):
                name = provider or getattr(handler, "default", None)
                if name in transports:
                    return transports[name]
            if hasattr(handler, "build_payload") and (
                    provider is None or getattr(handler, "provider", None) == provider):
                return handler
        raise ConfigurationError(f"no transport for provider {provider!r} behind this layer")

    async def _dispatch_provider(self, requests: list[ChatRequest]
                                 ) -> list[ChatResponse | BaseException]:
        out: list[ChatResponse | BaseException] = [
            InvalidRequestError("not dispatched")] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: requests[i].provider or "")
        for provider, group in itertools.groupby(order, key=lambda i: requests[i].provider or ""):
            indexes = list(group)
            try:
                api = batch_api_for(self._transport(provider or None), clock=self.clock,
                                    poll_interval=self.poll_interval)
                outcomes: Sequence[ChatResponse | BaseException] = await api.run(
                    [requests[i] for i in indexes], timeout=self.timeout)
            except LLMError as exc:
                outcomes = [exc] * len(indexes)
            for index, outcome in zip(indexes, outcomes, strict=True):
                out[index] = outcome
        return out

    def statistics(self) -> BatchQueueStats:
        """The queue's counters."""
        return self.queue.statistics()

    async def aclose(self) -> None:
        try:
            await self.queue.aclose()
        finally:
            await self.inner.aclose()

    def __repr__(self) -> str:
        return f"BatchingLayer(mode={self.mode!r}, queue={self.queue!r})"
