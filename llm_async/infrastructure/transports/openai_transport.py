"""OpenAI Chat Completions over aiohttp; also any OpenAI-compatible server through ``base_url``
(vLLM, Ollama, llama.cpp's server, a LiteLLM proxy, the embedded mock server)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel

from ... import _json
from ...errors import InvalidRequestError, ProtocolError, error_from_body
from ...types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Citation,
    FinishReason,
    FunctionCall,
    ImagePart,
    ImageURL,
    Message,
    ReasoningPart,
    Refusal,
    TextPart,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
    mark_incomplete,
)
from ..sse import SSEEvent
from .base import HTTPTransport

__all__ = ["OpenAITransport", "openai_usage", "parse_choice", "response_format_payload"]

_FINISH: Mapping[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "end_turn": "stop",
    "eos": "stop",
    "max_tokens": "length",
}

# Models that reject the legacy ``max_tokens`` and need ``max_completion_tokens``.
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def finish_reason(value: Any) -> FinishReason | None:
    if value is None:
        return None
    return _FINISH.get(str(value), "stop")


def openai_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from an OpenAI-shaped ``usage`` object (``None`` when absent)."""
    if not isinstance(data, Mapping):
        return None
    prompt = data.get("prompt_tokens_details") or {}
    completion = data.get("completion_tokens_details") or {}
    return Usage.model_construct(
        input_tokens=int(data.get("prompt_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        cache_read_tokens=int(prompt.get("cached_tokens") or 0),
        cache_write_tokens=int(prompt.get("cache_write_tokens") or 0),
        reasoning_tokens=int(completion.get("reasoning_tokens") or 0),
    )


def response_format_payload(value: Any) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` from a dict or a pydantic model class."""
    if value is None:
        return None
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {
            "type": "json_schema",
            "json_schema": {"name": value.__name__, "schema": value.model_json_schema()},
        }
    return dict(value)


def message_payload(message: Message) -> dict[str, Any]:
    """OpenAI's shape of one of our messages.

    Parts OpenAI cannot take back are left out: reasoning, provider-run tools and provider
    blocks (they belong to the provider that produced them). An assistant's text parts are
    joined into one string, which every OpenAI-compatible server accepts.
    """
    out: dict[str, Any] = {"role": message.role}
    content = message.content
    if content is None or isinstance(content, str):
        out["content"] = content
    elif message.role == "assistant":
        out["content"] = message.text if any(isinstance(p, TextPart) for p in content) else None
    else:
        parts: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                image: dict[str, Any] = {"url": part.image_url.url}
                if part.image_url.detail:
                    image["detail"] = part.image_url.detail
                parts.append({"type": "image_url", "image_url": image})
        out["content"] = parts
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": tc.id, "type": "function",
             "function": {"name": tc.function.name, "arguments": tc.function.arguments}}
            for tc in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


# Fields of a chat completion, a choice and a message that our model holds; any other field
# a server sends is kept in ``extras`` (Azure's content filters, Groq's ``x_groq`` ...).
_RESPONSE_FIELDS = frozenset({"id", "object", "created", "model", "choices", "usage"})
_CHOICE_FIELDS = frozenset({"index", "message", "delta", "finish_reason", "logprobs", "error"})
_MESSAGE_FIELDS = frozenset({"role", "content", "tool_calls", "function_call", "refusal",
                             "annotations", "reasoning_content", "reasoning",
                             "reasoning_details", "images"})


def _extras(obj: Mapping[str, Any], known: frozenset[str], into: dict[str, Any]) -> None:
    for key, value in obj.items():
        if key not in known and value is not None:
            into[key] = value


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _part_text(value: Any) -> str:
    """The text of a part's payload: a string, or a list of text parts (Mistral thinking)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_str(item.get("text")) for item in value
                       if isinstance(item, Mapping) and item.get("type", "text") == "text")
    return ""


def content_parts(content: Any, provider: str) -> tuple[str, list[Any]]:
    """Text and typed parts of a ``content`` that is a list of parts (Mistral's thinking parts,
    images, text): the text joined, and the reasoning/image parts in order."""
    if not isinstance(content, list):
        raise ProtocolError(f"message content is neither text nor a list of parts: "
                            f"{content!r:.80}", provider=provider)
    texts: list[str] = []
    parts: list[Any] = []
    for item in content:
        if isinstance(item, str):
            texts.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ProtocolError(f"malformed content part: {item!r:.80}", provider=provider)
        kind = item.get("type")
        if kind in ("text", "output_text"):
            texts.append(_str(item.get("text")))
        elif kind in ("thinking", "reasoning"):
            parts.append(ReasoningPart.model_construct(
                text=_part_text(item.get("thinking", item.get("text"))),
                signature=item.get("signature") if isinstance(item.get("signature"), str)
                else None))
        elif kind == "image_url":
            url = item.get("image_url")
            url = url.get("url") if isinstance(url, Mapping) else url
            if isinstance(url, str):
                parts.append(ImagePart(image_url=ImageURL(url=url)))
        elif kind == "refusal":
            texts.append("")  # carried by the refusal field
    return "".join(texts), parts


def reasoning_details(details: Any) -> list[ReasoningPart]:
    """OpenRouter's ``reasoning_details`` as reasoning parts (text with its signature,
    summaries, encrypted reasoning)."""
    parts: list[ReasoningPart] = []
    if not isinstance(details, list):
        return parts
    for item in details:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        fmt = item.get("format") if isinstance(item.get("format"), str) else None
        signature = item.get("signature") if isinstance(item.get("signature"), str) else None
        if kind == "reasoning.encrypted":
            parts.append(ReasoningPart.model_construct(
                text="", encrypted=_str(item.get("data")), signature=signature, format=fmt))
        else:
            text = _str(item.get("text")) or _str(item.get("summary"))
            parts.append(ReasoningPart.model_construct(
                text=text, signature=signature, encrypted=None, format=fmt))
    return parts


def citations(annotations: Any) -> list[Citation]:
    """OpenAI ``annotations`` (``url_citation``) as citations."""
    out: list[Citation] = []
    if not isinstance(annotations, list):
        return out
    for item in annotations:
        if not isinstance(item, Mapping):
            continue
        kind = str(item.get("type") or "url_citation")
        body = item.get(kind)
        body = body if isinstance(body, Mapping) else item
        start, end = body.get("start_index"), body.get("end_index")
        out.append(Citation(
            type=kind,
            url=body.get("url") if isinstance(body.get("url"), str) else None,
            title=body.get("title") if isinstance(body.get("title"), str) else None,
            cited_text=body.get("content") if isinstance(body.get("content"), str) else None,
            start_index=start if isinstance(start, int) else None,
            end_index=end if isinstance(end, int) else None,
            extras={k: v for k, v in body.items()
                    if k not in ("url", "title", "start_index", "end_index", "content")},
        ))
    return out


def token_logprobs(logprobs: Any) -> list[TokenLogprob] | None:
    """A choice's ``logprobs`` (the content tokens; the refusal's when there is no content)."""
    if not isinstance(logprobs, Mapping):
        return None
    items = logprobs.get("content")
    if items is None:
        items = logprobs.get("refusal")
    if not isinstance(items, list):
        return None
    out: list[TokenLogprob] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        out.append(TokenLogprob.model_construct(
            token=_str(item.get("token")), logprob=float(item.get("logprob") or 0.0),
            bytes=item.get("bytes") if isinstance(item.get("bytes"), list) else None,
            top_logprobs=[TopLogprob.model_construct(
                token=_str(top.get("token")), logprob=float(top.get("logprob") or 0.0),
                bytes=top.get("bytes") if isinstance(top.get("bytes"), list) else None)
                for top in item.get("top_logprobs") or () if isinstance(top, Mapping)],
        ))
    return out


def _tool_calls(message: Mapping[str, Any], provider: str) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for raw in message.get("tool_calls") or ():
        try:
            fn = raw["function"]
            calls.append(ToolCall.model_construct(
                id=str(raw.get("id") or ""), type="function",
                function=FunctionCall.model_construct(
                    name=str(fn["name"]), arguments=str(fn.get("arguments") or "")),
            ))
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed tool call: {raw!r:.100}", provider=provider) from exc
    legacy = message.get("function_call")
    if isinstance(legacy, Mapping) and not calls:
        # The legacy functions API: one call, without an id of its own.
        calls.append(ToolCall.model_construct(
            id="call_0", type="function",
            function=FunctionCall.model_construct(name=_str(legacy.get("name")),
                                                  arguments=_str(legacy.get("arguments")))))
    return calls


def parse_choice(choice: Mapping[str, Any], provider: str,
                 extras: dict[str, Any] | None = None) -> Choice:
    """One ``choices[i]`` of a chat completion in our model (unknown fields go to ``extras``)."""
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise ProtocolError("response choice has no message", provider=provider)
    content = message.get("content")
    parts: list[Any] = []
    if content is not None and not isinstance(content, str):
        content, parts = content_parts(content, provider)
    reasoning = reasoning_details(message.get("reasoning_details"))
    if not reasoning:
        text = _str(message.get("reasoning_content")) or _str(message.get("reasoning"))
        if text:
            reasoning = [ReasoningPart.model_construct(text=text, signature=None,
                                                       encrypted=None, format=None)]
    cited = citations(message.get("annotations"))
    for image in message.get("images") or ():
        url = image.get("image_url") if isinstance(image, Mapping) else None
        url = url.get("url") if isinstance(url, Mapping) else None
        if isinstance(url, str):
            parts.append(ImagePart(image_url=ImageURL(url=url)))
    if reasoning or cited or parts:
        thinking = [p for p in parts if isinstance(p, ReasoningPart)]
        images = [p for p in parts if isinstance(p, ImagePart)]
        text_part = [TextPart(text=content, citations=cited or None)] if content else []
        parts = [*reasoning, *thinking, *text_part, *images]
    refusal_text = message.get("refusal")
    refusal = (Refusal.model_construct(text=refusal_text, category=None)
               if isinstance(refusal_text, str) and refusal_text else None)
    calls = _tool_calls(message, provider)
    reason = finish_reason(choice.get("finish_reason"))
    if extras is not None:
        _extras(choice, _CHOICE_FIELDS, extras)
        _extras(message, _MESSAGE_FIELDS, extras)
    index = choice.get("index")
    return Choice.model_construct(
        index=index if isinstance(index, int) else 0,
        content=content,
        tool_calls=mark_incomplete(calls, reason),
        finish_reason=reason,
        parts=parts,
        refusal=refusal,
        logprobs=token_logprobs(choice.get("logprobs")),
    )


class OpenAITransport(HTTPTransport):
    """``POST {base_url}/chat/completions`` with a bearer key.

    ``max_tokens_field`` chooses between ``max_tokens`` and ``max_completion_tokens``; by default
    reasoning models (o1/o3/o4/gpt-5) get the latter and everything else the former, which every
    OpenAI-compatible server understands. Every stream asks for ``stream_options.include_usage``.
    """

    provider: ClassVar[str] = "openai"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    env_api_key: ClassVar[str] = "OPENAI_API_KEY"
    env_base_url: ClassVar[str] = "OPENAI_BASE_URL"

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 max_tokens_field: str | None = None, organization: str | None = None,
                 **kwargs: Any) -> None:
        if api_key is None:
            api_key = os.environ.get(self.env_api_key)
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        super().__init__(api_key, base_url, **kwargs)
        self.max_tokens_field = max_tokens_field
        self.organization = organization
        self._url = f"{self.base_url}/chat/completions"

    def url(self, request: ChatRequest) -> str:
        return self._url

    def auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        return headers

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [self.message_payload(m) for m in request.messages],
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            field = self.max_tokens_field or (
                "max_completion_tokens" if request.model.startswith(_REASONING_PREFIXES)
                else "max_tokens"
            )
            body[field] = request.max_tokens
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.presence_penalty is not None:
            body["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            body["frequency_penalty"] = request.frequency_penalty
        if request.tools:
            body["tools"] = [t.model_dump(exclude_none=True) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.n is not None:
            body["n"] = request.n
        if request.logprobs is not None:
            body["logprobs"] = request.logprobs
        if request.top_logprobs is not None:
            if not request.logprobs:
                raise InvalidRequestError("top_logprobs needs logprobs=True",
                                          field="top_logprobs", provider=self.provider)
            body["top_logprobs"] = request.top_logprobs
        fmt = response_format_payload(request.response_format)
        if fmt is not None:
            body["response_format"] = fmt
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra_body:
            body.update(request.extra_body)
        return body

    def message_payload(self, message: Message) -> dict[str, Any]:
        """The wire shape of one message (providers with extra message fields override it)."""
        return message_payload(message)

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        plain = _plain_response(data, request)
        if plain is not None:
            return plain
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        if "error" in data and not data.get("choices"):
            raise self.in_stream_error(data["error"])
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise ProtocolError("response has no choices", provider=self.provider)
        extras: dict[str, Any] = {}
        _extras(data, _RESPONSE_FIELDS, extras)
        parsed = [parse_choice(choice, self.provider, extras if i == 0 else None)
                  for i, choice in enumerate(choices) if isinstance(choice, Mapping)]
        parsed.sort(key=lambda c: c.index)
        first = parsed[0]
        return ChatResponse.model_construct(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or request.model),
            content=first.content,
            tool_calls=first.tool_calls,
            finish_reason=first.finish_reason,
            usage=openai_usage(data.get("usage")) or Usage(),
            parts=first.parts,
            refusal=first.refusal,
            logprobs=first.logprobs,
            other_choices=parsed[1:],
            extras=extras,
            raw=data,
        )

    def in_stream_error(self, error: Any) -> Exception:
        """A typed error from an error object sent with HTTP 200 (in a body or an SSE event),
        classified by its content like the same error with its HTTP status
        (``insufficient_quota`` is a :class:`~llm_async.errors.QuotaExceededError`)."""
        return error_from_body({"error": error}, provider=self.provider)

    def stream_parser(self, request: ChatRequest) -> _OpenAIStreamParser:
        return _OpenAIStreamParser(self)


def _plain_response(data: Any, request: ChatRequest) -> ChatResponse | None:
    """The usual chat completion (one choice of plain text or nothing, no tool calls, refusal,
    annotations or logprobs), parsed with the fewest checks that still prove it usual;
    ``None`` for anything else, which the general parser reads to the same result."""
    if type(data) is not dict:
        return None
    choices = data.get("choices")
    if type(choices) is not list or len(choices) != 1:
        return None
    choice = choices[0]
    if (type(choice) is not dict or not _PLAIN_CHOICE_FIELDS.issuperset(choice)
            or choice.get("index") or choice.get("logprobs") is not None):
        return None
    message = choice.get("message")
    if type(message) is not dict or not _PLAIN_MESSAGE_FIELDS.issuperset(message):
        return None
    content = message.get("content")
    if ((content is not None and type(content) is not str) or message.get("refusal")
            or message.get("annotations") or message.get("tool_calls")):
        return None
    extras: dict[str, Any] = {}
    if not _RESPONSE_FIELDS.issuperset(data):
        _extras(data, _RESPONSE_FIELDS, extras)
    return ChatResponse.model_construct(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or request.model),
        content=content,
        tool_calls=[],
        finish_reason=finish_reason(choice.get("finish_reason")),
        usage=openai_usage(data.get("usage")) or Usage(),
        parts=[],
        refusal=None,
        logprobs=None,
        other_choices=[],
        extras=extras,
        raw=data,
    )


_PLAIN_CHOICE_FIELDS = frozenset({"index", "message", "finish_reason", "logprobs"})
_PLAIN_MESSAGE_FIELDS = frozenset({"role", "content", "refusal", "annotations", "tool_calls"})


class _OpenAIStreamParser:
    """Chat-completion chunks → :class:`ChatChunk` (role-only chunks are dropped).

    Beyond text and tool calls it reads reasoning deltas (``reasoning_content``, ``reasoning``,
    ``reasoning_details``, Mistral's ``thinking`` parts), refusal deltas, ``annotations``, the
    legacy ``function_call``, ``logprobs`` and the choice ``index`` of ``n`` > 1 streams. Fields
    it has no place for are carried in ``extras`` on the next chunk it yields. Once every
    choice has finished the stream is ``complete``: a server that then closes without
    ``[DONE]`` has still sent the whole answer (:meth:`end`).
    """

    __slots__ = ("_details", "_extras", "_fingerprint", "_open", "done", "finished",
                 "transport")

    def __init__(self, transport: OpenAITransport) -> None:
        self.transport = transport
        self.done = False
        self.finished = False
        self._open: set[int] = set()
        self._extras: dict[str, Any] | None = None
        self._details: dict[int, dict[int, list[Any]]] = {}
        self._fingerprint = False

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        data = event.data
        if data == b"[DONE]":
            self.done = True
            return []
        try:
            obj = _json.loads(data)
        except ValueError as exc:
            raise ProtocolError(f"malformed stream event: {data[:80]!r}",
                                provider=self.transport.provider) from exc
        if not isinstance(obj, dict):
            raise ProtocolError("stream event is not a JSON object",
                                provider=self.transport.provider)
        if "error" in obj:
            raise self.transport.in_stream_error(obj["error"])
        return self.chunks(obj)

    def end(self) -> list[ChatChunk] | None:
        """At the end of the body without ``[DONE]``: nothing more to yield when every choice
        had finished (the answer is complete), ``None`` when it was cut."""
        return [] if self.finished and not self._open else None

    def _pending(self, extras: dict[str, Any]) -> None:
        if self._extras is None:
            self._extras = {}
        self._extras.update(extras)

    def chunks(self, obj: dict[str, Any]) -> list[ChatChunk]:
        # Nearly every chunk of a stream is one text delta of choice 0 with the usual fields
        # and nothing pending: built here with as few lookups as the checks allow.
        choices = obj.get("choices")
        if (type(choices) is list and len(choices) == 1 and self._extras is None
                and len(obj) <= 7 and obj.get("usage") is None):
            choice = choices[0]
            if type(choice) is dict and len(choice) <= 4 and choice.get("finish_reason") is None:
                delta = choice.get("delta")
                if type(delta) is dict:
                    text = delta.get("content")
                    if (type(text) is str and text and not choice.get("index")
                            and choice.get("logprobs") is None
                            and (len(delta) == 1 or (len(delta) == 2 and "role" in delta))
                            and _COMMON_CHOICE_FIELDS.issuperset(choice)
                            and _COMMON_CHUNK_FIELDS.issuperset(obj)
                            and (self._fingerprint or obj.get("system_fingerprint") is None)):
                        chunk_id = obj.get("id") or None
                        model = obj.get("model") or None
                        if ((chunk_id is None or type(chunk_id) is str)
                                and (model is None or type(model) is str)):
                            return [ChatChunk.construct_fast(text, [], None, None, chunk_id,
                                                             model)]
        return self._chunks(obj)

    def _chunks(self, obj: dict[str, Any]) -> list[ChatChunk]:
        # Any other chunk: dict checks before the (slow) Mapping ABC check.
        raw_usage = obj.get("usage")
        usage = openai_usage(raw_usage) if raw_usage is not None else None
        choices = obj.get("choices") or ()
        chunk_id = obj.get("id") or None
        model = obj.get("model") or None
        if (not isinstance(choices, (list, tuple))
                or (chunk_id is not None and not isinstance(chunk_id, str))
                or (model is not None and not isinstance(model, str))):
            raise ProtocolError(f"malformed stream chunk: {obj!r:.100}",
                                provider=self.transport.provider)
        if not self._fingerprint and obj.get("system_fingerprint") is not None:
            self._fingerprint = True  # the same on every chunk: kept once
            self._pending({"system_fingerprint": obj["system_fingerprint"]})
        if len(obj) > 7 or not _COMMON_CHUNK_FIELDS.issuperset(obj):
            extras: dict[str, Any] = {}
            _extras(obj, _CHUNK_FIELDS, extras)
            if extras:
                self._pending(extras)
        out: list[ChatChunk] = []
        for choice in choices:
            if type(choice) is dict:
                # The common chunk (choice 0, text or tool-call fragments, nothing else) is
                # read inline; anything more goes through choice_chunk.
                delta = choice.get("delta")
                if (not choice.get("index") and type(delta) is dict and len(delta) <= 2
                        and len(choice) <= 4 and _COMMON_DELTA_FIELDS.issuperset(delta)
                        and _COMMON_CHOICE_FIELDS.issuperset(choice)
                        and choice.get("logprobs") is None):
                    text = delta.get("content") or ""
                    if type(text) is str:
                        raw_calls = delta.get("tool_calls")
                        calls = self.tool_call_deltas(raw_calls) if raw_calls else []
                        reason = choice.get("finish_reason")
                        if reason is not None:
                            reason = finish_reason(reason)
                            self.finished = True
                        if text or calls or reason is not None:
                            chunk = ChatChunk.construct_fast(text, calls, reason, None,
                                                             chunk_id, model)
                            if reason is not None and 0 in self._details:
                                chunk.parts = self.detail_parts(0)
                            out.append(chunk)
                        continue
            elif not isinstance(choice, Mapping):
                continue
            index = choice.get("index", 0)
            if not isinstance(index, int):
                raise ProtocolError(f"malformed choice index: {index!r:.40}",
                                    provider=self.transport.provider)
            general = self.choice_chunk(choice, index, chunk_id, model)
            if general is not None:
                out.append(general)
        if usage is not None:
            out.append(ChatChunk.construct_fast("", [], None, usage, chunk_id, model))
        if out and self._extras is not None:
            out[0].extras = self._extras
            self._extras = None
        return out

    def choice_chunk(self, choice: Mapping[str, Any], index: int, chunk_id: str | None,
                     model: str | None) -> ChatChunk | None:
        delta = choice.get("delta")
        reasoning = refusal = ""
        cited: list[Citation] | None = None
        if delta:
            if not isinstance(delta, dict) and not isinstance(delta, Mapping):
                raise ProtocolError(f"malformed stream delta: {delta!r:.100}",
                                    provider=self.transport.provider)
            text = delta.get("content") or ""
            if not isinstance(text, str):
                text, thinking = content_parts(text, self.transport.provider)
                reasoning = "".join(p.text for p in thinking if isinstance(p, ReasoningPart))
            raw_calls = delta.get("tool_calls")
            calls = self.tool_call_deltas(raw_calls) if raw_calls else []
            if len(delta) > 2 or not _COMMON_DELTA_FIELDS.issuperset(delta):
                reasoning += self.reasoning_delta(delta, index)
                refusal = _str(delta.get("refusal"))
                annotations = delta.get("annotations")
                cited = citations(annotations) if annotations else None
                legacy = delta.get("function_call")
                if isinstance(legacy, Mapping) and not calls:
                    calls = [ToolCallDelta.model_construct(
                        index=0, id="call_0" if legacy.get("name") else None,
                        name=legacy.get("name") if isinstance(legacy.get("name"), str) else None,
                        arguments=_str(legacy.get("arguments")))]
                extras: dict[str, Any] = {}
                _extras(delta, _MESSAGE_FIELDS, extras)
                if extras:
                    self._pending(extras)
        else:
            text = ""
            calls = []
        if len(choice) > 4 or not _COMMON_CHOICE_FIELDS.issuperset(choice):
            extras = {}
            _extras(choice, _CHOICE_FIELDS, extras)
            if extras:
                self._pending(extras)
        raw_logprobs = choice.get("logprobs")
        logprobs = token_logprobs(raw_logprobs) if raw_logprobs else None
        reason = choice.get("finish_reason")
        if reason is not None:
            reason = finish_reason(reason)
            self.finished = True
            self._open.discard(index)
        elif index:
            self._open.add(index)  # choice 0 counts as finished once any finish was seen
        if not (text or calls or reason is not None or reasoning or refusal or cited
                or logprobs):
            return None
        chunk = ChatChunk.construct_fast(text, calls, reason, None, chunk_id, model)
        if index or reasoning or refusal or cited or logprobs:
            chunk.index = index
            chunk.reasoning = reasoning
            chunk.refusal = refusal
            chunk.citations = cited
            chunk.logprobs = logprobs
        if reason is not None and index in self._details:
            chunk.parts = self.detail_parts(index)
        return chunk

    def reasoning_delta(self, delta: Mapping[str, Any], index: int) -> str:
        """Reasoning text of a delta; OpenRouter's ``reasoning_details`` are also gathered (with
        their signatures) into reasoning parts sent on the choice's finish chunk."""
        text = _str(delta.get("reasoning_content")) or _str(delta.get("reasoning"))
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            slots = self._details.setdefault(index, {})
            joined = []
            for position, part in enumerate(reasoning_details(details)):
                raw = details[position]
                key = raw.get("index") if isinstance(raw, Mapping) else None
                key = key if isinstance(key, int) else len(slots)
                slot = slots.get(key)
                if slot is None:
                    slots[key] = [part]
                else:
                    slot.append(part)
                joined.append(part.text)
            if not text:
                text = "".join(joined)
        return text

    def detail_parts(self, index: int) -> list[Any]:
        parts: list[Any] = []
        for _, pieces in sorted(self._details.pop(index).items()):
            first = pieces[0]
            parts.append(ReasoningPart.model_construct(
                text="".join(p.text for p in pieces),
                signature=next((p.signature for p in pieces if p.signature), None),
                encrypted=("".join(p.encrypted for p in pieces if p.encrypted) or None),
                format=first.format))
        return parts

    def tool_call_deltas(self, raw_calls: Any) -> list[ToolCallDelta]:
        """Streamed tool-call fragments; a malformed one is a :class:`ProtocolError`."""
        calls: list[ToolCallDelta] = []
        try:
            for raw in raw_calls:
                fn = raw.get("function") or {}
                index = int(raw.get("index") or 0)
                call_id, name = raw.get("id"), fn.get("name")
                arguments = fn.get("arguments") or ""
                if not isinstance(arguments, str) or not _optional_str(call_id, name):
                    raise TypeError("wrong field types")
                calls.append(ToolCallDelta.model_construct(
                    index=index, id=call_id, name=name, arguments=arguments))
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"malformed streamed tool call: {raw_calls!r:.100}",
                                provider=self.transport.provider) from exc
        return calls


# The fields almost every chunk has (checked first, so that the common chunk skips the
# search for extras).
_COMMON_CHUNK_FIELDS = frozenset({"id", "object", "created", "model", "choices", "usage",
                                  "system_fingerprint"})
_CHUNK_FIELDS = _RESPONSE_FIELDS | {"system_fingerprint"}
_COMMON_CHOICE_FIELDS = frozenset({"index", "delta", "finish_reason", "logprobs"})
_COMMON_DELTA_FIELDS = frozenset({"role", "content", "tool_calls"})


def _optional_str(*values: Any) -> bool:
    """Whether every value is a string or None."""
    return all(v is None or isinstance(v, str) for v in values)
