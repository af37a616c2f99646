"""OpenAI Chat Completions over aiohttp: ``POST {base_url}/chat/completions``; also any
OpenAI-compatible server through ``base_url`` (vLLM, Ollama, llama.cpp's server, a LiteLLM proxy,
the embedded mock server).

* :mod:`.encode`: our messages and ``response_format`` → the wire shape;
* :mod:`.decode`: a chat completion → our response (choices, usage, finish reasons, content
  parts, citations, reasoning details, logprobs, tool calls);
* :mod:`.stream`: stream chunks → chunks;
* :mod:`.transport`: :class:`OpenAITransport`, the endpoint, headers and body.
"""

from __future__ import annotations

from .decode import (
    citations,
    content_parts,
    finish_reason,
    openai_usage,
    parse_choice,
    reasoning_details,
    token_logprobs,
)
from .encode import message_payload, response_format_payload
from .transport import OpenAITransport

__all__ = [
    "OpenAITransport",
    "citations",
    "content_parts",
    "finish_reason",
    "message_payload",
    "openai_usage",
    "parse_choice",
    "reasoning_details",
    "response_format_payload",
    "token_logprobs",
]
