"""llm_async: a fully asyncio-native, layered client for large language models.

Everything public is importable from here. Names load lazily on first use, so
``import llm_async`` stays as cheap as importing aiohttp: providers, OpenTelemetry, cache
backends, Redis and the pricing catalogue are imported only when something asks for them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

# The library logs on "llm_async" and its children; the application decides where that goes.
logging.getLogger("llm_async").addHandler(logging.NullHandler())

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
    "CallContext": ".context",
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
    # content model: reasoning, refusals, citations, provider tools, choices, logprobs
    "Choice": ".types",
    "Citation": ".types",
    "ProviderBlockPart": ".types",
    "ReasoningPart": ".types",
    "Refusal": ".types",
    "ServerToolCallPart": ".types",
    "ServerToolResultPart": ".types",
    "TokenLogprob": ".types",
    "RefusalError": ".errors",
    "ToolArgumentsError": ".errors",
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._clock import (
        Clock as Clock,
        FakeClock as FakeClock,
        SystemClock as SystemClock,
    )
    from .application.circuit_breaker import (  # issue 4
        CircuitBreaker as CircuitBreaker,
        CircuitBreakerConfig as CircuitBreakerConfig,
        CircuitBreakerLayer as CircuitBreakerLayer,
        CircuitState as CircuitState,
        all_circuit_breakers as all_circuit_breakers,
        get_circuit_breaker as get_circuit_breaker,
    )
    from .application.cost_manager import (  # issue 5
        BudgetConfig as BudgetConfig,
        BudgetEvent as BudgetEvent,
        BudgetPeriod as BudgetPeriod,
        BudgetStatus as BudgetStatus,
        CostLayer as CostLayer,
        CostManager as CostManager,
        CostMetrics as CostMetrics,
        Ledger as Ledger,
        MemoryLedger as MemoryLedger,
        Recommendation as Recommendation,
        UsageRecord as UsageRecord,
        get_cost_manager as get_cost_manager,
        set_cost_manager as set_cost_manager,
    )
    from .application.fallback import (  # issue 4
        FallbackLayer as FallbackLayer,
    )
    from .application.pricing import (  # issue 5
        ModelPrice as ModelPrice,
        PricingCatalog as PricingCatalog,
        get_pricing_catalog as get_pricing_catalog,
    )
    from .application.rate_limit import (  # issue 4
        ConcurrencyLimitLayer as ConcurrencyLimitLayer,
        RateLimitConfig as RateLimitConfig,
        RateLimitLayer as RateLimitLayer,
    )
    from .application.retry_strategy import (  # issue 4
        AdaptiveRetry as AdaptiveRetry,
        ErrorKind as ErrorKind,
        ErrorPolicy as ErrorPolicy,
        ExponentialBackoffRetry as ExponentialBackoffRetry,
        FibonacciBackoffRetry as FibonacciBackoffRetry,
        LinearBackoffRetry as LinearBackoffRetry,
        RetryBudget as RetryBudget,
        RetryConfig as RetryConfig,
        RetryExecutor as RetryExecutor,
        RetryLayer as RetryLayer,
        RetryStrategy as RetryStrategy,
        get_retry_metrics as get_retry_metrics,
    )
    from .application.tokens import (
        TokenEstimator as TokenEstimator,
        estimate_tokens,  # issue 5 as estimate_tokens  # issue 5,
    )
    from .client import (
        DEFAULT as DEFAULT,
        AsyncLLMClient as AsyncLLMClient,
        ChatStream as ChatStream,
        ClientOptions as ClientOptions,
        make_transport as make_transport,
    )
    from .config import (
        Settings as Settings,
    )
    from .context import CallContext as CallContext
    from .domain.ports import (
        Handler as Handler,
        Layer as Layer,
        LayerFactory as LayerFactory,
        build_stack as build_stack,
    )
    from .errors import (
        APIConnectionError as APIConnectionError,
        APIStatusError as APIStatusError,
        APITimeoutError as APITimeoutError,
        AuthenticationError as AuthenticationError,
        BadRequestError as BadRequestError,
        BudgetExceededError as BudgetExceededError,
        CircuitBreakerOpenError as CircuitBreakerOpenError,
        ConfigurationError as ConfigurationError,
        ConflictError as ConflictError,
        ContextLengthExceededError as ContextLengthExceededError,
        FallbackExhaustedError as FallbackExhaustedError,
        InsufficientCreditsError as InsufficientCreditsError,
        InvalidRequestError as InvalidRequestError,
        LLMError as LLMError,
        NotFoundError as NotFoundError,
        OverloadedError as OverloadedError,
        PermissionDeniedError as PermissionDeniedError,
        ProtocolError as ProtocolError,
        QuotaExceededError as QuotaExceededError,
        RateLimiterError as RateLimiterError,
        RateLimitError as RateLimitError,
        RefusalError as RefusalError,
        RequestTimeoutError as RequestTimeoutError,
        ResponseTooLargeError as ResponseTooLargeError,
        ServerError as ServerError,
        StreamError as StreamError,
        StructuredOutputError as StructuredOutputError,
        ToolArgumentsError as ToolArgumentsError,
        UnprocessableEntityError as UnprocessableEntityError,
    )
    from .facade import (  # issue 8
        LLMClientService as LLMClientService,
        SyncChatStream as SyncChatStream,
        get_llm_client_service as get_llm_client_service,
        invoke_chat as invoke_chat,
    )
    from .infrastructure.ledger_redis import RedisLedger  # issue 5 as RedisLedger  # issue 5,
    from .infrastructure.ledger_sqlite import SQLiteLedger  # issue 5 as SQLiteLedger  # issue 5,
    from .infrastructure.redis_state import (  # issue 4
        RedisBucketStore as RedisBucketStore,
        RedisCircuitBreaker as RedisCircuitBreaker,
    )
    from .infrastructure.sse import (
        SSEDecoder as SSEDecoder,
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
        create_dashboard_app as create_dashboard_app,
        serve_dashboard as serve_dashboard,
        setup_dashboard as setup_dashboard,
    )
    from .observability.facade import (
        Observability as Observability,
        OperationSpan as OperationSpan,
        get_observability as get_observability,
    )
    from .observability.tracing import (
        TracingLayer as TracingLayer,
    )
    from .optimization.batching import (
        AnthropicBatchAPI as AnthropicBatchAPI,
        BatchingLayer as BatchingLayer,
        BatchQueue as BatchQueue,
        BatchResults as BatchResults,
        OpenAIBatchAPI as OpenAIBatchAPI,
        chat_many as chat_many,
    )
    from .optimization.cache import (
        CacheConfig as CacheConfig,
        CacheLayer as CacheLayer,
        MemoryBackend as MemoryBackend,
        RedisBackend as RedisBackend,
        ResponseCache as ResponseCache,
        get_cache as get_cache,
    )
    from .optimization.dedup import (
        DedupConfig as DedupConfig,
        DedupLayer as DedupLayer,
        Deduplicator as Deduplicator,
        get_deduplicator as get_deduplicator,
    )
    from .optimization.prompt import (
        OptimizedPrompt as OptimizedPrompt,
        PromptOptimizer as PromptOptimizer,
    )
    from .optimization.semantic import (
        HashingEmbedder as HashingEmbedder,
        SimilarityIndex as SimilarityIndex,
    )
    from .structured import (
        OutputSchema as OutputSchema,
        output_schema as output_schema,
        parse_structured_output,  # issue 3 as parse_structured_output  # issue 3,
    )
    from .testing import (
        Fault as Fault,
        MockProviderServer as MockProviderServer,
    )
    from .types import (
        ChatChunk as ChatChunk,
        ChatRequest as ChatRequest,
        ChatResponse as ChatResponse,
        Choice as Choice,
        Citation as Citation,
        FunctionCall as FunctionCall,
        FunctionDefinition as FunctionDefinition,
        ImagePart as ImagePart,
        ImageURL as ImageURL,
        Message as Message,
        ProviderBlockPart as ProviderBlockPart,
        ReasoningPart as ReasoningPart,
        Refusal as Refusal,
        RequestMetadata as RequestMetadata,
        ServerToolCallPart as ServerToolCallPart,
        ServerToolResultPart as ServerToolResultPart,
        StreamAssembler as StreamAssembler,
        TextPart as TextPart,
        Timeout as Timeout,
        TokenLogprob as TokenLogprob,
        Tool as Tool,
        ToolCall as ToolCall,
        ToolCallDelta as ToolCallDelta,
        Usage as Usage,
        build_request as build_request,
    )

