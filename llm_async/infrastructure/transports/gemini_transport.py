"""Google Gemini's native API over aiohttp: ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` with the ``x-goog-api-key`` header.

Request mapping (our :class:`~llm_async.types.ChatRequest` → Gemini):

* ``system`` and ``developer`` messages → ``systemInstruction`` (their texts as parts);
* ``user`` → a ``user`` content, ``assistant`` → a ``model`` content; consecutive messages of one
  role share a content. Images: ``data:`` URLs → ``inlineData``, other URLs → ``fileData`` (the
  MIME type guessed from the name);
* an assistant's ``tool_calls`` → ``functionCall`` parts; a ``tool`` message → a
  ``functionResponse`` part in a ``user`` content, named after the call it answers (a JSON object
  result goes as is, anything else as ``{"result": text}``);
* ``tools`` → one ``functionDeclarations`` tool (``parametersJsonSchema``); ``tool_choice``
  ``auto``/``none``/``required``/a named function → ``functionCallingConfig`` mode
  ``AUTO``/``NONE``/``ANY``/``ANY`` with ``allowedFunctionNames``;
* ``temperature``, ``top_p``, ``max_tokens``, ``stop``, ``seed`` and the penalties →
  ``generationConfig``; ``response_format`` → ``responseMimeType: application/json`` and
  ``responseJsonSchema``;
* ``extra_body`` is merged last, one level deep for ``generationConfig`` and ``toolConfig``
  (``{"generationConfig": {"thinkingConfig": {"includeThoughts": true}}}``, ``safetySettings``).

Response mapping: text parts → ``content``; thought parts (``"thought": true``) → the reply's
reasoning (``response.reasoning``, :class:`~llm_async.types.ReasoningPart` in ``parts``, and
``chunk.reasoning`` in streams), never its text; a ``thoughtSignature`` is kept on a reasoning
part and sent back on the part it came with when the reply returns in the next turn;
``functionCall`` parts → ``tool_calls`` (Gemini's id when it sends one, else a fresh one);
``finishReason`` → our finish reasons, every safety reason (:data:`SAFETY_FINISH_REASONS`) →
``content_filter`` with a :class:`~llm_async.types.Refusal` whose ``category`` is Gemini's
reason, and a blocked prompt (``promptFeedback.blockReason``) → an empty reply with
``content_filter`` and the block reason as the refusal's category; ``safetyRatings``,
``promptFeedback``, ``citationMetadata`` and ``groundingMetadata`` are kept in ``extras``;
usage with cached (``cachedContentTokenCount``) and thinking (``thoughtsTokenCount``) tokens.
An error body (``{"error": {"code", "message", "status", "details"}}``, also as a stream
event) is a typed error whose ``error_type`` is Gemini's ``status`` and ``code`` the reason of
its ``ErrorInfo`` detail; a ``RetryInfo`` detail's delay becomes ``retry_after``.
"""

from __future__ import annotations

import mimetypes
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from ... import _json
from ...errors import (
    APIStatusError,
    AuthenticationError,
    InvalidRequestError,
    LLMError,
    ProtocolError,
    QuotaExceededError,
    error_from_response,
)
from ...structured import output_schema
from ...types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    FinishReason,
    FunctionCall,
    ImagePart,
    Message,
    ReasoningPart,
    Refusal,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    mark_incomplete,
)
from ..sse import SSEEvent
from .base import HTTPTransport

__all__ = [
    "SAFETY_FINISH_REASONS",
    "GeminiTransport",
    "finish_reason",
    "gemini_usage",
]

#: Gemini finish reasons that mean a safety or policy filter stopped the answer.
SAFETY_FINISH_REASONS = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
})

_FINISH: Mapping[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **{reason: "content_filter" for reason in SAFETY_FINISH_REASONS},
}

#: Gemini's ``status`` → the error status that stands for it (in-stream errors carry no HTTP
#: status of their own when their ``code`` is missing).
_STATUS_CODES: Mapping[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$",
                       re.DOTALL)
