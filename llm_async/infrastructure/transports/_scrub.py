"""Prompt text kept out of provider error messages: a provider may echo the prompt whole,
truncated or quoted, and with content capture off no prompt text may reach an error."""

from __future__ import annotations

from collections.abc import Iterable

from ...types import Message

__all__ = ["scrub_content"]

#: Shortest run of characters shared with the prompt that is taken to be an echo of it.
_ECHO_MIN = 12
_ECHO_STEP = _ECHO_MIN // 2
_CONTENT_PLACEHOLDER = "[content]"


def _prompt_texts(messages: Iterable[Message]) -> Iterable[str]:
    for message in messages:
        content = message.content
        if isinstance(content, str):
            yield content
        elif content:
            for part in content:
                text = getattr(part, "text", None)
                if isinstance(text, str):
                    yield text
        for call in message.tool_calls or ():
            yield call.function.arguments


def scrub_content(text: str, sources: list[str]) -> str:
    """``text`` with every run of at least 12 characters that also occurs in one of ``sources``
    (and every whole source of 8 characters or more) replaced by ``[content]``.

    Providers echo a prompt whole, truncated or quoted inside a longer message; a shared run of
    characters catches each case. The prompt is indexed by samples of 12 characters every 6, so a
    shared run of 17 characters or more is always found, then grown to its full extent.
    """
    if not text or not sources:
        return text
    for source in sorted(sources, key=len, reverse=True):
        if len(source) >= 8 and source in text:
            text = text.replace(source, _CONTENT_PLACEHOLDER)
    size = len(text)
    if size < _ECHO_MIN:
        return text
    grams: set[str] = set()
    for source in sources:
        last = len(source) - _ECHO_MIN
        if last < 0:
            continue
        grams.update(source[i:i + _ECHO_MIN] for i in range(0, last + 1, _ECHO_STEP))
        grams.add(source[last:])
    spans: list[list[int]] = []
    for i in range(size - _ECHO_MIN + 1):
        if text[i:i + _ECHO_MIN] in grams:
            if spans and i <= spans[-1][1]:
                spans[-1][1] = i + _ECHO_MIN
            else:
                spans.append([i, i + _ECHO_MIN])
    if not spans:
        return text

    def shared(piece: str) -> bool:
        return any(piece in source for source in sources)

    out: list[str] = []
    pos = 0
    for start, end in spans:
        start = max(start, pos)
        for _ in range(_ECHO_STEP):
            if start > pos and shared(text[start - 1:end]):
                start -= 1
            else:
                break
        for _ in range(_ECHO_STEP):
            if end < size and shared(text[start:end + 1]):
                end += 1
            else:
                break
        out.append(text[pos:start])
        out.append(_CONTENT_PLACEHOLDER)
        pos = end
    out.append(text[pos:])
    return "".join(out)
