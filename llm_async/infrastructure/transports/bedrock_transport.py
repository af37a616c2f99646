"""AWS Bedrock's Converse API transport (this path re-exports :mod:`.bedrock`, where the request
encoder, the response and stream decoders, the exception mapping and the transport class
live)."""

from __future__ import annotations

from .bedrock import (
    EXCEPTION_ERRORS,
    BedrockTransport,
    EventStreamDecoder,
    bedrock_usage,
    stop_reason,
)

__all__ = [
    "EXCEPTION_ERRORS",
    "BedrockTransport",
    "EventStreamDecoder",
    "bedrock_usage",
    "stop_reason",
]
