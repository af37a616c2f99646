"""Route each request to the transport of its provider (``provider/model`` prefixes)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

from ...context import CallContext
from ...domain.ports import Handler
from ...errors import InvalidRequestError
from ...types import ChatChunk, ChatRequest, ChatResponse

__all__ = ["ProviderRouter", "split_model"]


def split_model(model: str, providers: Mapping[str, object], default: str) -> tuple[str, str]:
    """``(provider, model)`` for a model id.

    A prefix that names one of ``providers`` routes there and is stripped
    (``"anthropic/claude-3-5-haiku"`` → ``("anthropic", "claude-3-5-haiku")``). Any other id goes
    to ``default`` unchanged, so OpenRouter ids such as ``"openai/gpt-4"`` reach OpenRouter as
    written; ``"openrouter/openai/gpt-4"`` is explicit.
    """
    prefix, sep, rest = model.partition("/")
    if sep and rest and prefix in providers:
        return prefix, rest
    return default, model


class ProviderRouter:
    """The innermost handler of a multi-provider client: dispatches on ``request.provider``."""

    def __init__(self, transports: Mapping[str, Handler], default: str) -> None:
        if default not in transports:
            raise InvalidRequestError(f"default provider {default!r} has no transport",
                                      field="provider")
        self.transports = dict(transports)
        self.default = default

    def _pick(self, request: ChatRequest) -> Handler:
        name = request.provider or self.default
        transport = self.transports.get(name)
        if transport is None:
            raise InvalidRequestError(
                f"unknown provider {name!r}; this client has {sorted(self.transports)}",
                field="provider")
        return transport

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        return await self._pick(request).chat(request, ctx)

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        return self._pick(request).stream(request, ctx)

    async def aclose(self) -> None:
        for transport in self.transports.values():
            await transport.aclose()

    def __repr__(self) -> str:
        return f"ProviderRouter({sorted(self.transports)}, default={self.default!r})"
