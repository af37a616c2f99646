"""Fallback: when a model cannot answer, ask the next one of an ordered list.

It sits outside retry and the circuit breaker, so it moves on only once retries are exhausted,
at once when a breaker is open (the open-circuit error is never retried), and when the prompt
is too long for the model (``ContextLengthExceededError``: a larger-context model may fit it).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing

from ..context import CallContext
from ..domain.ports import Handler, Layer
from ..errors import (
    ConfigurationError,
    ErrorKind,
    FallbackExhaustedError,
    InvalidRequestError,
    LLMError,
)
from ..types import ChatChunk, ChatRequest, ChatResponse

__all__ = ["FallbackLayer", "default_should_fallback"]


def default_should_fallback(error: BaseException) -> bool:
    """Move to the next model after: a retryable error (retries are exhausted when it gets
    here), an open circuit, a context-length error, an exhausted quota or credit, an unknown
    model, or our own rate limiter refusing the call. Never after a stream's first chunk, a
    caller's mistake (400/401/403/422, invalid request) or a budget."""
    if not isinstance(error, LLMError) or error.kind is ErrorKind.STREAM:
        return False
    return error.kind.moves_on or error.retryable


_REASONS = {ErrorKind.CIRCUIT_OPEN: "circuit_open", ErrorKind.CONTEXT_LENGTH: "context_length"}


def _reason(error: BaseException) -> str:
    return _REASONS.get(error.kind, "error") if isinstance(error, LLMError) else "error"


class FallbackLayer(Layer):
    """Try ``request.model``, then each of ``models`` in order (at most ``max_depth`` of them).

    A model may name another provider with a prefix (``"anthropic/claude-3-5-haiku"``); the
    client's ``resolve`` splits it. Per call, ``options={"fallback_models": [...]}`` replaces
    the list (``[]`` turns fallback off). Each move emits the event ``"fallback"``
    (``from_model``, ``to_model``, ``reason``, ``error``) and sets ``ctx.answered_model`` /
    ``ctx.answered_provider``; the response's ``model``/``provider`` name who answered and
    ``requested_model`` what the caller asked for. When every model fails,
    :class:`~llm_async.errors.FallbackExhaustedError` lists ``(model, error)`` pairs and chains
    the last error. A stream falls back only before its first chunk.
    """

    def __init__(self, inner: Handler, models: Sequence[str] = (), *, max_depth: int = 3,
                 resolve: Callable[[str], tuple[str, str]] | None = None,
                 should_fallback: Callable[[BaseException], bool] = default_should_fallback,
                 ) -> None:
        super().__init__(inner)
        if max_depth < 0:
            raise ConfigurationError("max_depth must be >= 0")
        self.models = tuple(models)
        self.max_depth = max_depth
        self.resolve = resolve
        self.should_fallback = should_fallback

    def chain(self, request: ChatRequest) -> list[ChatRequest]:
        """The requests to try, in order: the original, then one per fallback model."""
        option = request.options.get("fallback_models")
        if option is None:
            models: Sequence[str] = self.models
        elif isinstance(option, list | tuple) and all(isinstance(m, str) for m in option):
            models = option
        else:
            raise InvalidRequestError("options['fallback_models'] must be a list of model ids",
                                      field="options.fallback_models")
        chain = [request]
        seen = {(request.provider, request.model)}
        for model in models:
            if len(chain) > self.max_depth:
                break
            provider, bare = self.resolve(model) if self.resolve else (request.provider, model)
            if (provider, bare) in seen:
                continue
            seen.add((provider, bare))
            new = request.model_copy(update={"model": bare, "provider": provider})
            chain.append(new)
        return chain

    @staticmethod
    def _label(request: ChatRequest) -> str:
        return f"{request.provider}/{request.model}" if request.provider else request.model

    def _move(self, current: ChatRequest, nxt: ChatRequest, error: BaseException,
              ctx: CallContext) -> None:
        ctx.answered_model = nxt.model
        ctx.answered_provider = nxt.provider
        ctx.event("fallback", from_model=current.model, to_model=nxt.model,
                  from_provider=current.provider, to_provider=nxt.provider,
                  reason=_reason(error), error=type(error).__name__)

    def _failed(self, chain: list[ChatRequest], index: int, errors: list[tuple[str, LLMError]],
                error: LLMError, ctx: CallContext) -> None:
        """``chain[index]`` failed with ``error`` (before any chunk): report the move to the
        next model and return, or raise — ``error`` itself when it is no reason to move on or
        the chain has a single model, else :class:`~llm_async.errors.FallbackExhaustedError`
        chaining it. Chat and stream share this decision."""
        if not self.should_fallback(error):
            raise error
        errors.append((self._label(chain[index]), error))
        if index + 1 < len(chain):
            self._move(chain[index], chain[index + 1], error, ctx)
            return
        if len(chain) == 1:
            raise error
        raise self._exhausted(errors) from error

    def _exhausted(self, errors: list[tuple[str, LLMError]]) -> FallbackExhaustedError:
        names = ", ".join(model for model, _ in errors)
        last = errors[-1][1]
        return FallbackExhaustedError(f"every model failed ({names}): {last.message}",
                                      errors=errors, provider=last.provider, status=last.status)

    def _passthrough(self, request: ChatRequest) -> bool:
        """Whether the chain is just ``request`` without looking further (no fallback models
        configured and none given per call): then the layer stays out of the way."""
        return not self.models and "fallback_models" not in request.options

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """Try each model of the chain until one answers."""
        if self._passthrough(request):
            return await self.inner.chat(request, ctx)
        chain = self.chain(request)
        errors: list[tuple[str, LLMError]] = []
        for index, attempt in enumerate(chain):
            try:
                response = await self.inner.chat(attempt, ctx)
            except LLMError as exc:
                self._failed(chain, index, errors, exc, ctx)
                continue
            if index:
                response.requested_model = request.model
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Stream from each model of the chain until one delivers its first chunk.

        Without fallback models the inner stream is returned as it is (a one-model chain
        would only re-raise its errors), so no generator is added per chunk."""
        if self._passthrough(request):
            return self.inner.stream(request, ctx)
        return self._stream(request, ctx)

    async def _stream(self, request: ChatRequest,
                      ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        chain = self.chain(request)
        errors: list[tuple[str, LLMError]] = []
        for index, attempt in enumerate(chain):
            committed = False
            try:
                async with aclosing(self.inner.stream(attempt, ctx)) as chunks:
                    async for chunk in chunks:
                        committed = True
                        yield chunk
                return
            except LLMError as exc:
                if committed:
                    raise
                self._failed(chain, index, errors, exc, ctx)

    def __repr__(self) -> str:
        return f"FallbackLayer(models={list(self.models)}, inner={type(self.inner).__name__})"