_DURATION = re.compile(r"^(?P<seconds>\d+(?:\.\d+)?)s$")
_RPC = "type.googleapis.com/google.rpc."


def finish_reason(value: Any, *, has_tool_calls: bool = False) -> FinishReason | None:
    """Our finish reason for a Gemini ``finishReason`` (a call to a function is ``tool_calls``
    whatever Gemini says, since it reports ``STOP`` for those)."""
    if value is None:
        return None
    reason = _FINISH.get(str(value), "stop")
    if has_tool_calls and reason == "stop":
        return "tool_calls"
    return reason


def gemini_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from Gemini's ``usageMetadata`` (``None`` when absent).

    Gemini's prompt count already includes cached tokens; its candidate count leaves out the
    thinking tokens, which ours counts as output (and as reasoning).
    """
    if not isinstance(data, Mapping):
        return None
    thoughts = int(data.get("thoughtsTokenCount") or 0)
    return Usage.model_construct(
        input_tokens=int(data.get("promptTokenCount") or 0)
        + int(data.get("toolUsePromptTokenCount") or 0),
        output_tokens=int(data.get("candidatesTokenCount") or 0) + thoughts,
        cache_read_tokens=int(data.get("cachedContentTokenCount") or 0),
        cache_write_tokens=0,
        reasoning_tokens=thoughts,
    )


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _image(part: ImagePart, where: str) -> dict[str, Any]:
    url = part.image_url.url
    match = _DATA_URL.match(url)
    if match:
        return {"inlineData": {"mimeType": match["media"], "data": match["data"]}}
    mime, _ = mimetypes.guess_type(url.split("?", 1)[0])
    if mime is None:
        raise InvalidRequestError(
            "Gemini needs the MIME type of an image URL; use a data: URL or a file name with "
            "an extension", field=where, provider="gemini")
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _parts(content: Any, where: str) -> tuple[list[dict[str, Any]], str | None]:
    """Gemini parts of a message's content, and the thought signature still waiting for the
    part it belongs to (a function call, which travels apart from the content)."""
    if content is None:
        return [], None
    if isinstance(content, str):
        return ([{"text": content}] if content else []), None
    parts: list[dict[str, Any]] = []
    pending: str | None = None
    for index, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                out: dict[str, Any] = {"text": part.text}
                if pending:
                    out["thoughtSignature"], pending = pending, None
                parts.append(out)
        elif isinstance(part, ImagePart):
            parts.append(_image(part, f"{where}[{index}]"))
        elif isinstance(part, ReasoningPart):
            if part.text:
                thought: dict[str, Any] = {"text": part.text, "thought": True}
                if part.signature:
                    thought["thoughtSignature"] = part.signature
                parts.append(thought)
            elif part.signature:
                pending = part.signature  # a signature that rode on the next part
    return parts, pending


def _refusal(reason: Any) -> Refusal | None:
    """The refusal of a safety stop or a blocked prompt (its category: Gemini's reason)."""
    if reason is None or (reason not in SAFETY_FINISH_REASONS and reason not in _BLOCKS):
        return None
    return Refusal.model_construct(text="", category=str(reason))


_BLOCKS = frozenset({"SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT", "IMAGE_SAFETY",
                     "BLOCK_REASON_UNSPECIFIED"})
_CANDIDATE_EXTRAS = ("safetyRatings", "citationMetadata", "groundingMetadata", "finishMessage")


class _Parts:
    """The ordered content of an answer as it arrives: thoughts and text merged run by run,
    thought signatures kept as signature-only reasoning parts where they came."""

    __slots__ = ("items", "reasoning")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.reasoning = False

    def add(self, part: Mapping[str, Any]) -> tuple[str, str]:
        """Record one part; returns its ``(text, thought)`` for a stream's deltas."""
        signature = part.get("thoughtSignature")
        text = part.get("text")
        text = text if isinstance(text, str) else ""
        is_thought = part.get("thought") is True
        last = self.items[-1] if self.items else None
        if is_thought:
            self.reasoning = True
            if isinstance(last, ReasoningPart) and last.text and not last.signature:
                last.text += text
                if isinstance(signature, str):
                    last.signature = signature
            else:
                self.items.append(ReasoningPart.model_construct(
                    text=text, signature=signature if isinstance(signature, str) else None,
                    encrypted=None, format=None))
            return "", text
        if isinstance(signature, str) and signature:
            self.reasoning = True
            self.items.append(ReasoningPart.model_construct(
                text="", signature=signature, encrypted=None, format=None))
            last = None
        if text and "functionCall" not in part:
            if isinstance(last, TextPart):
                last.text += text
            else:
                self.items.append(TextPart(text=text))
        return text, ""

    def result(self) -> list[Any]:
        """The parts worth keeping: all of them when the answer had reasoning, else none."""
        return self.items if self.reasoning else []


def _extras(data: Mapping[str, Any], candidate: Mapping[str, Any] | None) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if data.get("promptFeedback"):
        extras["promptFeedback"] = data["promptFeedback"]
    if candidate is not None:
        if candidate.get("finishReason"):
            extras["finishReason"] = candidate["finishReason"]
        for key in _CANDIDATE_EXTRAS:
            if candidate.get(key):
                extras[key] = candidate[key]
    return extras


def _merge(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        current = body.get(key)
        if key in ("generationConfig", "toolConfig") and isinstance(current, dict) \
                and isinstance(value, Mapping):
            current.update(value)
        else:
            body[key] = value


class GeminiTransport(HTTPTransport):
    """``POST {base_url}/models/{model}:generateContent`` (streams:
    ``:streamGenerateContent?alt=sse``) with ``x-goog-api-key``.

    ``api_key`` defaults to ``GEMINI_API_KEY`` (then ``GOOGLE_API_KEY``) and ``base_url`` to
    ``GEMINI_BASE_URL``, then ``https://generativelanguage.googleapis.com/v1beta``. An
    ``aiohttp.ClientSession`` given first (or as ``session=``) is used for every call.
    """

    provider: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"
    env_api_key: ClassVar[str] = "GEMINI_API_KEY"
    env_base_url: ClassVar[str] = "GEMINI_BASE_URL"
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "x-goog-request-id")

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, **kwargs: Any) -> None:
        if isinstance(api_key, aiohttp.ClientSession):  # GeminiTransport(session)
            if "session" in kwargs:
                raise TypeError("GeminiTransport() got two aiohttp sessions")
            api_key, kwargs["session"] = None, api_key
        if api_key is None:
            api_key = os.environ.get(self.env_api_key) or os.environ.get("GOOGLE_API_KEY")
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        super().__init__(api_key, base_url, **kwargs)

    # -- HTTP ---------------------------------------------------------------------------------

    def _model_url(self, request: ChatRequest) -> str:
        return f"{self.base_url}/models/{quote(request.model.removeprefix('models/'), safe='')}"

    def url(self, request: ChatRequest) -> str:
        return f"{self._model_url(request)}:generateContent"

    def stream_url(self, request: ChatRequest) -> str:
        return f"{self._model_url(request)}:streamGenerateContent?alt=sse"

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    # -- request ------------------------------------------------------------------------------

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The ``GenerateContentRequest`` body for ``request`` (raises
        :class:`~llm_async.errors.InvalidRequestError` for input Gemini cannot take)."""
        system, contents = self._contents(request)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        tools = [
            {"name": t.function.name,
             **({"description": t.function.description} if t.function.description else {}),
             "parametersJsonSchema": t.function.parameters}
            for t in request.tools or ()
        ]
        if tools:
            body["tools"] = [{"functionDeclarations": tools}]
        calling = self._tool_choice(request.tool_choice, bool(tools))
        if calling is not None:
            body["toolConfig"] = {"functionCallingConfig": calling}
        config: dict[str, Any] = {}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if request.seed is not None:
            config["seed"] = request.seed
        if request.presence_penalty is not None:
            config["presencePenalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            config["frequencyPenalty"] = request.frequency_penalty
        spec = output_schema(request.response_format)
        if spec is not None:
            config["responseMimeType"] = "application/json"
            if spec.schema is not None:
                config["responseJsonSchema"] = spec.schema
        if config:
            body["generationConfig"] = config
        if request.extra_body:
            _merge(body, request.extra_body)
        return body

    def _contents(self, request: ChatRequest) -> tuple[list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        names: dict[str, str] = {}  # tool call id -> function name
        for index, message in enumerate(request.messages):
            where = f"messages[{index}]"
            if message.role in ("system", "developer"):
                if isinstance(message.content, list) and any(
                        isinstance(p, ImagePart) for p in message.content):
                    raise InvalidRequestError("Gemini takes no images in the system instruction",
                                              field=f"{where}.content", provider=self.provider)
                if message.text:
                    system.append({"text": message.text})
                continue
            role, parts = self._message_parts(message, where, names)
            if not parts:
                raise InvalidRequestError(
                    f"Gemini needs non-empty content in {message.role} messages",
                    field=f"{where}.content", provider=self.provider)
            if contents and contents[-1]["role"] == role:
                contents[-1]["parts"].extend(parts)
            else:
                contents.append({"role": role, "parts": parts})
        if not contents:
            raise InvalidRequestError("Gemini needs at least one user or assistant message",
                                      field="messages", provider=self.provider)
        return system, contents

    def _message_parts(self, message: Message, where: str,
                       names: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
        if message.role == "tool":
            call_id = message.tool_call_id or ""
            name = names.get(call_id)
            if name is None:
                raise InvalidRequestError(
                    f"tool result {call_id!r} answers no earlier tool call; Gemini needs the "
                    "function name", field=f"{where}.tool_call_id", provider=self.provider)
            text = message.text
            try:
                value = _json.loads(text) if text else None
            except ValueError:
                value = None
            result = value if isinstance(value, dict) else {"result": text}
            return "user", [{"functionResponse": {"name": name, "response": result}}]
        parts, pending = _parts(message.content, f"{where}.content")
        if message.role == "user":
            return "user", parts
        for j, call in enumerate(message.tool_calls or ()):
            try:
                arguments = _json.loads(call.function.arguments or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                raise InvalidRequestError(
                    "tool call arguments must be a JSON object for Gemini",
                    field=f"{where}.tool_calls[{j}].function.arguments", provider=self.provider)
            names[call.id] = call.function.name
            part: dict[str, Any] = {"functionCall": {"name": call.function.name,
                                                     "args": arguments}}
            if pending:
                part["thoughtSignature"], pending = pending, None
            parts.append(part)
        return "model", parts

    def _tool_choice(self, choice: Any, has_tools: bool) -> dict[str, Any] | None:
        if choice is None:
            return None
        if choice in ("auto", "none"):
            return {"mode": choice.upper()} if has_tools else None
        if not has_tools:
            raise InvalidRequestError("tool_choice needs tools", field="tool_choice",
                                      provider=self.provider)
        if choice == "required":
            return {"mode": "ANY"}
        if isinstance(choice, Mapping) and choice.get("type") == "function":
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, Mapping) else None
            if isinstance(name, str) and name:
                return {"mode": "ANY", "allowedFunctionNames": [name]}
        raise InvalidRequestError(f"unsupported tool_choice {choice!r}", field="tool_choice",
                                  provider=self.provider)

    # -- response -----------------------------------------------------------------------------

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        if "error" in data and not data.get("candidates"):
            raise self.error_event(data)
        candidates = data.get("candidates") or []
        if not isinstance(candidates, list):
            raise ProtocolError("candidates is not a list", provider=self.provider)
        texts: list[str] = []
        content = _Parts()
        calls: list[ToolCall] = []
        reason: FinishReason | None
        candidate: Mapping[str, Any] | None = None
        feedback = data.get("promptFeedback")
        if not candidates:
            block = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
            if not block:
                raise ProtocolError("response has no candidates", provider=self.provider)
            reason, raw_reason = "content_filter", block
        else:
            candidate = candidates[0]
            if not isinstance(candidate, Mapping):
                raise ProtocolError("candidate is not an object", provider=self.provider)
            for part in _candidate_parts(candidate, self.provider):
                text, _ = content.add(part)
                if "functionCall" in part:
                    calls.append(_tool_call(part["functionCall"], self.provider))
                elif text:
                    texts.append(text)
            raw_reason = candidate.get("finishReason") or "STOP"
            reason = finish_reason(raw_reason, has_tool_calls=bool(calls))
        joined = "".join(texts)
        return ChatResponse.model_construct(
            id=str(data.get("responseId") or ""),
            model=str(data.get("modelVersion") or request.model),
            content=joined if (joined or not calls) else None,
            tool_calls=mark_incomplete(calls, reason),
            finish_reason=reason,
            usage=gemini_usage(data.get("usageMetadata")) or Usage(),
            parts=content.result(),
            refusal=_refusal(raw_reason) if reason == "content_filter" else None,
            extras=_extras(data, candidate),
            raw=data,
        )

    def map_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """Gemini's error body, typed: ``status`` as ``error_type``, the ``ErrorInfo`` reason as
        ``code``; an invalid key (``API_KEY_INVALID``, sent with 400) is an
        :class:`~llm_async.errors.AuthenticationError`, a per-day quota a
        :class:`~llm_async.errors.QuotaExceededError`."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return super().map_error(status, body, headers)
        gstatus = error.get("status")
        reason: str | None = None
        retry_after: float | None = None
        daily = False
        for detail in error.get("details") or ():
            if not isinstance(detail, Mapping):
                continue
            kind = str(detail.get("@type") or "")
            if kind == _RPC + "ErrorInfo" and detail.get("reason"):
                reason = str(detail["reason"])
            elif kind == _RPC + "RetryInfo":
                match = _DURATION.match(str(detail.get("retryDelay") or ""))
                if match:
                    retry_after = float(match["seconds"])
            elif kind == _RPC + "QuotaFailure":
                for violation in detail.get("violations") or ():
                    quota = str(violation.get("quotaId") or "") \
                        if isinstance(violation, Mapping) else ""
                    daily = daily or "PerDay" in quota
        normalized = {"error": {"message": error.get("message") or f"HTTP {status}",
                                "type": gstatus, "code": reason}}
        err = error_from_response(status, normalized, headers=headers, provider=self.provider,
                                  request_id=self._request_id(headers))
        cls: type[APIStatusError] | None = None
        if reason == "API_KEY_INVALID":
            cls = AuthenticationError
        elif status == 429 and daily:
            cls = QuotaExceededError
        if cls is not None:
            err = cls(err.message, provider=self.provider, status=status,
                      request_id=err.request_id, error_type=gstatus, code=reason)
        err.body = body
        if retry_after is not None and err.retry_after is None:
            err.retry_after = retry_after
        return err

    def error_event(self, data: Mapping[str, Any]) -> LLMError:
        """The typed error of an error object sent with HTTP 200 (in a body or a stream
        event): its ``code``, else its ``status``, gives the HTTP status it stands for."""
        error = data.get("error")
        code = error.get("code") if isinstance(error, Mapping) else None
        if not (isinstance(code, int) and 400 <= code < 600):
            gstatus = error.get("status") if isinstance(error, Mapping) else None
            code = _STATUS_CODES.get(str(gstatus), 500)
        return self.map_error(code, dict(data), {})

    def stream_parser(self, request: ChatRequest) -> _GeminiStreamParser:
        return _GeminiStreamParser(self)


