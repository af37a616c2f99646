"""The transports: the innermost handlers, one per provider wire format (imported lazily)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "HTTPTransport": ".base",
    "OpenAITransport": ".openai_transport",
    "AnthropicTransport": ".anthropic_transport",
    "OpenRouterTransport": ".openrouter_transport",
    "MockLLMTransport": ".mock",
    "MockReply": ".mock",
    "ProviderRouter": ".router",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
