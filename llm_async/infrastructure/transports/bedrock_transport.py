"""AWS Bedrock's Converse API over aiohttp: ``POST /model/{modelId}/converse`` and
``/converse-stream``.

* Credentials: requests are signed with SigV4 (service ``bedrock``) by botocore's signer, with
  credentials from the standard AWS chain (environment, shared config and credentials files,
  SSO, container and instance roles) or given to the constructor; a Bedrock API key
  (``AWS_BEARER_TOKEN_BEDROCK``) is sent as a bearer token instead. botocore comes with the
  ``bedrock`` extra; the chain is resolved once, off the event loop, and refreshed credentials
  are re-read when they expire.
* Streams are AWS event streams (``application/vnd.amazon.eventstream``), decoded by botocore's
  ``EventStreamBuffer`` (which checks each message's CRCs).
* Request mapping: ``system``/``developer`` messages → ``system`` blocks; consecutive messages of
  one role share a message (Bedrock requires alternating roles); images → ``image`` blocks from
  ``data:`` URLs; an assistant's ``tool_calls`` → ``toolUse`` blocks, a ``tool`` message → a
  ``toolResult`` block in a user message (a JSON object result as ``json``, else ``text``);
  ``max_tokens``, ``temperature``, ``top_p`` and ``stop`` → ``inferenceConfig``; ``tools`` →
  ``toolConfig`` (``tool_choice`` ``auto``/``required``/a named function →
  ``auto``/``any``/``tool``; Bedrock has no ``none``); ``response_format`` → a forced tool whose
  input schema is the requested schema, its input returned as the reply's text.
  ``extra_body`` is merged last (``additionalModelRequestFields``, ``guardrailConfig``...).
* Response mapping: text blocks → ``content``, ``toolUse`` → ``tool_calls``,
  ``reasoningContent`` → :class:`~llm_async.types.ReasoningPart` (text and signature, or the
  encrypted ``redactedContent``; sent back as such in the next turn), ``stopReason`` → our finish
  reasons (``guardrail_intervened`` and ``content_filtered`` → ``content_filter``, with a
  :class:`~llm_async.types.Refusal` naming the reason), ``trace`` and ``performanceConfig``
  kept in ``extras``, usage with cache reads and writes (Bedrock's ``inputTokens`` leaves them
  out; ours counts every prompt token).
* Errors: the ``x-amzn-ErrorType`` of an error answer, or the exception of an event stream, picks
  the class: ``ThrottlingException`` → :class:`~llm_async.errors.RateLimitError`,
  ``ServiceUnavailableException`` → :class:`~llm_async.errors.OverloadedError`,
  ``ModelTimeoutException`` → :class:`~llm_async.errors.RequestTimeoutError`,
  ``InternalServerException``/``ModelStreamErrorException``/``ModelErrorException`` →
  :class:`~llm_async.errors.ServerError` (all retryable); ``ServiceQuotaExceededException`` →
  :class:`~llm_async.errors.QuotaExceededError`, signature and key errors →
  :class:`~llm_async.errors.AuthenticationError`, ``AccessDeniedException`` →
  :class:`~llm_async.errors.PermissionDeniedError` (not retryable).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from ... import _json
from ...errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ResponseTooLargeError,
    ServerError,
    error_from_response,
    register_secret,
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
    "EXCEPTION_ERRORS",
    "BedrockTransport",
    "EventStreamDecoder",
    "bedrock_usage",
    "stop_reason",
]

_STOP: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

#: Bedrock exception name → (error class, the HTTP status it comes with).
EXCEPTION_ERRORS: Mapping[str, tuple[type[APIStatusError], int]] = {
    "ThrottlingException": (RateLimitError, 429),
    "ServiceUnavailableException": (OverloadedError, 503),
    "ModelNotReadyException": (OverloadedError, 429),
    "ModelTimeoutException": (RequestTimeoutError, 408),
    "InternalServerException": (ServerError, 500),
    "ModelStreamErrorException": (ServerError, 424),
    "ModelErrorException": (ServerError, 424),
    "ValidationException": (BadRequestError, 400),
    "ConflictException": (ConflictError, 409),
    "ResourceNotFoundException": (NotFoundError, 404),
    "AccessDeniedException": (PermissionDeniedError, 403),
    "UnrecognizedClientException": (AuthenticationError, 403),
    "InvalidSignatureException": (AuthenticationError, 403),
    "IncompleteSignatureException": (AuthenticationError, 403),
    "ExpiredTokenException": (AuthenticationError, 403),
    "ServiceQuotaExceededException": (QuotaExceededError, 400),
}

_TOO_LONG = ("too long", "too many input tokens", "context window")
_DATA_URL = re.compile(r"^data:image/(?P<format>[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$",
                       re.DOTALL)
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def stop_reason(value: Any) -> FinishReason | None:
    """Our finish reason for a Converse ``stopReason`` (unknown values count as ``stop``)."""
    if value is None:
        return None
    return _STOP.get(str(value), "stop")


def bedrock_usage(data: Any) -> Usage | None:
    """Our :class:`Usage` from a Converse ``usage`` object (``None`` when absent)."""
    if not isinstance(data, Mapping):
        return None
    read = int(data.get("cacheReadInputTokens") or 0)
    write = int(data.get("cacheWriteInputTokens") or 0)
    return Usage.model_construct(
        input_tokens=int(data.get("inputTokens") or 0) + read + write,
        output_tokens=int(data.get("outputTokens") or 0),
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=0,
    )


def _exception_name(value: str | None) -> str | None:
    """``ThrottlingException`` from ``ThrottlingException:http://internal.amazon.com/...``,
    ``aws.protocols#ThrottlingException`` or ``throttlingException``."""
    if not value:
        return None
    name = value.split(":", 1)[0].rsplit("#", 1)[-1]
    return name[:1].upper() + name[1:] or None  # event streams spell them throttlingException