def _candidate_parts(candidate: Mapping[str, Any], provider: str) -> list[Mapping[str, Any]]:
    content = candidate.get("content")
    if content is None:
        return []
    if not isinstance(content, Mapping):
        raise ProtocolError("candidate content is not an object", provider=provider)
    parts = content.get("parts") or []
    if not isinstance(parts, list) or not all(isinstance(p, Mapping) for p in parts):
        raise ProtocolError("candidate parts are not a list of objects", provider=provider)
    return parts


def _tool_call(raw: Any, provider: str) -> ToolCall:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
        raise ProtocolError(f"malformed functionCall: {raw!r:.100}", provider=provider)
    args = raw.get("args")
    call_id = raw.get("id")
    return ToolCall.model_construct(
        id=call_id if isinstance(call_id, str) and call_id else _new_call_id(),
        type="function",
        function=FunctionCall.model_construct(
            name=raw["name"], arguments=_json.dumps(args if args is not None else {}).decode()))


class _GeminiStreamParser:
    """``streamGenerateContent`` SSE events → :class:`ChatChunk`.

    Every event is a partial ``GenerateContentResponse``: its text parts become text chunks,
    its thought parts reasoning chunks, each ``functionCall`` one tool-call fragment with its
    whole arguments, and the event that carries the ``finishReason`` the final chunk with the
    usage (and, when there was reasoning, the ordered parts with their signatures).
    """

    __slots__ = ("_calls", "_parts", "done", "id", "model", "transport")

    def __init__(self, transport: GeminiTransport) -> None:
        self.transport = transport
        self.done = False
        self.id: str | None = None
        self.model: str | None = None
        self._calls = 0
        self._parts = _Parts()

    def _chunk(self, **fields: Any) -> ChatChunk:
        chunk = ChatChunk.construct_fast("", [], None, None, self.id, self.model)
        for name, value in fields.items():
            setattr(chunk, name, value)
        return chunk

    def end(self) -> list[ChatChunk] | None:
        """A body that ends before a finish reason was cut: ``None``."""
        return None

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        provider = self.transport.provider
        try:
            obj = _json.loads(event.data)
        except ValueError as exc:
            raise ProtocolError(f"malformed stream event: {event.data[:80]!r}",
                                provider=provider) from exc
        if not isinstance(obj, dict):
            raise ProtocolError("stream event is not a JSON object", provider=provider)
        if "error" in obj:
            raise self.transport.error_event(obj)
        response_id = obj.get("responseId")
        model = obj.get("modelVersion")
        self.id = response_id if isinstance(response_id, str) else self.id
        self.model = model if isinstance(model, str) else self.model
        candidates = obj.get("candidates") or []
        if not isinstance(candidates, list):
            raise ProtocolError("candidates is not a list", provider=provider)
        out: list[ChatChunk] = []
        raw_reason: Any = None
        candidate: Mapping[str, Any] | None = None
        if candidates:
            candidate = candidates[0]
            if not isinstance(candidate, Mapping):
                raise ProtocolError("candidate is not an object", provider=provider)
            for part in _candidate_parts(candidate, provider):
                text, thought = self._parts.add(part)
                if "functionCall" in part:
                    call = _tool_call(part["functionCall"], provider)
                    out.append(self._chunk(tool_calls=[ToolCallDelta.model_construct(
                        index=self._calls, id=call.id, name=call.function.name,
                        arguments=call.function.arguments)]))
                    self._calls += 1
                elif text:
                    out.append(self._chunk(delta=text))
                elif thought:
                    out.append(self._chunk(reasoning=thought))
            raw_reason = candidate.get("finishReason")
        else:
            feedback = obj.get("promptFeedback")
            if isinstance(feedback, Mapping) and feedback.get("blockReason"):
                raw_reason = feedback["blockReason"]
        if raw_reason is not None:
            self.done = True
            reason = "content_filter" if not candidates else finish_reason(
                raw_reason, has_tool_calls=self._calls > 0)
            final = self._chunk(finish_reason=reason,
                                usage=gemini_usage(obj.get("usageMetadata")) or Usage())
            final.parts = self._parts.result() or None
            final.refusal_details = _refusal(raw_reason) if reason == "content_filter" else None
            final.extras = _extras(obj, candidate) or None
            out.append(final)
        return out
