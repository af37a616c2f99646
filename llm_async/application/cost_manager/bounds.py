"""The input-token upper bound of a request: no text, in any script, can beat it.

Budgets reserve an attempt's worst-case cost *before* it is sent, so its input must be bounded
without asking the provider. Byte-level BPE tokenizers (OpenAI's, Anthropic's) and SentencePiece
with byte fallback (Gemini's) never produce more tokens than the text has UTF-8 bytes, so
:func:`input_token_bound` is the UTF-8 byte count of every text the request carries (messages,
names, tool calls, tool definitions, the response schema), plus :data:`MESSAGE_OVERHEAD_BOUND`
per message and :data:`REQUEST_OVERHEAD_BOUND` per request for the chat format, plus a
per-image allowance (:func:`image_token_bound`). It is computed in O(1) per ASCII text (the
usual case); a text of more than :data:`LARGE_TEXT` characters that is not ASCII is bounded by
four bytes per character without being scanned, so a huge prompt never blocks the event loop.
"""

from __future__ import annotations

import json

from ...types import ChatRequest, ImagePart

__all__ = [
    "LARGE_TEXT",
    "MESSAGE_OVERHEAD_BOUND",
    "REQUEST_OVERHEAD_BOUND",
    "image_token_bound",
    "input_token_bound",
    "text_bound",
]

#: Tokens a chat format may add around one message (role, separators, a name marker): above
#: OpenAI's published 3 (+1 for a name) and Anthropic's turn markers.
MESSAGE_OVERHEAD_BOUND = 8
#: Tokens a chat format may add once per request (reply priming, tool-definition wrappers).
REQUEST_OVERHEAD_BOUND = 32
#: Texts longer than this many characters that are not ASCII are bounded at four bytes per
#: character (the UTF-8 maximum) instead of being encoded.
LARGE_TEXT = 1 << 20

# Input tokens one image can cost at most, by model prefix (largest image, highest detail):
# gpt-4o-mini counts 2,833 + 5,667 per 512-px tile (six tiles at most); patch-based and other
# models stay below the default.
_IMAGE_BOUNDS: tuple[tuple[str, int], ...] = (("gpt-4o-mini", 36_835),)
_IMAGE_BOUND_DEFAULT = 6_000


def image_token_bound(model: str | None) -> int:
    """The most input tokens one image can cost on ``model``."""
    name = (model or "").lower().rpartition("/")[2]
    for prefix, bound in _IMAGE_BOUNDS:
        if name.startswith(prefix):
            return bound
    return _IMAGE_BOUND_DEFAULT


def text_bound(text: str) -> int:
    """An upper bound of the tokens of ``text`` under any byte-level tokenizer: its UTF-8 byte
    count (O(1) for ASCII; four bytes a character, unscanned, for a huge non-ASCII text)."""
    if text.isascii():
        return len(text)
    if len(text) > LARGE_TEXT:
        return 4 * len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _json_bound(value: object) -> int:
    return text_bound(json.dumps(value, default=str))


def input_token_bound(request: ChatRequest) -> int:
    """A true upper bound of the input tokens ``request`` can be billed (see the module
    docstring): no text, in any script, can make the provider count more."""
    total = REQUEST_OVERHEAD_BOUND
    images = 0
    per_message = MESSAGE_OVERHEAD_BOUND
    for message in request.messages:
        content = message.content
        if type(content) is str:
            total += per_message + (len(content) if content.isascii() else text_bound(content))
        else:
            total += per_message + text_bound(message.text)
            if isinstance(content, list):
                images += sum(isinstance(p, ImagePart) for p in content)
        if message.name:
            total += 2 + text_bound(message.name)
        for call in message.tool_calls or ():
            total += per_message + text_bound(call.function.name) \
                + text_bound(call.function.arguments) + text_bound(call.id or "")
        if message.tool_call_id:
            total += 2 + text_bound(message.tool_call_id)
    if request.tools:
        total += _json_bound([t.model_dump(exclude_none=True) for t in request.tools]) \
            + per_message * len(request.tools)
    fmt = request.response_format
    if isinstance(fmt, dict):
        total += _json_bound(fmt) + per_message
    elif isinstance(fmt, type):
        try:
            schema = fmt.model_json_schema()  # type: ignore[attr-defined]
        except Exception:
            schema = {}
        total += _json_bound(schema) + per_message
    if images:
        total += images * image_token_bound(request.model)
    return total
