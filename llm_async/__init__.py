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
    "AnthropicTransport": ".infrastructure.transports.anthropic_transport",
    "OpenRouterTransport": ".infrastructure.transports.openrouter_transport",
    "OutputSchema": ".structured",
    "output_schema": ".structured",
    "parse_structured_output": ".structured",
    # -- issue 4: resilience -----------------------------------------------------------------
    "AdaptiveRetry": ".application.retry_strategy",
    "ErrorKind": ".application.retry_strategy",
    "ErrorPolicy": ".application.retry_strategy",
    "ExponentialBackoffRetry": ".application.retry_strategy",
    "FibonacciBackoffRetry": ".application.retry_strategy",
    "LinearBackoffRetry": ".application.retry_strategy",
    "RetryBudget": ".application.retry_strategy",
    "RetryConfig": ".application.retry_strategy",
    "RetryExecutor": ".application.retry_strategy",
    "RetryLayer": ".application.retry_strategy",
    "RetryStrategy": ".application.retry_strategy",
    "get_retry_metrics": ".application.retry_strategy",
    "CircuitBreaker": ".application.circuit_breaker",
    "CircuitBreakerConfig": ".application.circuit_breaker",
    "CircuitBreakerLayer": ".application.circuit_breaker",
    "CircuitState": ".application.circuit_breaker",
    "all_circuit_breakers": ".application.circuit_breaker",
    "get_circuit_breaker": ".application.circuit_breaker",
    "ConcurrencyLimitLayer": ".application.rate_limit",
    "RateLimitConfig": ".application.rate_limit",
    "RateLimitLayer": ".application.rate_limit",
    "FallbackLayer": ".application.fallback",
    "RedisBucketStore": ".infrastructure.redis_state",
    "RedisCircuitBreaker": ".infrastructure.redis_state",
    # -- issue 5: cost and budgets -----------------------------------------------------------
    "BudgetConfig": ".application.cost_manager",
    "BudgetEvent": ".application.cost_manager",
    "BudgetPeriod": ".application.cost_manager",
    "BudgetStatus": ".application.cost_manager",
    "CostLayer": ".application.cost_manager",
    "CostManager": ".application.cost_manager",
    "CostMetrics": ".application.cost_manager",
    "Ledger": ".application.cost_manager",
    "MemoryLedger": ".application.cost_manager",
    "Recommendation": ".application.cost_manager",
    "UsageRecord": ".application.cost_manager",
    "get_cost_manager": ".application.cost_manager",
    "set_cost_manager": ".application.cost_manager",
    "ModelPrice": ".application.pricing",
    "PricingCatalog": ".application.pricing",
    "get_pricing_catalog": ".application.pricing",
    "TokenEstimator": ".application.tokens",
    "estimate_tokens": ".application.tokens",
    "SQLiteLedger": ".infrastructure.ledger_sqlite",
    "RedisLedger": ".infrastructure.ledger_redis",
    # -- issue 6: optimization ---------------------------------------------------------------
    "CacheConfig": ".optimization.cache",
    "CacheLayer": ".optimization.cache",
    "MemoryBackend": ".optimization.cache",
    "RedisBackend": ".optimization.cache",
    "ResponseCache": ".optimization.cache",
    "get_cache": ".optimization.cache",
    "DedupConfig": ".optimization.dedup",
    "DedupLayer": ".optimization.dedup",
    "Deduplicator": ".optimization.dedup",
    "get_deduplicator": ".optimization.dedup",
    "AnthropicBatchAPI": ".optimization.batching",
    "BatchQueue": ".optimization.batching",
    "BatchResults": ".optimization.batching",
    "BatchingLayer": ".optimization.batching",
    "OpenAIBatchAPI": ".optimization.batching",
    "chat_many": ".optimization.batching",
    "OptimizedPrompt": ".optimization.prompt",
    "PromptOptimizer": ".optimization.prompt",
    "HashingEmbedder": ".optimization.semantic",
    "SimilarityIndex": ".optimization.semantic",
    # -- issue 7: observability --------------------------------------------------------------
    "Observability": ".observability.facade",
    "OperationSpan": ".observability.facade",
    "get_observability": ".observability.facade",
    "TracingLayer": ".observability.tracing",
    "DashboardServer": ".observability.dashboard",
    "create_dashboard_app": ".observability.dashboard",
    "serve_dashboard": ".observability.dashboard",
    "setup_dashboard": ".observability.dashboard",
    # -- issue 8: facade ---------------------------------------------------------------------
    "LLMClientService": ".facade",
    "SyncChatStream": ".facade",
    "get_llm_client_service": ".facade",
    "invoke_chat": ".facade",
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
    from ._clock import (
        Clock as Clock,
    )
    from ._clock import (
        FakeClock as FakeClock,
    )
    from ._clock import (
        SystemClock as SystemClock,
    )
    from .application.circuit_breaker import (  # issue 4
        CircuitBreaker as CircuitBreaker,
    )
    from .application.circuit_breaker import (
        CircuitBreakerConfig as CircuitBreakerConfig,
    )
    from .application.circuit_breaker import (
        CircuitBreakerLayer as CircuitBreakerLayer,
    )
    from .application.circuit_breaker import (
        CircuitState as CircuitState,
    )
    from .application.circuit_breaker import (
        all_circuit_breakers as all_circuit_breakers,
    )
    from .application.circuit_breaker import (
        get_circuit_breaker as get_circuit_breaker,
    )
    from .application.cost_manager import (  # issue 5
        BudgetConfig as BudgetConfig,
    )
    from .application.cost_manager import (
        BudgetEvent as BudgetEvent,
    )
    from .application.cost_manager import (
        BudgetPeriod as BudgetPeriod,
    )
    from .application.cost_manager import (
        BudgetStatus as BudgetStatus,
    )
    from .application.cost_manager import (
        CostLayer as CostLayer,
    )
    from .application.cost_manager import (
        CostManager as CostManager,
    )
    from .application.cost_manager import (
        CostMetrics as CostMetrics,
    )
    from .application.cost_manager import (
        Ledger as Ledger,
    )
    from .application.cost_manager import (
        MemoryLedger as MemoryLedger,
    )
    from .application.cost_manager import (
        Recommendation as Recommendation,
    )
    from .application.cost_manager import (
        UsageRecord as UsageRecord,
    )
    from .application.cost_manager import (
        get_cost_manager as get_cost_manager,
    )
    from .application.cost_manager import (
        set_cost_manager as set_cost_manager,
    )
    from .application.fallback import (  # issue 4
        FallbackLayer as FallbackLayer,
    )
    from .application.pricing import (  # issue 5
        ModelPrice as ModelPrice,
    )
    from .application.pricing import (
        PricingCatalog as PricingCatalog,
    )
    from .application.pricing import (
        get_pricing_catalog as get_pricing_catalog,
    )
    from .application.rate_limit import (  # issue 4
        ConcurrencyLimitLayer as ConcurrencyLimitLayer,
    )
    from .application.rate_limit import (
        RateLimitConfig as RateLimitConfig,
    )
    from .application.rate_limit import (
        RateLimitLayer as RateLimitLayer,
    )
    from .application.retry_strategy import (  # issue 4
        AdaptiveRetry as AdaptiveRetry,
    )
    from .application.retry_strategy import (
        ErrorKind as ErrorKind,
    )
    from .application.retry_strategy import (
        ErrorPolicy as ErrorPolicy,
    )
    from .application.retry_strategy import (
        ExponentialBackoffRetry as ExponentialBackoffRetry,
    )
    from .application.retry_strategy import (
        FibonacciBackoffRetry as FibonacciBackoffRetry,
    )
    from .application.retry_strategy import (
        LinearBackoffRetry as LinearBackoffRetry,
    )
    from .application.retry_strategy import (
        RetryBudget as RetryBudget,
    )
    from .application.retry_strategy import (
        RetryConfig as RetryConfig,
    )
    from .application.retry_strategy import (
        RetryExecutor as RetryExecutor,
    )
    from .application.retry_strategy import (
        RetryLayer as RetryLayer,
    )
    from .application.retry_strategy import (
        RetryStrategy as RetryStrategy,
    )
    from .application.retry_strategy import (
        get_retry_metrics as get_retry_metrics,
    )
    from .application.tokens import TokenEstimator as TokenEstimator
    from .application.tokens import estimate_tokens  # issue 5 as estimate_tokens  # issue 5,
    from .client import (
        DEFAULT as DEFAULT,
    )
    from .client import (
        AsyncLLMClient as AsyncLLMClient,
    )
    from .client import (
        ChatStream as ChatStream,
    )
    from .client import (
        ClientOptions as ClientOptions,
    )
    from .client import (
        make_transport as make_transport,
    )
    from .config import (
        Settings as Settings,
    )
    from .domain.ports import (
        Handler as Handler,
    )
    from .domain.ports import (
        Layer as Layer,
    )
    from .domain.ports import (
        LayerFactory as LayerFactory,
    )
    from .domain.ports import (
        build_stack as build_stack,
    )
    from .errors import (
        APIConnectionError as APIConnectionError,
    )
    from .errors import (
        APIStatusError as APIStatusError,
    )
    from .errors import (
        APITimeoutError as APITimeoutError,
    )
    from .errors import (
        AuthenticationError as AuthenticationError,
    )
    from .errors import (
        BadRequestError as BadRequestError,
    )
    from .errors import (
        BudgetExceededError as BudgetExceededError,
    )
    from .errors import (
        CircuitBreakerOpenError as CircuitBreakerOpenError,
    )
    from .errors import (
        ConfigurationError as ConfigurationError,
    )
    from .errors import (
        ConflictError as ConflictError,
    )
    from .errors import (
        ContextLengthExceededError as ContextLengthExceededError,
    )
    from .errors import (
        FallbackExhaustedError as FallbackExhaustedError,
    )
    from .errors import (
        InsufficientCreditsError as InsufficientCreditsError,
    )
    from .errors import (
        InvalidRequestError as InvalidRequestError,
    )
    from .errors import (
        LLMError as LLMError,
    )
    from .errors import (
        NotFoundError as NotFoundError,
    )
    from .errors import (
        OverloadedError as OverloadedError,
    )
    from .errors import (
        PermissionDeniedError as PermissionDeniedError,
    )
    from .errors import (
        ProtocolError as ProtocolError,
    )
    from .errors import (
        QuotaExceededError as QuotaExceededError,
    )
    from .errors import (
        RateLimiterError as RateLimiterError,
    )
    from .errors import (
        RateLimitError as RateLimitError,
    )
    from .errors import (
        RequestTimeoutError as RequestTimeoutError,
    )
    from .errors import (
        ResponseTooLargeError as ResponseTooLargeError,
    )
    from .errors import (
        ServerError as ServerError,
    )
    from .errors import (
        StreamError as StreamError,
    )
    from .errors import (
        StructuredOutputError as StructuredOutputError,
    )
    from .errors import (
        UnprocessableEntityError as UnprocessableEntityError,
    )
    from .facade import (  # issue 8
        LLMClientService as LLMClientService,
    )
    from .facade import (
        SyncChatStream as SyncChatStream,
    )
    from .facade import (
        get_llm_client_service as get_llm_client_service,
    )
    from .facade import (
        invoke_chat as invoke_chat,
    )
    from .infrastructure.ledger_redis import RedisLedger  # issue 5 as RedisLedger  # issue 5,
    from .infrastructure.ledger_sqlite import SQLiteLedger  # issue 5 as SQLiteLedger  # issue 5,
    from .infrastructure.redis_state import (  # issue 4
        RedisBucketStore as RedisBucketStore,
    )
    from .infrastructure.redis_state import (
        RedisCircuitBreaker as RedisCircuitBreaker,
    )
    from .infrastructure.sse import (
        SSEDecoder as SSEDecoder,
    )
    from .infrastructure.sse import (
        SSEEvent as SSEEvent,
    )
    from .infrastructure.transports.anthropic_transport import (
        AnthropicTransport,  # issue 3 as AnthropicTransport  # issue 3,
    )
    from .infrastructure.transports.base import (
        HTTPTransport as HTTPTransport,
    )
    from .infrastructure.transports.mock import (
        MockLLMTransport as MockLLMTransport,
    )
    from .infrastructure.transports.mock import (
        MockReply as MockReply,
    )
    from .infrastructure.transports.openai_transport import (
        OpenAITransport as OpenAITransport,
    )
    from .infrastructure.transports.openrouter_transport import (
        OpenRouterTransport,  # issue 3 as OpenRouterTransport  # issue 3,
    )
    from .infrastructure.transports.router import (
        ProviderRouter as ProviderRouter,
    )
    from .observability.dashboard import (
        DashboardServer as DashboardServer,
    )
    from .observability.dashboard import (
        create_dashboard_app as create_dashboard_app,
    )
    from .observability.dashboard import (
        serve_dashboard as serve_dashboard,
    )
    from .observability.dashboard import (
        setup_dashboard as setup_dashboard,
    )
    from .observability.facade import (
        Observability as Observability,
    )
    from .observability.facade import (
        OperationSpan as OperationSpan,
    )
    from .observability.facade import (
        get_observability as get_observability,
    )
    from .observability.tracing import (
        TracingLayer as TracingLayer,
    )
    from .optimization.batching import (
        AnthropicBatchAPI as AnthropicBatchAPI,
    )
    from .optimization.batching import (
        BatchingLayer as BatchingLayer,
    )
    from .optimization.batching import (
        BatchQueue as BatchQueue,
    )
    from .optimization.batching import (
        BatchResults as BatchResults,
    )
    from .optimization.batching import (
        OpenAIBatchAPI as OpenAIBatchAPI,
    )
    from .optimization.batching import (
        chat_many as chat_many,
    )
    from .optimization.cache import (
        CacheConfig as CacheConfig,
    )
    from .optimization.cache import (
        CacheLayer as CacheLayer,
    )
    from .optimization.cache import (
        MemoryBackend as MemoryBackend,
    )
    from .optimization.cache import (
        RedisBackend as RedisBackend,
    )
    from .optimization.cache import (
        ResponseCache as ResponseCache,
    )
    from .optimization.cache import (
        get_cache as get_cache,
    )
    from .optimization.dedup import (
        DedupConfig as DedupConfig,
    )
    from .optimization.dedup import (
        DedupLayer as DedupLayer,
    )
    from .optimization.dedup import (
        Deduplicator as Deduplicator,
    )
    from .optimization.dedup import (
        get_deduplicator as get_deduplicator,
    )
    from .optimization.prompt import (
        OptimizedPrompt as OptimizedPrompt,
    )
    from .optimization.prompt import (
        PromptOptimizer as PromptOptimizer,
    )
    from .optimization.semantic import (
        HashingEmbedder as HashingEmbedder,
    )
    from .optimization.semantic import (
        SimilarityIndex as SimilarityIndex,
    )
    from .structured import OutputSchema as OutputSchema
    from .structured import output_schema as output_schema
    from .structured import (
        parse_structured_output,  # issue 3 as parse_structured_output  # issue 3,
    )
    from .testing import (
        Fault as Fault,
    )
    from .testing import (
        MockProviderServer as MockProviderServer,
    )
    from .types import (
        CallContext as CallContext,
    )
    from .types import (
        ChatChunk as ChatChunk,
    )
    from .types import (
        ChatRequest as ChatRequest,
    )
    from .types import (
        ChatResponse as ChatResponse,
    )
    from .types import (
        FunctionCall as FunctionCall,
    )
    from .types import (
        FunctionDefinition as FunctionDefinition,
    )
    from .types import (
        ImagePart as ImagePart,
    )
    from .types import (
        ImageURL as ImageURL,
    )
    from .types import (
        Message as Message,
    )
    from .types import (
        RequestMetadata as RequestMetadata,
    )
    from .types import (
        StreamAssembler as StreamAssembler,
    )
    from .types import (
        TextPart as TextPart,
    )
    from .types import (
        Timeout as Timeout,
    )
    from .types import (
        Tool as Tool,
    )
    from .types import (
        ToolCall as ToolCall,
    )
    from .types import (
        ToolCallDelta as ToolCallDelta,
    )
    from .types import (
        Usage as Usage,
    )
    from .types import (
        build_request as build_request,
    )
