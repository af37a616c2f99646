"""The transports: the innermost handlers, one per provider wire format (imported lazily)."""

from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "HTTPTransport": ".base",
    "OpenAITransport": ".openai",
    "AnthropicTransport": ".anthropic",
    "OpenRouterTransport": ".openrouter_transport",
    "AzureOpenAITransport": ".azure_transport",
    "GeminiTransport": ".gemini",
    "BedrockTransport": ".bedrock",
    "MockLLMTransport": ".mock",
    "MockReply": ".mock",
    "ProviderRouter": ".router",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)
