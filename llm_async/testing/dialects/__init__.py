"""The provider wire formats the embedded server speaks, one module per provider.

``DIALECTS`` is the registration: the server routes every listed dialect's paths.  A new
dialect is a :class:`~llm_async.testing._dialect.Dialect` subclass in its own module here and
one entry below.
"""

from __future__ import annotations

from .._dialect import Dialect
from .anthropic import AnthropicDialect
from .azure import AzureDialect
from .bedrock import BedrockDialect
from .gemini import GeminiDialect
from .openai import OpenAIDialect
from .openrouter import OpenRouterDialect

__all__ = [
    "DIALECTS",
    "AnthropicDialect",
    "AzureDialect",
    "BedrockDialect",
    "Dialect",
    "GeminiDialect",
    "OpenAIDialect",
    "OpenRouterDialect",
]

#: Every dialect the server serves, in routing order.
DIALECTS: tuple[type[Dialect], ...] = (
    OpenAIDialect,
    AnthropicDialect,
    OpenRouterDialect,
    AzureDialect,
    GeminiDialect,
    BedrockDialect,
)
