"""Anthropic's Messages API over aiohttp: ``POST {base_url}/v1/messages``.

* :mod:`.encode`: our request → the Messages API body (system text, alternating turns, content
  blocks, tools, the forced structured-output tool);
* :mod:`.decode`: an answer → our response (blocks as parts, stop reasons, usage with cache
  tokens, refusals);
* :mod:`.stream`: stream events → chunks;
* :mod:`.transport`: :class:`AnthropicTransport`, the endpoint and headers.

Request mapping (our :class:`~llm_async.types.ChatRequest` → Anthropic):

* ``system`` and ``developer`` messages → the top-level ``system`` string (joined by blank lines);
* consecutive messages of the same role are merged into one message of content blocks
  (Anthropic requires alternating roles); a ``tool`` message becomes a ``tool_result`` block in a
  user message, an assistant's ``tool_calls`` become ``tool_use`` blocks;
* image parts → ``image`` blocks (``data:`` URLs → a base64 source, http(s) URLs → a url source);
* ``max_tokens`` is always sent (``default_max_tokens``, 4096, when the caller gives none);
* ``tools`` → ``{name, description, input_schema}``; ``tool_choice`` ``auto``/``required``/
  ``none``/a named function → ``auto``/``any``/``none``/``tool``;
* ``stop`` → ``stop_sequences``; ``temperature`` (Anthropic allows 0–1), ``top_p`` and
  ``metadata.user_id`` pass through; ``seed`` and the penalties have no Anthropic equivalent and
  are not sent; ``extra_body`` is merged last (``top_k``, ``thinking``, ``cache_control``...);
* ``response_format`` → one extra tool whose input schema is the requested schema, forced with
  ``tool_choice``; its input comes back as the reply's text (see :mod:`llm_async.structured`).

Response mapping: text blocks → ``content``, ``tool_use`` blocks → ``tool_calls`` (input as JSON
text), ``stop_reason`` → our finish reasons, and usage with cache tokens
(``input_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``).
Every other block is kept, in order, in ``response.parts``: ``thinking`` (with its signature)
and ``redacted_thinking`` as :class:`~llm_async.types.ReasoningPart`, text with its
``citations``, ``server_tool_use`` and the ``*_tool_result`` blocks of provider-run tools, and
any block of a kind without a type here as a :class:`~llm_async.types.ProviderBlockPart`. A
``refusal`` stop becomes ``response.refusal`` (with ``stop_details``' category and explanation).
``response.message`` holds all of it, and an assistant message with such parts is sent back
block for block: the next turn of a tool loop with extended thinking gets its signed thinking
blocks back, as Anthropic requires. Reasoning without a signature (from another provider) is
left out.

Streams follow the whole event sequence; ``ping`` and unknown events are ignored, an ``error``
event raises the typed error (``overloaded_error`` → :class:`~llm_async.errors.OverloadedError`).
Thinking streams as ``chunk.reasoning``; the blocks with their signatures arrive complete on
the final chunk (``chunk.parts``). A stream whose ``message_delta`` carried the stop reason is
complete even when the server closes before ``message_stop``.
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
