"""What today's models put in a reply besides text, for the embedded provider server.

The server adds it to a generated reply in two ways:

* **on request**, as the real APIs do: reasoning when the request asks for it (Anthropic
  ``thinking``, OpenAI ``reasoning_effort``, OpenRouter ``reasoning``), ``n`` answers, token
  log probabilities, and JSON that fills the schema of ``response_format`` (unless the last
  user message is an ``echo:``, whose text stays the answer);
* **scripted**, like faults: a :class:`Script` queued on the server makes its next matching
  replies refuse, cite sources (with a web search on Anthropic), or think given words.

Reasoning carries the server's signature (:func:`~llm_async.testing._wire.sign`); dialects
check it when a client sends a thinking block back, as Anthropic does, so a client that alters
or drops it is caught.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._replies import VOCABULARY
from ._wire import ChatRequest, Reply, ReplyContent, Usage, count_tokens, sign

__all__ = ["Script", "ScriptQueue", "enrich", "fill_schema"]


@dataclass
class Script:
    """Content the server puts in its next matching replies (queued with
    ``MockProviderServer.add_script`` or ``POST /_mock/scripts``).

    * ``refusal`` -- the model refuses with these words (OpenAI ``refusal``; Anthropic
      ``stop_reason: "refusal"`` with ``stop_details``); ``refusal_category`` is Anthropic's
      category (``cyber``, ``bio`` ...).
    * ``reasoning`` -- the model thinks these words (whether or not the request asked).
    * ``redacted_reasoning`` -- Anthropic: the thinking arrives as a ``redacted_thinking``
      block.
    * ``citations`` -- the answer cites these sources (``{"url", "title", "cited_text"}``):
      OpenAI ``url_citation`` annotations; on Anthropic a ``web_search`` server tool call, its
      results and text blocks citing them.

    Selection works like :class:`~llm_async.testing.Fault`: ``times`` (``None``: unlimited),
    ``model``, ``path`` (a substring of the URL path), ``stream``.
    """

    refusal: str | None = None
    refusal_category: str | None = None
    reasoning: str | None = None
    redacted_reasoning: bool = False
    citations: list[dict[str, str]] | None = None
    times: int | None = 1
    model: str | None = None
    path: str | None = None
    stream: bool | None = None

    def __post_init__(self) -> None:
        for name in ("refusal", "refusal_category", "reasoning", "model", "path"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"Script.{name} must be a str or None, got {value!r}")
        if self.citations is not None:
            if not isinstance(self.citations, list) or not all(
                    isinstance(c, Mapping) and isinstance(c.get("url"), str)
                    for c in self.citations):
                raise ValueError("Script.citations must be a list of objects with a 'url'")
            self.citations = [{k: str(v) for k, v in c.items()} for c in self.citations]
        if not isinstance(self.redacted_reasoning, bool):
            raise ValueError("Script.redacted_reasoning must be a bool")
        if self.times is not None and (not isinstance(self.times, int)
                                       or isinstance(self.times, bool) or self.times < 1):
            raise ValueError(f"Script.times must be an integer >= 1 or None, got {self.times!r}")
        if self.stream is not None and not isinstance(self.stream, bool):
            raise ValueError(f"Script.stream must be a bool or None, got {self.stream!r}")

    def matches(self, *, model: str | None, path: str, stream: bool) -> bool:
        """Whether the model / path / stream filters accept the request."""
        return ((self.model is None or self.model == model)
                and (self.path is None or self.path in path)
                and (self.stream is None or self.stream == stream))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Script:
        """A script from a JSON object; unknown keys are a :class:`ValueError`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a script must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown Script field(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ScriptQueue:
    """The pending scripts of one server, applied in order to matching requests."""

    def __init__(self) -> None:
        self._entries: list[list[Any]] = []  # [script, remaining]

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, script: Script) -> None:
        if not isinstance(script, Script):
            raise TypeError(f"expected a Script, got {type(script).__name__}")
        self._entries.append([script, script.times])

    def clear(self) -> int:
        count = len(self._entries)
        self._entries.clear()
        return count

    def pending(self) -> list[tuple[Script, int | None]]:
        return [(script, remaining) for script, remaining in self._entries]

    def select(self, *, model: str | None, path: str, stream: bool) -> Script | None:
        """The first matching script, with one of its applications used up."""
        for index, entry in enumerate(self._entries):
            script: Script = entry[0]
            if not script.matches(model=model, path=path, stream=stream):
                continue
            if entry[1] is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._entries[index]
            return script
        return None


