"""llm_async: a fully asyncio-native, layered client for large language models.

The names here are the ones an application needs: the client and its typed call keywords, the
request and response types, the errors worth catching, the configuration objects, the
process-wide services of the architecture document (``get_llm_client_service``,
``get_cost_manager``, ``get_observability``, ``get_cache``, ``get_deduplicator``,
``get_circuit_breaker``), the retry strategies, and the embedded provider server for tests.
Everything else lives in its subpackage: ``llm_async.types``, ``llm_async.errors``,
``llm_async.application.*`` (policies and their layers), ``llm_async.optimization``,
``llm_async.observability``, ``llm_async.infrastructure.transports``, ``llm_async.testing``.

Names load lazily on first use, so ``import llm_async`` stays as cheap as importing aiohttp.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__ as __version__

# The library logs on "llm_async" and its children; the application decides where that goes.
logging.getLogger("llm_async").addHandler(logging.NullHandler())

# name -> module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    # the client
    "AsyncLLMClient": ".client",
    "ChatStream": ".client",
    "DEFAULT": ".config",
    "Settings": ".config",
    "CallContext": ".context",
    "ChatParams": "._params",
    "MessageParam": "._params",
    # request and response
    "ChatChunk": ".types",
    "ChatRequest": ".types",
    "ChatResponse": ".types",
    "Message": ".types",
    "Timeout": ".types",
    "Tool": ".types",
    "ToolCall": ".types",
    "Usage": ".types",
    # errors worth catching (the whole tree: llm_async.errors)
    "APIConnectionError": ".errors",
    "APIStatusError": ".errors",
    "APITimeoutError": ".errors",
    "AuthenticationError": ".errors",
    "BadRequestError": ".errors",
    "BudgetExceededError": ".errors",
    "CircuitBreakerOpenError": ".errors",
    "ConfigurationError": ".errors",
    "InvalidRequestError": ".errors",
    "LLMError": ".errors",
    "RateLimitError": ".errors",
    "ServerError": ".errors",
    "StreamError": ".errors",
    "StructuredOutputError": ".errors",
    # configuration objects
    "BudgetConfig": ".application.cost_manager",
    "BudgetPeriod": ".application.cost_manager",
    "CacheConfig": ".optimization.cache",
    "CircuitBreakerConfig": ".application.circuit_breaker",
    "DedupConfig": ".optimization.dedup",
    "RateLimitConfig": ".application.limits",
    "RetryConfig": ".application.retry_strategy",
    # the architecture document's services and strategies
    "LLMClientService": ".facade",
    "get_llm_client_service": ".facade",
    "invoke_chat": ".facade",
    "get_cost_manager": ".application.cost_manager",
    "get_observability": ".observability",
    "get_cache": ".optimization.cache",
    "get_deduplicator": ".optimization.dedup",
    "PromptOptimizer": ".optimization.prompt",
    "CircuitBreaker": ".application.circuit_breaker",
    "get_circuit_breaker": ".application.circuit_breaker",
    "AdaptiveRetry": ".application.retry_strategy",
    "ExponentialBackoffRetry": ".application.retry_strategy",
    "FibonacciBackoffRetry": ".application.retry_strategy",
    "LinearBackoffRetry": ".application.retry_strategy",
    "RetryExecutor": ".application.retry_strategy",
    # testing
    "FakeClock": "._clock",
    "MockProviderServer": ".testing",
}

__all__ = sorted([*_EXPORTS, "__version__"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._clock import FakeClock as FakeClock
    from ._params import ChatParams as ChatParams, MessageParam as MessageParam
    from .application.circuit_breaker import (
        CircuitBreaker as CircuitBreaker,
        CircuitBreakerConfig as CircuitBreakerConfig,
        get_circuit_breaker as get_circuit_breaker,
    )
    from .application.cost_manager import (
        BudgetConfig as BudgetConfig,
        BudgetPeriod as BudgetPeriod,
        get_cost_manager as get_cost_manager,
    )
    from .application.limits import RateLimitConfig as RateLimitConfig
    from .application.retry_strategy import (
        AdaptiveRetry as AdaptiveRetry,
        ExponentialBackoffRetry as ExponentialBackoffRetry,
        FibonacciBackoffRetry as FibonacciBackoffRetry,
        LinearBackoffRetry as LinearBackoffRetry,
        RetryConfig as RetryConfig,
        RetryExecutor as RetryExecutor,
    )
    from .client import AsyncLLMClient as AsyncLLMClient, ChatStream as ChatStream
    from .config import DEFAULT as DEFAULT, Settings as Settings
    from .context import CallContext as CallContext
    from .errors import (
        APIConnectionError as APIConnectionError,
        APIStatusError as APIStatusError,
        APITimeoutError as APITimeoutError,
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        BudgetExceededError as BudgetExceededError,
        CircuitBreakerOpenError as CircuitBreakerOpenError,
        ConfigurationError as ConfigurationError,
        InvalidRequestError as InvalidRequestError,
        LLMError as LLMError,
        RateLimitError as RateLimitError,
        ServerError as ServerError,
        StreamError as StreamError,
        StructuredOutputError as StructuredOutputError,
    )
    from .facade import (
        LLMClientService as LLMClientService,
        get_llm_client_service as get_llm_client_service,
        invoke_chat as invoke_chat,
    )
    from .observability import get_observability as get_observability
    from .optimization.cache import CacheConfig as CacheConfig, get_cache as get_cache
    from .optimization.dedup import (
        DedupConfig as DedupConfig,
        get_deduplicator as get_deduplicator,
    )
    from .optimization.prompt import PromptOptimizer as PromptOptimizer
    from .testing import MockProviderServer as MockProviderServer
    from .types import (
        ChatChunk as ChatChunk,
        ChatRequest as ChatRequest,
        ChatResponse as ChatResponse,
        Message as Message,
        Timeout as Timeout,
        Tool as Tool,
        ToolCall as ToolCall,
        Usage as Usage,
    )
