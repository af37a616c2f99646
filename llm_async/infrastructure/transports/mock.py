"""``MockLLMTransport``: an in-process, deterministic transport for tests and demos.

It answers ``default_response`` unless scripted otherwise, streams word by word, counts tokens
as words, and can be scripted with replies, errors and latency::

    transport = MockLLMTransport("Test response")
    transport.script(MockReply(text="first"), RateLimitError("slow down", retry_after=1.0))
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...context import Attempt, CallContext
from ...errors import LLMError, StreamError
from ...types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
    build_request,
)
from ._sync import run_blocking

__all__ = ["MockLLMTransport", "MockReply"]


@dataclass
class MockReply:
    """One scripted answer. ``fail_after`` raises ``error`` after that many stream chunks."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    latency: float = 0.0
    token_delay: float = 0.0
    error: LLMError | None = None
    fail_after: int | None = None


def _words(text: str) -> list[str]:
    return text.split()


class MockLLMTransport:
    """A deterministic in-process provider. ``requests`` records every request it received."""

    provider: ClassVar[str] = "mock"

    def __init__(
        self,
        default_response: str = "This is a mock response.",
        *,
        latency: float = 0.0,
        token_delay: float = 0.0,
        responses: Iterable[MockReply | LLMError | str] = (),
        model: str | None = None,
    ) -> None:
        self.default_response = default_response
        self.latency = latency
        self.token_delay = token_delay
        self.model = model
        self._script: deque[MockReply | LLMError | str] = deque(responses)
        self.requests: list[ChatRequest] = []
        self._ids = itertools.count(1)
        self.closed = False

    def script(self, *items: MockReply | LLMError | str) -> None:
        """Queue replies (text, :class:`MockReply`) and errors, used in order before the default."""
        self._script.extend(items)

    @property
    def call_count(self) -> int:
        return len(self.requests)

    def chat_completion(self, messages: list[Any], model: str, **params: Any) -> ChatResponse:
        """A blocking call for synchronous code, on a background event loop (see
        :class:`~llm_async.HTTPTransport`); async code awaits :meth:`achat_completion`."""
        return run_blocking(self.achat_completion(messages, model, **params),
                            awaitable=f"{type(self).__name__}.achat_completion")

    async def achat_completion(self, messages: list[Any], model: str,
                               **params: Any) -> ChatResponse:
        """``await transport.achat_completion(messages=[...], model=...)``: one call."""
        return await self.chat(build_request(model=model, messages=messages, **params),
                               CallContext())

    def _next(self, request: ChatRequest) -> MockReply:
        self.requests.append(request)
        item = self._script.popleft() if self._script else None
        if isinstance(item, LLMError):
            raise item
        if isinstance(item, str):
            return MockReply(text=item)
        if item is None:
            return MockReply(text=self.default_response)
        if item.error is not None and item.fail_after is None:
            raise item.error
        return item

    def _usage(self, request: ChatRequest, reply: MockReply, text: str) -> Usage:
        if reply.usage is not None:
            return reply.usage
        prompt = sum(len(_words(m.text)) + 3 for m in request.messages)
        out = len(_words(text)) + sum(len(_words(t.function.arguments)) for t in reply.tool_calls)
        return Usage(input_tokens=prompt, output_tokens=out)

    def _text(self, request: ChatRequest, reply: MockReply) -> tuple[str, FinishReason]:
        text = reply.text or ""
        reason: FinishReason = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        if request.max_tokens is not None and reply.finish_reason is None:
            words = _words(text)
            if len(words) > request.max_tokens:
                text = " ".join(words[: request.max_tokens])
                reason = "length"
        return text, reason

    async def _begin(self, request: ChatRequest,
                     ctx: CallContext) -> tuple[Attempt, MockReply, float]:
        """Record the attempt as sent, take the next reply and wait its latency."""
        attempt = ctx.begin_attempt(self.provider, request.model)
        attempt.sent = True
        reply = self._next(request)
        delay = reply.latency or self.latency
        if delay:
            await asyncio.sleep(delay)
        return attempt, reply, delay

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        attempt, reply, delay = await self._begin(request, ctx)
        if reply.error is not None:
            raise reply.error
        text, reason = self._text(request, reply)
        attempt.usage = usage = self._usage(request, reply, text)
        return ChatResponse(
            id=f"mock-{next(self._ids)}",
            model=self.model or request.model,
            provider=self.provider,
            content=text if (text or not reply.tool_calls) else None,
            tool_calls=list(reply.tool_calls),
            finish_reason=reason,
            usage=usage,
            latency=delay,
            requested_model=request.model,
        )

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        attempt, reply, _ = await self._begin(request, ctx)
        text, reason = self._text(request, reply)
        rid = f"mock-{next(self._ids)}"
        model = self.model or request.model
        pace = reply.token_delay or self.token_delay
        sent = 0
        for i, word in enumerate(_words(text)):
            if reply.fail_after is not None and sent >= reply.fail_after and reply.error:
                raise StreamError(f"mock stream failed after {sent} chunks",
                                  cause=reply.error, chunks_received=sent) if sent else reply.error
            if pace:
                await asyncio.sleep(pace)
            sent += 1
            yield ChatChunk(delta=word if i == 0 else f" {word}", id=rid, model=model)
        for index, call in enumerate(reply.tool_calls):
            sent += 1
            yield ChatChunk(tool_calls=[ToolCallDelta(index=index, id=call.id,
                                                      name=call.function.name,
                                                      arguments=call.function.arguments)],
                            id=rid, model=model)
        if reply.fail_after is not None and reply.error is not None:
            raise StreamError("mock stream failed", cause=reply.error,
                              chunks_received=sent) if sent else reply.error
        yield ChatChunk(finish_reason=reason, id=rid, model=model)
        attempt.usage = usage = self._usage(request, reply, text)
        yield ChatChunk(usage=usage, id=rid, model=model)

    async def aclose(self) -> None:
        self.closed = True

    def close(self) -> None:
        """:meth:`aclose` for synchronous code."""
        self.closed = True

    def __repr__(self) -> str:
        return f"MockLLMTransport(calls={self.call_count}, scripted={len(self._script)})"


def tool_call(name: str, arguments: str = "{}", call_id: str = "call_1") -> ToolCall:
    """A :class:`ToolCall` for scripting replies."""
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))