class EventStreamDecoder:
    """AWS event-stream bytes → :class:`SSEEvent` tuples, via botocore's ``EventStreamBuffer``.

    An event message becomes ``SSEEvent(<:event-type>, payload)``, an exception message
    ``SSEEvent("exception:<:exception-type>", payload)`` and an error message
    ``SSEEvent("error:<:error-code>", <:error-message>)``. A message that fails its checksum or
    framing raises :class:`~llm_async.errors.ProtocolError`.
    """

    __slots__ = ("_buffer", "_max", "_parser_error")

    def __init__(self, max_event_bytes: int) -> None:
        try:
            from botocore.eventstream import EventStreamBuffer, ParserError
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "Bedrock streams need botocore: pip install 'llm-async[bedrock]'",
                variable="botocore") from exc
        self._buffer = EventStreamBuffer()
        self._parser_error = ParserError
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer.add_data(chunk)
        events: list[SSEEvent] = []
        try:
            for message in self._buffer:
                headers: Any = message.headers  # a dict (typed otherwise in botocore-stubs)
                events.append(self._event(headers, message.payload))
        except self._parser_error as exc:
            raise ProtocolError(f"malformed event-stream message: {exc}",
                                provider="bedrock") from exc
        return events

    def end(self) -> list[SSEEvent]:
        return []

    def _event(self, headers: Mapping[str, Any], payload: bytes) -> SSEEvent:
        if len(payload) > self._max:
            raise ResponseTooLargeError(
                f"an event of {len(payload)} bytes exceeded the {self._max}-byte cap",
                provider="bedrock")
        kind = headers.get(":message-type")
        if kind == "exception":
            return SSEEvent(f"exception:{headers.get(':exception-type')}", payload)
        if kind == "error":
            message = str(headers.get(":error-message") or "").encode()
            return SSEEvent(f"error:{headers.get(':error-code')}", message)
        return SSEEvent(str(headers.get(":event-type") or ""), payload)


