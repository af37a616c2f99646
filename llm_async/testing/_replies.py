"""Deterministic reply generation of the embedded provider server (dialect-neutral).

Replies are drawn from a fixed vocabulary with an RNG seeded by the server seed and a digest of
the request, so the same request always gets the same reply.  A user message starting with
``echo:`` is answered with its own text; offered tools are called with arguments derived from
their JSON schema.  Tokens are counted one per word, and a bounded memory of prompt prefixes
simulates provider prompt caching.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ._wire import (
    ChatRequest,
    Reply,
    RequestError,
    ToolCall,
    ToolSpec,
    Usage,
    count_tokens,
    split_pieces,
)

__all__ = ["VOCABULARY", "PromptCache", "ReplyGenerator", "tool_arguments"]

#: The fixed vocabulary replies are drawn from (64 ordinary lowercase words).
VOCABULARY: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "garden", "window", "paper", "silver",
    "forest", "candle", "bridge", "market", "ocean", "pencil", "thunder", "valley",
    "yellow", "orange", "purple", "simple", "quiet", "bright", "gentle", "rapid",
    "little", "happy", "early", "later", "always", "never", "often", "today",
    "table", "chair", "house", "field", "music", "story", "winter", "summer",
    "morning", "evening", "letter", "number", "circle", "square", "mountain", "island",
    "water", "fire", "earth", "wind", "light", "shadow", "friend", "travel",
    "build", "write", "read", "listen", "answer", "question", "follow", "remember",
)  # fmt: skip



class PromptCache:
    """Bounded memory of prompt-prefix hashes (simulates provider prompt caching)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_remember(self, key: bytes) -> bool:
        """Return whether ``key`` was seen before, and remember it (LRU eviction)."""
        seen = self._seen
        if key in seen:
            seen.move_to_end(key)
            return True
        seen[key] = None
        if len(seen) > self.max_entries:
            seen.popitem(last=False)
        return False

    def clear(self) -> None:
        """Forget every remembered prefix."""
        self._seen.clear()


def tool_arguments(parameters: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """Deterministic arguments for a JSON-schema ``parameters`` object.

    For each property in order: ``string`` -> a vocabulary word (or a value of its ``enum``),
    ``integer`` -> 42, ``number`` -> 1.5, ``boolean`` -> true, ``array`` -> [],
    ``object`` -> {}, anything else -> null.
    """
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    arguments: dict[str, Any] = {}
    for name, schema in properties.items():
        kind: Any = schema.get("type") if isinstance(schema, Mapping) else None
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        value: Any
        if kind == "string":
            enum = schema.get("enum") if isinstance(schema, Mapping) else None
            if isinstance(enum, list) and enum:
                value = enum[rng.randrange(len(enum))]
            else:
                value = VOCABULARY[rng.randrange(len(VOCABULARY))]
        elif kind == "integer":
            value = 42
        elif kind == "number":
            value = 1.5
        elif kind == "boolean":
            value = True
        elif kind == "array":
            value = []
        elif kind == "object":
            value = {}
        else:
            value = None
        arguments[str(name)] = value
    return arguments


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class ReplyGenerator:
    """Deterministic reply generation, token counting and prompt caching (dialect-neutral)."""

    def __init__(self, *, seed: int = 0, reply_words: int = 12, cache_size: int = 4096,
                 prompt_tokens: str = "words") -> None:
        if prompt_tokens not in ("words", "bytes"):
            raise ValueError("prompt_tokens must be 'words' or 'bytes'")
        self.seed = seed
        self.reply_words = reply_words
        self.prompt_cache = PromptCache(cache_size)
        #: How prompts are counted: one token per word, or (``"bytes"``) one per UTF-8 byte,
        #: the most any byte-level tokenizer can count.
        self.count_prompt = count_tokens if prompt_tokens == "words" else _utf8_bytes

    def reset(self) -> None:
        """Forget the prompt cache."""
        self.prompt_cache.clear()

    def generate(self, request: ChatRequest) -> Reply:
        """Generate the reply to ``request``.

        Raises :class:`RequestError` when ``tool_choice`` names a tool that is not offered.
        """
        messages = request.messages
        parts = [m.canonical for m in messages]
        body = ",".join(parts)
        digest_bytes = hashlib.sha256(f"{request.model}\n[{body}]".encode()).digest()
        digest = digest_bytes.hex()
        prefix = hashlib.sha256(("[" + ",".join(parts[:-1]) + "]").encode()).digest()

        count = self.count_prompt
        last_tokens = count(messages[-1].text) + 3
        prompt_tokens = sum(count(m.text) for m in messages) + 3 * len(messages)
        cached = prompt_tokens - last_tokens if self.prompt_cache.check_and_remember(prefix) else 0

        rng = random.Random(f"{self.seed}:{digest}")
        tool = self._tool_to_call(request)
        if tool is not None:
            arguments = json.dumps(tool_arguments(tool.parameters, rng))
            call = ToolCall(id="call_" + digest[:24], name=tool.name, arguments=arguments)
            usage = Usage(prompt_tokens, max(1, count_tokens(arguments)), cached)
            return Reply([], call, "tool_calls", usage, digest)

        pieces = self._text_pieces(request, rng)
        finish_reason = "stop"
        if request.max_tokens is not None and request.max_tokens < len(pieces):
            pieces = pieces[: request.max_tokens]
            finish_reason = "length"
        return Reply(pieces, None, finish_reason, Usage(prompt_tokens, len(pieces), cached), digest)

    def _text_pieces(self, request: ChatRequest, rng: random.Random) -> list[str]:
        for message in reversed(request.messages):
            if message.role == "user":
                text = message.text.lstrip()
                if text.startswith("echo:"):
                    return split_pieces(text[5:].strip())
                break
        words = rng.choices(VOCABULARY, k=self.reply_words)
        return [words[0], *(" " + w for w in words[1:])] if words else []

    @staticmethod
    def _tool_to_call(request: ChatRequest) -> ToolSpec | None:
        if not request.tools or request.tool_choice == "none":
            return None
        if request.tool_choice == "named":
            for tool in request.tools:
                if tool.name == request.tool_name:
                    return tool
            raise RequestError(
                f"Invalid value for 'tool_choice': no function named '{request.tool_name}' "
                "was specified in the 'tools' parameter.",
                param="tool_choice",
                code="invalid_value",
            )
        if request.tool_choice == "required" or (
            request.tool_choice == "auto" and request.messages[-1].role == "user"
        ):
            return request.tools[0]
        return None


