"""Typed request, response and stream-chunk models shared by every provider and every layer.

Transports translate these to and from each provider's wire format; layers only ever see these.
Plain dicts are accepted for messages and tools (``messages=[{"role": "user", ...}]``).

The models live in modules by what they describe: ``content`` (messages and content parts),
``tools``, ``request`` (:class:`ChatRequest`, :func:`build_request`), ``response``
(:class:`ChatResponse`, :class:`Usage`) and ``stream`` (:class:`ChatChunk`,
:class:`StreamAssembler`); every name is importable from ``llm_async.types``.
"""

from __future__ import annotations

from .content import (
    Citation,
    ContentPart,
    ImagePart,
    ImageURL,
    Message,
    ProviderBlockPart,
    ReasoningPart,
    Role,
    ServerToolCallPart,
    ServerToolResultPart,
    TextPart,
)
from .request import (
    ChatRequest,
    RequestMetadata,
    Timeout,
    _simple_request as _simple_request,
    build_request,
)
from .response import (
    ChatResponse,
    Choice,
    FinishReason,
    ParsedT as ParsedT,
    Refusal,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from .stream import ChatChunk, StreamAssembler
from .tools import (
    FunctionCall,
    FunctionDefinition,
    Tool,
    ToolCall,
    ToolCallDelta,
    mark_incomplete as mark_incomplete,
)

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "Citation",
    "ContentPart",
    "FinishReason",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "Message",
    "ProviderBlockPart",
    "ReasoningPart",
    "Refusal",
    "RequestMetadata",
    "Role",
    "ServerToolCallPart",
    "ServerToolResultPart",
    "StreamAssembler",
    "TextPart",
    "Timeout",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "Usage",
    "build_request",
]

