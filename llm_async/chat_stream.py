"""``ChatStream``: what ``client.stream(...)`` returns, an async iterator of chunks that
assembles the final answer as it goes."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from decimal import Decimal
from typing import Any, Generic

from typing_extensions import TypeVar

from .context import CallContext
from .domain.ports import Handler
from .errors import InvalidRequestError
from .types import ChatChunk, ChatRequest, ChatResponse, StreamAssembler

__all__ = ["ChatStream", "ParsedT"]

#: The type of ``final_response.parsed``.
ParsedT = TypeVar("ParsedT", default=Any)
_ZERO = Decimal(0)


class ChatStream(Generic[ParsedT]):
    """A streaming call: an async iterator of :class:`ChatChunk` and an async context manager.

    When the stream ends, ``final_response`` holds the assembled answer (text, tool calls,
    usage); ``context`` is the call's :class:`~llm_async.context.CallContext`. ``aclose()`` —
    called by ``async with`` — releases the connection at once; breaking out of a bare
    ``async for`` releases it on the next loop iteration.
    """

    __slots__ = ("_assembler", "_closed", "_first", "_gen", "_handler", "_started",
                 "context", "final_response", "request")

    def __init__(self, handler: Handler, request: ChatRequest, ctx: CallContext) -> None:
        self._handler = handler
        self.request = request
        self.context = ctx
        self._gen: AsyncGenerator[ChatChunk, None] | None = None
        self._assembler = StreamAssembler()
        self._started = time.perf_counter()
        self._first: float | None = None
        self._closed = False
        self.final_response: ChatResponse[ParsedT] | None = None

    def __aiter__(self) -> ChatStream[ParsedT]:
        return self

    async def __anext__(self) -> ChatChunk:
        gen = self._gen
        if gen is None:
            if self._closed:
                raise StopAsyncIteration
            gen = self._gen = self._handler.stream(self.request, self.context)
        try:
            chunk = await gen.__anext__()
        except StopAsyncIteration:
            self._finish()
            raise
        except BaseException:
            await self.aclose()
            raise
        if self._first is None:
            self._first = time.perf_counter() - self._started
        self._assembler.add(chunk)
        return chunk

    def _finish(self) -> None:
        self._closed = True
        if self.final_response is None:
            ctx = self.context
            self.final_response = self._assembler.response(
                provider=ctx.answered_provider or self.request.provider or "",
                model=self._assembler.model or self.request.model,
                latency=time.perf_counter() - self._started,
                time_to_first_chunk=self._first,
                requested_model=self.request.model,
                cache_hit=ctx.cache_hit,
                cost=_ZERO if ctx.cache_hit else ctx.cost,
                cost_estimated=ctx.cost_estimated,
            )
            if self.request.response_format is not None:
                from .structured import apply_structured_output

                apply_structured_output(self.final_response, self.request)  # .parsed or raises

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._assembler.text

    async def text_stream(self) -> AsyncGenerator[str, None]:
        """Only the text deltas (of the first choice when ``n`` > 1 was asked for)."""
        async for chunk in self:
            if chunk.delta and not chunk.index:
                yield chunk.delta

    async def get_final_response(self) -> ChatResponse[ParsedT]:
        """Consume whatever is left and return the assembled answer."""
        async for _ in self:
            pass
        if self.final_response is None:
            raise InvalidRequestError("the stream was closed before it finished")
        return self.final_response

    async def aclose(self) -> None:
        """Stop the stream and release its connection and every resource the layers hold."""
        self._closed = True
        gen, self._gen = self._gen, None
        if gen is not None:
            await gen.aclose()

    async def __aenter__(self) -> ChatStream[ParsedT]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "done" if self.final_response else ("closed" if self._closed else "open")
        return f"ChatStream(model={self.request.model!r}, chunks={self._assembler.chunks}, {state})"
