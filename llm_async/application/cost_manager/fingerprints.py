"""Fingerprints of a prompt, stored on each usage record so the recommendations can find
repeated prompts (a response cache would have saved them) and repeated prefixes (prompt caching
would have)."""

from __future__ import annotations

import hashlib
import json

from ...types import ChatRequest, Message

__all__ = ["prompt_hashes"]

#: Prompts with more characters than this get no prompt fingerprints (hashing them would hold
#: the event loop); the recommendations then skip them.
_HASH_LIMIT = 1 << 20


def _message_key(message: Message) -> str:
    """A canonical text of one message: ``role`` and text for a plain text message (the usual
    case, no encoding needed), its sorted JSON otherwise."""
    if (type(message.content) is str and message.name is None and message.tool_calls is None
            and message.tool_call_id is None):
        return f"{message.role}\x1f{message.content}"
    return json.dumps(message.model_dump(exclude_none=True), sort_keys=True, default=str)


def prompt_hashes(request: ChatRequest) -> tuple[str | None, str | None]:
    """``(prompt_hash, prefix_hash)``: fingerprints of the model with the whole conversation
    (and tools), and with every message but the last (``None`` for a single message, and both
    ``None`` for a prompt over a mebibyte of text)."""
    messages = request.messages
    if len(messages) == 1 and not request.tools:
        message = messages[0]
        content = message.content
        if (type(content) is str and message.name is None and message.tool_calls is None
                and message.tool_call_id is None):  # one plain text message: the usual prompt
            if len(content) > _HASH_LIMIT:
                return None, None
            digest = hashlib.sha256(
                f"{request.model}\x1e{message.role}\x1f{content}\x1d".encode()).hexdigest()
            return digest[:32], None
    if sum(len(m.content) if type(m.content) is str else 0 for m in messages) > _HASH_LIMIT:
        return None, None
    if len(messages) == 1 and not request.tools:
        digest = hashlib.sha256(
            f"{request.model}\x1e{_message_key(messages[0])}\x1d".encode()).hexdigest()
        return digest[:32], None
    keys = [_message_key(m) for m in messages]
    head = hashlib.sha256(f"{request.model}\x1e".encode())
    for key in keys[:-1]:
        head.update(key.encode())
        head.update(b"\x1e")
    prefix_hash = head.hexdigest()[:32] if len(keys) > 1 else None
    whole = head.copy()
    whole.update(keys[-1].encode())
    whole.update(b"\x1d")
    if request.tools:
        whole.update(json.dumps([t.model_dump() for t in request.tools], sort_keys=True,
                                default=str).encode())
    return whole.hexdigest()[:32], prefix_hash
