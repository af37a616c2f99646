"""The ports: one handler shape for a unary call and one for a stream, and the layer
that wraps them.

A :class:`Handler` turns a :class:`~llm_async.types.ChatRequest` into a
:class:`~llm_async.types.ChatResponse` (``chat``) or into an async generator of
:class:`~llm_async.types.ChatChunk` (``stream``). Both also receive the call's
:class:`~llm_async.context.CallContext`: the typed state the layers of one logical call share
(created fresh by the client for every call; the request itself stays plain, reusable data).
Transports are the innermost handlers; every layer is a handler that wraps the next one (Tower's
Service/Layer, Starlette's middleware).

The pipeline is one fold, outermost first::

    handler = transport
    for make in reversed(layers):
        handler = make(handler)

Stream rules every layer follows:

* a resource taken for a stream (a permit, a reservation, a span) is held until the generator
  ends and released in ``finally`` — which also runs when the caller breaks out or is cancelled;
* the inner generator is always closed explicitly (``async with aclosing(...)``), never left to
  the garbage collector;
* the inner handler is called in the caller's task, so ContextVars flow through.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from contextlib import aclosing
from typing import Any, Protocol, TypeVar, runtime_checkable

from ..context import CallContext
from ..types import ChatChunk, ChatRequest, ChatResponse

__all__ = [
    "Handler", "Layer", "LayerFactory", "aclosing", "build_stack", "find_layer", "iter_stack",
]


@runtime_checkable
class Handler(Protocol):
    """Request in, response (or a stream of chunks) out."""

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        """Answer a unary call."""
        ...

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        """Answer a streaming call; the caller closes the generator when it is done."""
        ...

    async def aclose(self) -> None:
        """Release what the handler owns (sessions, workers), then close the inner handler."""
        ...


#: Something that wraps a handler in a layer: a layer class, ``functools.partial(Layer, ...)``
#: or any callable ``(inner) -> Handler``.
LayerFactory = Callable[[Handler], Handler]

H = TypeVar("H")


class Layer:
    """Base class of a layer: it passes everything through to ``inner`` unchanged.

    Subclasses override ``chat`` and/or ``stream``. A layer that does not apply to streams
    keeps the pass-through ``stream`` and says why in its docstring.
    """

    def __init__(self, inner: Handler) -> None:
        self.inner = inner

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        return await self.inner.chat(request, ctx)

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        return self.inner.stream(request, ctx)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(inner={type(self.inner).__name__})"


def build_stack(innermost: Handler, layers: Sequence[LayerFactory]) -> Handler:
    """Wrap ``innermost`` in ``layers``; the first layer of the list is the outermost."""
    handler = innermost
    for make in reversed(layers):
        handler = make(handler)
    return handler


def iter_stack(handler: Any) -> Iterator[Any]:
    """Every handler of a stack, outermost first (follows ``.inner``)."""
    seen: set[int] = set()
    while handler is not None and id(handler) not in seen:
        seen.add(id(handler))
        yield handler
        handler = getattr(handler, "inner", None)


def find_layer(handler: Any, kind: type[H]) -> H | None:
    """The outermost layer of type ``kind`` in a stack, or ``None``."""
    for item in iter_stack(handler):
        if isinstance(item, kind):
            return item
    return None
