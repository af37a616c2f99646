"""Message content: what spans record when content capture is on, and what is scrubbed from
error text when it is off.

With ``capture_content=True`` the tracing layer records ``gen_ai.input.messages``,
``gen_ai.output.messages`` and ``gen_ai.tool.definitions`` (JSON strings on the GenAI
conventions' shapes) built here.

With capture off no prompt or completion text may be recorded anywhere, but a provider's error
message may echo the prompt ("invalid content: 'Summarise the report…'"). Before an error text
is put on a span (status, events) or in the dashboard, :class:`ContentScrubber` replaces in it
every run of :data:`MIN_RUN` or more characters copied from one of the request's texts (message
contents, tool-call arguments and results, tool descriptions), and every whole such text of four
or more characters, with ``[content]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..types import (
    ChatRequest,
    ImagePart,
    Message,
    ReasoningPart,
    ServerToolCallPart,
    TextPart,
)

__all__ = [
    "MIN_RUN",
    "ContentScrubber",
    "input_messages",
    "output_messages",
    "output_type",
    "request_texts",
    "tool_definitions",
]



def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.role == "tool":
        parts.append({"type": "tool_call_response", "id": message.tool_call_id,
                      "response": message.text})
        return parts
    if isinstance(message.content, str):
        parts.append({"type": "text", "content": message.content})
    elif message.content:
        for part in message.content:
            if isinstance(part, ImagePart):
                url = part.image_url.url
                if url.startswith("data:"):
                    url = url.split(",", 1)[0] + ",..."
                parts.append({"type": "uri", "modality": "image", "uri": url})
            elif isinstance(part, TextPart):
                parts.append({"type": "text", "content": part.text})
            elif isinstance(part, ReasoningPart):
                parts.append({"type": "reasoning", "content": part.text})
    for call in message.tool_calls or ():
        parts.append({"type": "tool_call", "id": call.id, "name": call.function.name,
                      "arguments": call.function.arguments})
    return parts


def input_messages(request: ChatRequest) -> str:
    return json.dumps([{"role": m.role, "parts": _parts(m)} for m in request.messages],
                      ensure_ascii=False)


def output_messages(text: str | None, tool_calls: Sequence[Any],
                     finish_reason: str | None) -> str:
    parts: list[dict[str, Any]] = []
    if text:
        parts.append({"type": "text", "content": text})
    for call in tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.function.name,
                      "arguments": call.function.arguments})
    return json.dumps([{"role": "assistant", "parts": parts,
                        "finish_reason": finish_reason or ""}], ensure_ascii=False)


def tool_definitions(request: ChatRequest) -> str | None:
    if not request.tools:
        return None
    return json.dumps([{"type": "function", "name": t.function.name,
                        "description": t.function.description,
                        "parameters": t.function.parameters} for t in request.tools],
                      ensure_ascii=False)


def output_type(response_format: Any) -> str | None:
    if response_format is None:
        return None
    if isinstance(response_format, Mapping):
        return "text" if response_format.get("type") == "text" else "json"
    return "json"


# -- scrubbing (capture off) -------------------------------------------------------------------

#: The shortest run of characters copied from a request text that is always scrubbed.
MIN_RUN = 16
_GRAM = MIN_RUN // 2  # any common run of 2 * _GRAM characters holds one aligned gram
_SHORT = 4
_MASK = "[content]"
_PLACES = 16  # positions kept per gram (a repetitive text repeats its grams)


def request_texts(request: ChatRequest) -> Iterator[str]:
    """Every piece of text of ``request`` that counts as content."""
    for message in request.messages:
        if isinstance(message.content, str):
            yield message.content
        elif message.content:
            for part in message.content:
                if isinstance(part, TextPart | ReasoningPart) and part.text:
                    yield part.text
                elif isinstance(part, ServerToolCallPart) and part.input:
                    yield json.dumps(part.input, ensure_ascii=False)
        for call in message.tool_calls or ():
            yield call.function.arguments
    for tool in request.tools or ():
        if tool.function.description:
            yield tool.function.description


class ContentScrubber:
    """Removes the texts of one request from any text recorded about it (see the module doc).

    Built lazily: nothing is indexed until the first :meth:`scrub`, which happens only on an
    error or an event that carries a string.
    """

    __slots__ = ("_anchors", "_request", "_short", "_texts")

    def __init__(self, request: ChatRequest) -> None:
        self._request = request
        self._texts: list[str] | None = None
        self._short: list[str] = []
        self._anchors: dict[str, list[tuple[int, int]]] = {}

    def _index(self) -> list[str]:
        texts: list[str] = []
        for text in request_texts(self._request):
            if len(text) < _SHORT:
                continue
            escaped = json.dumps(text, ensure_ascii=False)[1:-1]
            for form in (text, escaped) if escaped != text else (text,):
                texts.append(form)
                if len(form) < MIN_RUN:
                    self._short.append(form)
                number = len(texts) - 1
                anchors = self._anchors
                for start in range(0, len(form) - _GRAM + 1, _GRAM):
                    places = anchors.setdefault(form[start:start + _GRAM], [])
                    if len(places) < _PLACES:
                        places.append((number, start))
        self._short.sort(key=len, reverse=True)
        self._texts = texts
        return texts

    def scrub(self, text: str) -> str:
        """``text`` with the request's texts replaced by ``[content]``."""
        texts = self._texts if self._texts is not None else self._index()
        if not texts or not text:
            return text
        spans = self._runs(text, texts)
        for short in self._short:
            start = text.find(short)
            while start != -1:
                spans.append((start, start + len(short)))
                start = text.find(short, start + 1)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        for start, end in _merge(spans):
            out.append(text[pos:start])
            out.append(_MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    __call__ = scrub

    def _runs(self, text: str, texts: list[str]) -> list[tuple[int, int]]:
        """Spans of ``text`` that are runs of at least :data:`MIN_RUN` characters of a
        request text: found from an aligned gram of the text, then extended both ways."""
        spans: list[tuple[int, int]] = []
        anchors = self._anchors
        i = 0
        limit = len(text) - _GRAM + 1
        while i < limit:
            best = (0, 0)
            for number, at in anchors.get(text[i:i + _GRAM], ()):
                source = texts[number]
                left = 0
                while (i - left > 0 and at - left > 0
                       and text[i - left - 1] == source[at - left - 1]):
                    left += 1
                right = _GRAM
                while (i + right < len(text) and at + right < len(source)
                       and text[i + right] == source[at + right]):
                    right += 1
                if ((left + right >= MIN_RUN or left + right == len(source))
                        and left + right > sum(best)):
                    best = (left, right)
            if best[1]:
                spans.append((i - best[0], i + best[1]))
                i += best[1]
            else:
                i += 1
        return spans


def _merge(spans: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    start, end = spans[0]
    for s, e in spans[1:]:
        if s <= end:
            end = max(end, e)
        else:
            yield start, end
            start, end = s, e
    yield start, end
