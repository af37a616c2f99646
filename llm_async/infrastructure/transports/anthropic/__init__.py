"""Anthropic's Messages API over aiohttp: ``POST {base_url}/v1/messages``.

* :mod:`.encode`: our request → the Messages API body (system text, alternating turns, content
  blocks, tools, the forced structured-output tool);
* :mod:`.decode`: an answer → our response (blocks as parts, stop reasons, usage with cache
  tokens, refusals);
* :mod:`.stream`: stream events → chunks;
* :mod:`.transport`: :class:`AnthropicTransport`, the endpoint and headers.

``response.message`` holds every block of a reply, and an assistant message with such parts is
sent back block for block: the next turn of a tool loop with extended thinking gets its signed
thinking blocks back, as Anthropic requires.
"""

from __future__ import annotations

from .decode import (
    ERROR_STATUS,
    anthropic_usage,
    block_part,
    parse_citation,
    stop_reason,
    stop_refusal,
)
from .transport import ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS, AnthropicTransport

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
