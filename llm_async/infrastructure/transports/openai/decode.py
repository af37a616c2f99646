"""A chat completion as our :class:`~llm_async.types.ChatResponse`: finish reasons, usage,
content parts (Mistral's thinking parts, images), OpenRouter's ``reasoning_details``,
``url_citation`` annotations, logprobs, tool calls (and the legacy ``function_call``), one
``choices[i]`` as a :class:`~llm_async.types.Choice`, and the short path for the usual plain-text
completion. Fields our model has no place for are kept in ``extras``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....errors import ProtocolError
from ....types import (
    ChatRequest,
    ChatResponse,
    Choice,
    Citation,
    FinishReason,
    FunctionCall,
    ImagePart,
    ImageURL,
    ReasoningPart,
    Refusal,
    TextPart,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    Usage,
    mark_incomplete,
)

__all__ = [
    "citations",
    "content_parts",
    "finish_reason",
    "openai_usage",
    "parse_choice",
    "reasoning_details",
    "token_logprobs",
]

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
