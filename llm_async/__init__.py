"""llm_async: a fully asyncio-native, layered client for large language models.

Everything public is importable from here. Names load lazily on first use, so
``import llm_async`` stays as cheap as importing aiohttp: providers, OpenTelemetry, cache
backends, Redis and the pricing catalogue are imported only when something asks for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    # client and pipeline
    "AsyncLLMClient": ".client",
    "ChatStream": ".client",
    "ClientOptions": ".client",
    "DEFAULT": ".client",
    "make_transport": ".client",
    "Settings": ".config",
    "Handler": ".domain.ports",
    "Layer": ".domain.ports",
    "LayerFactory": ".domain.ports",
    "build_stack": ".domain.ports",
    "Clock": "._clock",
    "FakeClock": "._clock",
    "SystemClock": "._clock",
    # types
    "CallContext": ".types",
    "ChatChunk": ".types",
    "ChatRequest": ".types",
    "ChatResponse": ".types",
    "FunctionCall": ".types",
    "FunctionDefinition": ".types",
    "ImagePart": ".types",
    "ImageURL": ".types",
    "Message": ".types",
    "RequestMetadata": ".types",
    "StreamAssembler": ".types",
    "TextPart": ".types",
    "Timeout": ".types",
    "Tool": ".types",
    "ToolCall": ".types",
    "ToolCallDelta": ".types",
    "Usage": ".types",
    "build_request": ".types",
    # errors
    "APIConnectionError": ".errors",
    "APIStatusError": ".errors",
    "APITimeoutError": ".errors",
    "AuthenticationError": ".errors",
    "BadRequestError": ".errors",
    "BudgetExceededError": ".errors",
    "CircuitBreakerOpenError": ".errors",
    "ConfigurationError": ".errors",
    "ConflictError": ".errors",
    "ContextLengthExceededError": ".errors",
    "FallbackExhaustedError": ".errors",
    "InsufficientCreditsError": ".errors",
    "InvalidRequestError": ".errors",
    "LLMError": ".errors",
    "NotFoundError": ".errors",
    "OverloadedError": ".errors",
    "PermissionDeniedError": ".errors",
    "ProtocolError": ".errors",
    "QuotaExceededError": ".errors",
    "RateLimitError": ".errors",
    "RateLimiterError": ".errors",
    "RequestTimeoutError": ".errors",
    "ResponseTooLargeError": ".errors",
    "ServerError": ".errors",
    "StreamError": ".errors",
    "StructuredOutputError": ".errors",
    "UnprocessableEntityError": ".errors",
    # transports and wire
    "HTTPTransport": ".infrastructure.transports.base",
    "OpenAITransport": ".infrastructure.transports.openai_transport",
    "MockLLMTransport": ".infrastructure.transports.mock",
    "MockReply": ".infrastructure.transports.mock",
    "ProviderRouter": ".infrastructure.transports.router",
    "SSEDecoder": ".infrastructure.sse",
    "SSEEvent": ".infrastructure.sse",
    # testing
    "MockProviderServer": ".testing",
    "Fault": ".testing",
    # -- issue 3: providers ------------------------------------------------------------------
    # -- issue 4: resilience -----------------------------------------------------------------
    # -- issue 5: cost and budgets -----------------------------------------------------------
    # -- issue 6: optimization ---------------------------------------------------------------
    # -- issue 7: observability --------------------------------------------------------------
    # -- issue 8: facade ---------------------------------------------------------------------
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._clock import Clock, FakeClock, SystemClock
    from .client import DEFAULT, AsyncLLMClient, ChatStream, ClientOptions, make_transport
    from .config import Settings
    from .domain.ports import Handler, Layer, LayerFactory, build_stack
    from .errors import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        BudgetExceededError,
        CircuitBreakerOpenError,
        ConfigurationError,
        ConflictError,
        ContextLengthExceededError,
        FallbackExhaustedError,
        InsufficientCreditsError,
        InvalidRequestError,
        LLMError,
        NotFoundError,
        OverloadedError,
        PermissionDeniedError,
        ProtocolError,
        QuotaExceededError,
        RateLimiterError,
        RateLimitError,
        RequestTimeoutError,
        ResponseTooLargeError,
        ServerError,
        StreamError,
        StructuredOutputError,
        UnprocessableEntityError,
    )
    from .infrastructure.sse import SSEDecoder, SSEEvent
    from .infrastructure.transports.base import HTTPTransport
    from .infrastructure.transports.mock import MockLLMTransport, MockReply
    from .infrastructure.transports.openai_transport import OpenAITransport
    from .infrastructure.transports.router import ProviderRouter
    from .testing import Fault, MockProviderServer
    from .types import (
        CallContext,
        ChatChunk,
        ChatRequest,
        ChatResponse,
        FunctionCall,
        FunctionDefinition,
        ImagePart,
        ImageURL,
        Message,
        RequestMetadata,
        StreamAssembler,
        TextPart,
        Timeout,
        Tool,
        ToolCall,
        ToolCallDelta,
        Usage,
        build_request,
    )