class BedrockTransport(HTTPTransport):
    """The Converse API of Bedrock Runtime in one region.

    ``region`` defaults to ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then the region of the AWS
    configuration; ``base_url`` to ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, then
    ``https://bedrock-runtime.{region}.amazonaws.com``. Credentials: ``api_key`` (default
    ``AWS_BEARER_TOKEN_BEDROCK``) for a Bedrock API key, else SigV4 with ``credentials`` (a
    botocore credentials object), ``aws_access_key_id``/``aws_secret_access_key``/
    ``aws_session_token``, or the standard chain of ``profile`` (default: the chain's default).
    An ``aiohttp.ClientSession`` given first (or as ``session=``) is used for every call.
    """

    provider: ClassVar[str] = "bedrock"
    default_base_url: ClassVar[str] = ""
    env_api_key: ClassVar[str] = "AWS_BEARER_TOKEN_BEDROCK"
    env_base_url: ClassVar[str] = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-amzn-requestid", "x-amz-request-id")
    service: ClassVar[str] = "bedrock"

    def __init__(self, api_key: str | aiohttp.ClientSession | None = None,
                 base_url: str | None = None, *,
                 region: str | None = None, profile: str | None = None,
                 aws_access_key_id: str | None = None, aws_secret_access_key: str | None = None,
                 aws_session_token: str | None = None, credentials: Any = None,
                 **kwargs: Any) -> None:
        if isinstance(api_key, aiohttp.ClientSession):  # BedrockTransport(session)
            if "session" in kwargs:
                raise TypeError("BedrockTransport() got two aiohttp sessions")
            api_key, kwargs["session"] = None, api_key
        explicit = aws_access_key_id is not None or aws_secret_access_key is not None
        if explicit and (aws_access_key_id is None or aws_secret_access_key is None):
            raise TypeError("give both aws_access_key_id and aws_secret_access_key")
        if explicit and credentials is not None:
            raise TypeError("give credentials or the aws_* keys, not both")
        if api_key is None and not explicit and credentials is None and profile is None:
            api_key = os.environ.get(self.env_api_key)
        if api_key and (explicit or credentials is not None or profile is not None):
            raise TypeError("a Bedrock API key replaces AWS credentials; give one or the other")
        self._aws_session: Any = None
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and not api_key:
            region = self._botocore_session(profile).get_config_variable("region")
        if base_url is None:
            base_url = os.environ.get(self.env_base_url)
        if base_url is None:
            if not region:
                raise ConfigurationError(
                    "no AWS region: set AWS_REGION, pass region=, or configure one for the "
                    "profile", variable="AWS_REGION")
            base_url = f"https://bedrock-runtime.{region}.amazonaws.com"
        # "" when signing: the base class must not read the key variable a second time.
        super().__init__(api_key or "", base_url, **kwargs)
        self.region = region or ""
        self.profile = profile
        self._credentials: Any = credentials
        if aws_access_key_id is not None and aws_secret_access_key is not None:
            from botocore.credentials import Credentials

            register_secret(aws_secret_access_key)
            register_secret(aws_session_token)
            self._credentials = Credentials(aws_access_key_id, aws_secret_access_key,
                                            aws_session_token)
        self.signs_requests = not api_key
        if self.signs_requests and not self.region:
            raise ConfigurationError("SigV4 signing needs the AWS region: set AWS_REGION",
                                     variable="AWS_REGION")

    # -- credentials --------------------------------------------------------------------------

    def _botocore_session(self, profile: str | None) -> Any:
        if self._aws_session is None:
            try:
                import botocore.session
            except ImportError as exc:
                raise ConfigurationError(
                    "SigV4 signing for Bedrock needs botocore: pip install 'llm-async[bedrock]' "
                    "(or set AWS_BEARER_TOKEN_BEDROCK to use a Bedrock API key)",
                    variable="botocore") from exc
            self._aws_session = botocore.session.Session(profile=profile)
        return self._aws_session

    def _resolve_credentials(self) -> Any:
        credentials = self._botocore_session(self.profile).get_credentials()
        if credentials is None:
            raise AuthenticationError(
                "no AWS credentials found in the standard chain (environment, shared files, "
                "SSO, container or instance role)", provider=self.provider)
        return credentials

    async def _frozen_credentials(self) -> Any:
        credentials = self._credentials
        if credentials is None:
            credentials = self._credentials = await asyncio.to_thread(self._resolve_credentials)
        refresh = getattr(credentials, "refresh_needed", None)
        if refresh is not None and refresh():
            frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
        else:
            frozen = credentials.get_frozen_credentials()
        register_secret(frozen.secret_key)
        register_secret(frozen.token)
        return frozen

    async def sign(self, url: str, headers: dict[str, str], body: bytes) -> None:
        """Sign the request with SigV4 (``Authorization``, ``X-Amz-Date`` and, for temporary
        credentials, ``X-Amz-Security-Token``)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        try:
            frozen = await self._frozen_credentials()
        except LLMError:
            raise
        except Exception as exc:  # botocore's credential-provider errors
            raise AuthenticationError(f"could not load AWS credentials: {type(exc).__name__}",
                                      provider=self.provider) from exc
        aws_request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        SigV4Auth(frozen, self.service, self.region).add_auth(aws_request)
        headers.clear()
        headers.update(aws_request.headers.items())

    # -- HTTP ---------------------------------------------------------------------------------

    def _model_url(self, request: ChatRequest) -> str:
        return f"{self.base_url}/model/{quote(request.model, safe='')}"

    def url(self, request: ChatRequest) -> URL:
        # Sent exactly as signed: yarl would otherwise decode the model id's %3A to ':'.
        return URL(f"{self._model_url(request)}/converse", encoded=True)

    def stream_url(self, request: ChatRequest) -> URL:
        return URL(f"{self._model_url(request)}/converse-stream", encoded=True)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def stream_decoder(self) -> EventStreamDecoder:
        return EventStreamDecoder(self.max_event_bytes)

    # -- request ------------------------------------------------------------------------------

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The Converse body for ``request`` (raises
        :class:`~llm_async.errors.InvalidRequestError` for input Bedrock cannot take)."""
        system, messages = self._messages(request)
        body: dict[str, Any] = {"messages": messages}
        if system:
            body["system"] = system
        config: dict[str, Any] = {}
        if request.max_tokens is not None:
            config["maxTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if config:
            body["inferenceConfig"] = config
        tool_config = self._tool_config(request)
        if tool_config is not None:
            body["toolConfig"] = tool_config
        if request.extra_body:
            body.update(request.extra_body)
        return body

    def _messages(self, request: ChatRequest) -> tuple[list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for index, message in enumerate(request.messages):
            where = f"messages[{index}]"
            if message.role in ("system", "developer"):
                if isinstance(message.content, list) and any(
                        isinstance(p, ImagePart) for p in message.content):
                    raise InvalidRequestError("Bedrock takes no images in the system prompt",
                                              field=f"{where}.content", provider=self.provider)
                if message.text:
                    system.append({"text": message.text})
                continue
            role, blocks = self._blocks(message, where)
            if not blocks:
                raise InvalidRequestError(
                    f"Bedrock needs non-empty content in {message.role} messages",
                    field=f"{where}.content", provider=self.provider)
            if messages and messages[-1]["role"] == role:
                messages[-1]["content"].extend(blocks)
            else:
                messages.append({"role": role, "content": blocks})
        if not messages:
            raise InvalidRequestError("Bedrock needs at least one user or assistant message",
                                      field="messages", provider=self.provider)
        return system, messages

    def _content(self, content: Any, where: str) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"text": content}] if content else []
        blocks: list[dict[str, Any]] = []
        for index, part in enumerate(content):
            if isinstance(part, TextPart):
                if part.text:
                    blocks.append({"text": part.text})
            elif isinstance(part, ReasoningPart):
                if part.encrypted is not None and not part.text:
                    blocks.append({"reasoningContent": {"redactedContent": part.encrypted}})
                elif part.signature:
                    blocks.append({"reasoningContent": {"reasoningText": {
                        "text": part.text, "signature": part.signature}}})
                # reasoning without Bedrock's signature cannot be sent back
            elif isinstance(part, ImagePart):
                match = _DATA_URL.match(part.image_url.url)
                fmt = _IMAGE_FORMATS.get(match["format"].lower()) if match else None
                if match is None or fmt is None:
                    raise InvalidRequestError(
                        "Bedrock takes images as base64 data: URLs (png, jpeg, gif or webp)",
                        field=f"{where}[{index}]", provider=self.provider)
                blocks.append({"image": {"format": fmt, "source": {"bytes": match["data"]}}})
        return blocks

    def _blocks(self, message: Message, where: str) -> tuple[str, list[dict[str, Any]]]:
        if message.role == "tool":
            text = message.text
            try:
                value = _json.loads(text) if text else None
            except ValueError:
                value = None
            result = [{"json": value}] if isinstance(value, dict) else [{"text": text}]
            return "user", [{"toolResult": {"toolUseId": message.tool_call_id,
                                            "content": result}}]
        blocks = self._content(message.content, f"{where}.content")
        if message.role == "user":
            return "user", blocks
        for j, call in enumerate(message.tool_calls or ()):
            try:
                arguments = _json.loads(call.function.arguments or "{}")
            except ValueError:
                arguments = None
            if not isinstance(arguments, dict):
                raise InvalidRequestError(
                    "tool call arguments must be a JSON object for Bedrock",
                    field=f"{where}.tool_calls[{j}].function.arguments", provider=self.provider)
            blocks.append({"toolUse": {"toolUseId": call.id, "name": call.function.name,
                                       "input": arguments}})
        return "assistant", blocks

    def _tool_config(self, request: ChatRequest) -> dict[str, Any] | None:
        tools: list[dict[str, Any]] = []
        for index, tool in enumerate(request.tools or ()):
            fn = tool.function
            if not _TOOL_NAME.match(fn.name):
                raise InvalidRequestError(
                    f"Bedrock tool names must match ^[a-zA-Z0-9_-]{{1,64}}$, got {fn.name!r}",
                    field=f"tools[{index}].function.name", provider=self.provider)
            spec: dict[str, Any] = {"name": fn.name}
            if fn.description:
                spec["description"] = fn.description
            spec["inputSchema"] = {"json": fn.parameters}
            tools.append({"toolSpec": spec})
        choice = request.tool_choice
        output = output_schema(request.response_format)
        if output is not None:
            if choice not in (None, "auto"):
                raise InvalidRequestError(
                    "response_format is served on Bedrock by forcing a tool call, so it cannot "
                    "be combined with tool_choice", field="tool_choice", provider=self.provider)
            if any(t["toolSpec"]["name"] == output.name for t in tools):
                raise InvalidRequestError(
                    f"a tool is named {output.name!r} like the response_format schema; rename "
                    "one", field="tools", provider=self.provider)
            tools.append({"toolSpec": {
                "name": output.name,
                "description": output.description or "Give the final answer as this tool's input.",
                "inputSchema": {"json": output.tool_input_schema()}}})
            return {"tools": tools, "toolChoice": {"tool": {"name": output.name}}}
        if not tools:
            if choice not in (None, "auto", "none"):
                raise InvalidRequestError("tool_choice needs tools", field="tool_choice",
                                          provider=self.provider)
            return None
        config: dict[str, Any] = {"tools": tools}
        if choice is None:
            return config
        if choice == "auto":
            config["toolChoice"] = {"auto": {}}
        elif choice == "required":
            config["toolChoice"] = {"any": {}}
        elif choice == "none":
            raise InvalidRequestError(
                "Bedrock Converse has no tool_choice 'none'; leave the tools out instead",
                field="tool_choice", provider=self.provider)
        elif isinstance(choice, Mapping) and choice.get("type") == "function" \
                and isinstance(choice.get("function"), Mapping) \
                and isinstance(choice["function"].get("name"), str):
            config["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
        else:
            raise InvalidRequestError(f"unsupported tool_choice {choice!r}",
                                      field="tool_choice", provider=self.provider)
        return config

    # -- response -----------------------------------------------------------------------------

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        if not isinstance(data, Mapping):
            raise ProtocolError("response is not a JSON object", provider=self.provider)
        output = data.get("output")
        message = output.get("message") if isinstance(output, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            raise ProtocolError("response has no output message content",
                                provider=self.provider)
        spec = output_schema(request.response_format)
        texts: list[str] = []
        parts: list[Any] = []
        calls: list[ToolCall] = []
        structured: str | None = None
        for block in content:
            if not isinstance(block, Mapping):
                raise ProtocolError("content block is not an object", provider=self.provider)
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
                parts.append(TextPart(text=block["text"]))
            elif "reasoningContent" in block:
                parts.append(_reasoning_part(block["reasoningContent"]))
            elif "toolUse" in block:
                use = block["toolUse"]
                if not isinstance(use, Mapping) or not isinstance(use.get("name"), str):
                    raise ProtocolError(f"malformed toolUse block: {block!r:.100}",
                                        provider=self.provider)
                arguments = _json.dumps(use.get("input") or {}).decode()
                if spec is not None and use["name"] == spec.name:
                    structured = spec.tool_output_text(use.get("input"), arguments)
                else:
                    calls.append(ToolCall.model_construct(
                        id=str(use.get("toolUseId") or f"call_{uuid.uuid4().hex[:24]}"),
                        type="function",
                        function=FunctionCall.model_construct(name=use["name"],
                                                              arguments=arguments)))
        raw_reason = data.get("stopReason")
        reason = stop_reason(raw_reason)
        if structured is not None:
            text: str | None = structured
            if not calls and reason == "tool_calls":
                reason = "stop"
            parts = [p for p in parts if not isinstance(p, TextPart)]
        else:
            joined = "".join(texts)
            text = joined if (joined or not calls) else None
        reasoning = any(isinstance(p, ReasoningPart) for p in parts)
        return ChatResponse.model_construct(
            id="",
            model=request.model,
            content=text,
            tool_calls=mark_incomplete(calls, reason),
            finish_reason=reason,
            usage=bedrock_usage(data.get("usage")) or Usage(),
            parts=parts if reasoning else [],
            refusal=_refusal(raw_reason),
            extras={k: data[k] for k in _EXTRAS if data.get(k)},
            raw=data,
        )

    def map_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """The class named by ``x-amzn-ErrorType`` (or the body's ``__type``), else the status
        table; the message from the body's ``message``."""
        name = _exception_name(headers.get("x-amzn-errortype"))
        if name is None and isinstance(body, Mapping):
            name = _exception_name(str(body.get("__type") or "") or None)
        return self.exception_error(name, body, status=status, headers=headers)

    def exception_error(self, name: str | None, body: Any, *, status: int | None = None,
                        headers: Mapping[str, str] | None = None) -> LLMError:
        """The typed error of a Bedrock exception (an error answer or a stream's exception
        event)."""
        message: str | None = None
        if isinstance(body, Mapping):
            raw = body.get("message", body.get("Message"))
            message = str(raw) if raw is not None else None
        elif isinstance(body, str) and body.strip():
            message = body.strip()[:200]
        known = EXCEPTION_ERRORS.get(name or "")
        if status is None:
            status = known[1] if known is not None else 500
        request_id = self._request_id(headers) if headers else None
        err = error_from_response(status, {"message": message or name or f"HTTP {status}"},
                                  headers=headers, provider=self.provider, request_id=request_id)
        cls: type[APIStatusError] = known[0] if known is not None else type(err)
        if cls is BadRequestError and message and any(h in message.lower() for h in _TOO_LONG):
            cls = ContextLengthExceededError
        if cls is not type(err) or name:
            should_retry = err.retryable if headers and "x-should-retry" in headers else None
            err = cls(err.message, provider=self.provider, status=status, request_id=request_id,
                      body=body, error_type=name, code=name, retry_after=err.retry_after,
                      retryable=should_retry)
        else:
            err.body = body
        return err

    def stream_parser(self, request: ChatRequest) -> _BedrockStreamParser:
        return _BedrockStreamParser(self, request)


_EXTRAS = ("trace", "performanceConfig", "additionalModelResponseFields")


def _reasoning_part(raw: Any) -> ReasoningPart:
    """Our part for a ``reasoningContent`` block (readable text with its signature, or the
    encrypted ``redactedContent``)."""
    if not isinstance(raw, Mapping):
        raise ProtocolError(f"malformed reasoningContent: {raw!r:.80}", provider="bedrock")
    if "redactedContent" in raw:
        return ReasoningPart.model_construct(text="", signature=None,
                                             encrypted=str(raw["redactedContent"]), format=None)
    body = raw.get("reasoningText")
    body = body if isinstance(body, Mapping) else {}
    signature = body.get("signature")
    return ReasoningPart.model_construct(
        text=str(body.get("text") or ""),
        signature=signature if isinstance(signature, str) and signature else None,
        encrypted=None, format=None)


def _refusal(reason: Any) -> Refusal | None:
    """The refusal of a guardrail or content-filter stop (its category: the stop reason)."""
    if reason in ("guardrail_intervened", "content_filtered"):
        return Refusal.model_construct(text="", category=str(reason))
    return None


class _BedrockStreamParser:
    """ConverseStream events → :class:`ChatChunk`.

    ``contentBlockDelta`` text becomes text chunks, a ``toolUse`` block a tool-call fragment
    with its id and name (from ``contentBlockStart``) followed by its input pieces;
    ``messageStop`` holds the stop reason and ``metadata``, the last event, the usage: the final
    chunk comes with it. The forced structured-output tool streams as text, or (for a schema
    that had to be wrapped in an object) arrives as one text chunk when its block stops.
    """

    __slots__ = ("_buffer", "_kinds", "_reasoning", "_spec", "_stop", "_texts", "_tools",
                 "done", "request", "transport")

    def __init__(self, transport: BedrockTransport, request: ChatRequest) -> None:
        self.transport = transport
        self.request = request
        self.done = False
        self._spec = output_schema(request.response_format)
        self._stop: str | None = None
        self._kinds: dict[int, str] = {}  # block index -> tool | output | wrapped
        self._tools: dict[int, int] = {}  # block index -> our tool-call index
        self._buffer: list[str] = []
        # block index -> [text pieces, signature, encrypted] of a reasoning block
        self._reasoning: dict[int, list[Any]] = {}
        self._texts: dict[int, list[str]] = {}  # block index -> text pieces

    def _chunk(self, **fields: Any) -> ChatChunk:
        chunk = ChatChunk.construct_fast("", [], None, None, None, None)
        for name, value in fields.items():
            setattr(chunk, name, value)
        return chunk

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        name = event.event
        if name.startswith(("exception:", "error:")):
            kind, _, exception = name.partition(":")
            body: Any
            try:
                body = _json.loads(event.data) if kind == "exception" else None
            except ValueError:
                body = None
            if body is None:
                body = {"message": event.data.decode("utf-8", "replace")}
            raise self.transport.exception_error(_exception_name(exception), body)
        handler = _HANDLERS.get(name)
        if handler is None:
            return []  # messageStart and events this client has no use for
        try:
            obj = _json.loads(event.data)
        except ValueError as exc:
            raise ProtocolError(f"malformed stream event: {event.data[:80]!r}",
                                provider=self.transport.provider) from exc
        if not isinstance(obj, dict):
            raise ProtocolError("stream event is not a JSON object",
                                provider=self.transport.provider)
        chunks: list[ChatChunk] = handler(self, obj)
        return chunks

    def end(self) -> list[ChatChunk] | None:
        """The final chunk (without usage) when the body ended after ``messageStop`` but before
        ``metadata``; ``None`` when the stream was cut earlier."""
        if self._stop is None:
            return None
        return self._metadata({})

    def _block_start(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("contentBlockIndex") or 0)
        start = obj.get("start")
        use = start.get("toolUse") if isinstance(start, Mapping) else None
        if not isinstance(use, Mapping):
            return []
        name = str(use.get("name") or "")
        spec = self._spec
        if spec is not None and name == spec.name:
            self._kinds[index] = "output" if spec.is_object else "wrapped"
            return []
        self._kinds[index] = "tool"
        position = self._tools[index] = len(self._tools)
        call_id = use.get("toolUseId")
        return [self._chunk(tool_calls=[ToolCallDelta.model_construct(
            index=position, id=call_id if isinstance(call_id, str) else None, name=name,
            arguments="")])]

    def _block_delta(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("contentBlockIndex") or 0)
        delta = obj.get("delta")
        if not isinstance(delta, Mapping):
            return []
        kind = self._kinds.get(index)
        text = delta.get("text")
        if isinstance(text, str):
            if text and kind is None and self._spec is None:
                self._texts.setdefault(index, []).append(text)
                return [self._chunk(delta=text)]
            return []
        thinking = delta.get("reasoningContent")
        if isinstance(thinking, Mapping):
            state = self._reasoning.setdefault(index, [[], None, None])
            if isinstance(thinking.get("text"), str) and thinking["text"]:
                state[0].append(thinking["text"])
                return [self._chunk(reasoning=thinking["text"])]
            if isinstance(thinking.get("signature"), str):
                state[1] = thinking["signature"]
            if isinstance(thinking.get("redactedContent"), str):
                state[2] = thinking["redactedContent"]
            return []
        use = delta.get("toolUse")
        piece = use.get("input") if isinstance(use, Mapping) else None
        if not isinstance(piece, str) or not piece:
            return []  # deltas of other kinds are not part of this model
        if kind == "tool":
            return [self._chunk(tool_calls=[ToolCallDelta.model_construct(
                index=self._tools[index], id=None, name=None, arguments=piece)])]
        if kind == "wrapped":
            self._buffer.append(piece)
            return []
        if kind == "output":
            return [self._chunk(delta=piece)]
        return []

    def _block_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        index = int(obj.get("contentBlockIndex") or 0)
        if self._kinds.get(index) != "wrapped" or self._spec is None:
            return []
        text = "".join(self._buffer)
        self._buffer.clear()
        try:
            value = _json.loads(text or "{}")
        except ValueError:
            return [self._chunk(delta=text)] if text else []
        return [self._chunk(delta=self._spec.tool_output_text(value, text))]

    def _message_stop(self, obj: dict[str, Any]) -> list[ChatChunk]:
        reason = obj.get("stopReason")
        self._stop = str(reason) if reason is not None else "end_turn"
        return []

    def _metadata(self, obj: dict[str, Any]) -> list[ChatChunk]:
        self.done = True
        reason = stop_reason(self._stop or "end_turn") or "stop"
        if reason == "tool_calls" and not self._tools:
            reason = "stop"  # only the structured-output tool was called
        final = self._chunk(finish_reason=reason, usage=bedrock_usage(obj.get("usage")))
        if self._reasoning:
            blocks: dict[int, Any] = {
                index: TextPart(text="".join(pieces)) for index, pieces in self._texts.items()}
            for index, (text, signature, encrypted) in self._reasoning.items():
                blocks[index] = ReasoningPart.model_construct(
                    text="".join(text), signature=signature,
                    encrypted=encrypted if not text else None, format=None)
            final.parts = [part for _, part in sorted(blocks.items())]
        final.refusal_details = _refusal(self._stop)
        return [final]


_HANDLERS: Mapping[str, Any] = {
    "contentBlockStart": _BedrockStreamParser._block_start,
    "contentBlockDelta": _BedrockStreamParser._block_delta,
    "contentBlockStop": _BedrockStreamParser._block_stop,
    "messageStop": _BedrockStreamParser._message_stop,
    "metadata": _BedrockStreamParser._metadata,
}
