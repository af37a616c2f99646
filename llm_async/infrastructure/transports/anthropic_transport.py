"""Anthropic's Messages API transport (this path re-exports :mod:`.anthropic`, where the request
encoder, the response and stream decoders and the transport class live)."""

from __future__ import annotations

from .anthropic import (
    ANTHROPIC_VERSION,
    DEFAULT_MAX_TOKENS,
    ERROR_STATUS,
    AnthropicTransport,
    anthropic_usage,
    block_part,
    parse_citation,
    stop_reason,
    stop_refusal,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "ERROR_STATUS",
    "AnthropicTransport",
    "anthropic_usage",
    "block_part",
    "parse_citation",
    "stop_reason",
    "stop_refusal",
]