# -- JSON that fills a schema -------------------------------------------------------------------

def fill_schema(schema: Any, rng: random.Random, root: Mapping[str, Any] | None = None,
                depth: int = 0) -> Any:
    """A deterministic value that validates against JSON schema ``schema``: every property
    (required or not) filled, local ``$ref`` / ``$defs`` followed, the first ``anyOf`` /
    ``oneOf`` branch that is not ``null`` taken, ``enum`` / ``const`` honoured, one item per
    array (more when ``minItems`` asks)."""
    root = root if root is not None else (schema if isinstance(schema, Mapping) else {})
    if not isinstance(schema, Mapping) or depth > 12:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part) if isinstance(node, Mapping) else None
        return fill_schema(node, rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[rng.randrange(len(enum))]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options
                           if not (isinstance(o, Mapping) and o.get("type") == "null")),
                          options[0])
            return fill_schema(chosen, rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and "properties" in schema:
        kind = "object"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {str(name): fill_schema(sub, rng, root, depth + 1)
                for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 0))
        return [fill_schema(schema.get("items") or {}, rng, root, depth + 1)
                for _ in range(count)]
    if kind == "string":
        word = VOCABULARY[rng.randrange(len(VOCABULARY))]
        shortest = int(schema.get("minLength") or 0)
        return word if len(word) >= shortest else word * (shortest // len(word) + 1)
    low = schema.get("minimum")
    if not isinstance(low, int | float) or isinstance(low, bool):
        low = None
    if kind == "integer":
        return 42 if low is None else int(low)
    if kind == "number":
        return 1.5 if low is None else float(low)
    if kind == "boolean":
        return True
    return None


# -- enrichment ---------------------------------------------------------------------------------

def _words(rng: random.Random, count: int) -> list[str]:
    return rng.choices(VOCABULARY, k=count)


def _chunks(text: str, size: int = 8) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _echoed(request: ChatRequest) -> bool:
    """Whether the reply is the ``echo:`` text of the last user message (a scripted answer,
    kept as it is)."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text.lstrip().startswith("echo:")
    return False


def enrich(reply: Reply, request: ChatRequest, script: Script | None, seed: int) -> Reply:
    """``reply`` with what ``request`` asked for and ``script`` adds (see the module
    docstring); the usage counts the extra tokens."""
    rng = random.Random(f"{seed}:content:{reply.digest}")
    content = ReplyContent(logprobs=request.logprobs, top_logprobs=request.top_logprobs)
    reply.content = content
    usage = reply.usage
    if script is not None and script.refusal is not None:
        content.refusal = script.refusal
        content.refusal_category = script.refusal_category
        reply.pieces = []
        reply.tool_call = None
        reply.finish_reason = "stop"
        reply.usage = Usage(usage.prompt_tokens, max(1, count_tokens(script.refusal)),
                            usage.cached_tokens)
        return reply
    if request.response_schema is not None and reply.tool_call is None \
            and not _echoed(request):
        value = fill_schema(request.response_schema or {"type": "object", "properties": {}},
                            rng)
        text = json.dumps(value)
        reply.pieces = _chunks(text)
        reply.finish_reason = "stop"
        usage = reply.usage = Usage(usage.prompt_tokens, max(1, count_tokens(text)),
                                    usage.cached_tokens)
    thinking = script.reasoning if script is not None else None
    if thinking is None and request.reasoning:
        thinking = "Let me think about " + " ".join(_words(rng, 6)) + "."
    if thinking is not None:
        if script is not None and script.redacted_reasoning:
            content.redacted = sign("redacted:" + thinking)
        else:
            content.reasoning = thinking
            content.signature = sign(thinking)
        usage = reply.usage = Usage(usage.prompt_tokens,
                                    usage.completion_tokens + count_tokens(thinking),
                                    usage.cached_tokens)
    if script is not None and script.citations and reply.tool_call is None:
        content.citations = [dict(c) for c in script.citations]
        if not reply.pieces:
            reply.pieces = ["According to the sources."]
    for index in range(1, max(1, request.n)):
        alt = random.Random(f"{seed}:choice:{index}:{reply.digest}")
        words = _words(alt, max(1, len(reply.pieces) or 1))
        pieces = [words[0], *(" " + w for w in words[1:])]
        content.choices.append(Reply(pieces, None, "stop",
                                     Usage(0, len(pieces), 0), reply.digest))
        usage = reply.usage = Usage(usage.prompt_tokens, usage.completion_tokens + len(pieces),
                                    usage.cached_tokens)
    return reply
