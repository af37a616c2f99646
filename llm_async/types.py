"""Typed request, response and stream-chunk models shared by every provider and every layer.

Transports translate these to and from each provider's wire format; layers only ever see these.
Plain dicts are accepted wherever the seed used them (``messages=[{"role": "user", ...}]``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "CallContext",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ContentPart",
    "FinishReason",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "Message",
    "RequestMetadata",
    "Role",
    "StreamAssembler",
    "TextPart",
    "Timeout",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "build_request",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
#: Finish reasons normalised across providers.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


_IMMUTABLE_DEFAULTS = (str, int, float, bool, bytes, Decimal, tuple, frozenset, type(None))
_REQUIRED = object()


class _ConstructPlan:
    """How to build one model class without validation: a template ``__dict__`` (every field in
    order, static defaults filled in), the fields with a default factory, the required ones."""

    __slots__ = ("factories", "names", "required", "template")

    def __init__(self, cls: type[BaseModel]) -> None:
        self.template: dict[str, Any] = {}
        self.factories: list[tuple[str, Callable[[], Any]]] = []
        self.required: list[str] = []
        for name, info in cls.__pydantic_fields__.items():
            self.template[name] = None
            if info.default_factory is not None:
                self.factories.append((name, info.default_factory))  # type: ignore[arg-type]
            elif info.is_required():
                self.required.append(name)
            else:
                self.template[name] = info.default
        self.names = frozenset(self.template)

    @staticmethod
    def supports(cls: type[BaseModel]) -> bool:
        if (cls.__pydantic_post_init__ or cls.__pydantic_root_model__
                or cls.model_config.get("extra") == "allow"):
            return False
        for info in cls.__pydantic_fields__.values():
            if info.alias is not None or info.validation_alias is not None:
                return False
            if info.default_factory is not None:
                if info.default_factory_takes_validated_data:
                    return False
            elif not info.is_required() and not isinstance(info.default, _IMMUTABLE_DEFAULTS):
                return False
        return True


#: Per model class, its plan, or None when it needs pydantic's own ``model_construct``.
_CONSTRUCT_PLANS: dict[type, _ConstructPlan | None] = {}


class _FastConstruct(BaseModel):
    """``model_construct`` without pydantic's per-field default resolution.

    Transports build every response and stream chunk with ``model_construct`` (the values are
    already known to be right); pydantic's version resolved each default through a slow generic
    path that cost more than validating. This builds the same instance (same ``__dict__`` in
    field order, same fields set) for classes without aliases, private attributes or extras, and
    defers to pydantic for any other.
    """

    @classmethod
    def model_construct(  # type: ignore[override]  # the pydantic plugin renames cls
        cls, _fields_set: set[str] | None = None, **values: Any
    ) -> Self:
        plan = _CONSTRUCT_PLANS.get(cls, _REQUIRED)
        if plan is _REQUIRED:
            plan = _CONSTRUCT_PLANS[cls] = (_ConstructPlan(cls) if _ConstructPlan.supports(cls)
                                            else None)
        if plan is None:
            return super().model_construct(_fields_set, **values)
        assert isinstance(plan, _ConstructPlan)
        data = plan.template.copy()
        if plan.names.issuperset(values):
            data.update(values)
            given = set(values)
        else:  # unknown names are ignored, as pydantic does
            given = set(plan.names.intersection(values))
            for name in given:
                data[name] = values[name]
        for name, factory in plan.factories:
            if name not in given:
                data[name] = factory()
        for name in plan.required:
            if name not in given:
                del data[name]
        obj = _new(cls)
        _set_dict(obj, data)
        _set_fields_set(obj, given if _fields_set is None else _fields_set)
        _set_extra(obj, None)
        _set_private(obj, None)
        return obj


_new = object.__new__
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class _Model(_FastConstruct):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TextPart(_Model):
    """A text part of a message's content."""

    type: Literal["text"] = "text"
    text: str


class ImageURL(_Model):
    """An image by URL or ``data:`` URL (base64)."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Model):
    """An image part of a message's content (OpenAI shape; other providers are translated)."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(_Model):
    """The function a tool call invokes; ``arguments`` is the JSON text the model produced."""

    name: str
    arguments: str = ""


class ToolCall(_Model):
    """A complete tool call made by the assistant."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall

    @property
    def name(self) -> str:
        return self.function.name

    def parsed_arguments(self) -> Any:
        """The arguments as JSON (raises :class:`json.JSONDecodeError` when they are not JSON)."""
        return json.loads(self.function.arguments or "{}")


class ToolCallDelta(_Model):
    """A fragment of a streamed tool call; fragments with the same ``index`` concatenate."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class FunctionDefinition(_Model):
    """A function the model may call: a name, a description and a JSON schema."""

    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(_Model):
    """A tool in OpenAI's shape: ``{"type": "function", "function": {...}}``."""

    type: Literal["function"] = "function"
    function: FunctionDefinition


class Message(_Model):
    """One chat message. ``content`` is text or a list of parts; assistants may add tool calls."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an assistant message needs content or tool_calls")
        elif self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    @property
    def text(self) -> str:
        """The message's text: the content string, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class RequestMetadata(BaseModel):
    """Who a call is for: used for cost attribution, budgets and cache namespacing."""

    model_config = ConfigDict(extra="allow")

    user_id: str | None = None
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class Timeout:
    """Timeouts in seconds (``None`` disables one).

    ``connect``: opening the connection. ``first_chunk``: from sending until the first content
    of a stream (or the response headers of a unary call). ``idle``: the longest gap between two
    reads. ``total``: the whole call. Time spent queued in our own limits counts in none of them:
    they are applied by the transport, the innermost handler.
    """

    connect: float | None = 10.0
    first_chunk: float | None = 120.0
    idle: float | None = 60.0
    total: float | None = 600.0

    def __post_init__(self) -> None:
        for name in ("connect", "first_chunk", "idle", "total"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidRequestError(f"timeout.{name} must be > 0, got {value!r}",
                                          field=f"timeout.{name}")

    @classmethod
    def coerce(cls, value: float | Timeout | None, default: Timeout | None = None) -> Timeout:
        """A float means a total timeout on top of ``default``'s other values."""
        if isinstance(value, Timeout):
            return value
        base = default or cls()
        if value is None:
            return base
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequestError(f"timeout must be a number or Timeout, got {value!r}",
                                      field="timeout")
        total = float(value)
        return cls(
            connect=min(base.connect, total) if base.connect else total,
            first_chunk=min(base.first_chunk, total) if base.first_chunk else None,
            idle=min(base.idle, total) if base.idle else None,
            total=total,
        )


@dataclass(slots=True)
class CallContext:
    """Per-call scratch space shared by the layers of one logical call.

    Layers record what happened (``event``), read the last attempt's response headers, and keep
    small per-call state in ``state``. Listeners (the tracing layer) receive every event.
    """

    call_id: str = field(default_factory=lambda: f"{random.getrandbits(128):032x}")
    started: float = field(default_factory=time.perf_counter)
    attempt: int = 0
    response_headers: Mapping[str, str] | None = None
    cache_hit: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    listeners: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)

    def event(self, name: str, **attributes: Any) -> None:
        """Report ``name`` (``retry``, ``cache_hit``, ``fallback``, ...) to every listener."""
        for listener in self.listeners:
            listener(name, attributes)


class ChatRequest(_Model):
    """A provider-neutral chat request.

    Wire fields are translated by the transport; ``extra_body`` is merged into the provider's
    JSON as-is. ``metadata``, ``timeout``, ``extra_headers`` and ``options`` never reach the
    wire as fields: they steer the layers (``options`` holds per-call layer settings, such as
    ``{"cache": "bypass"}``; each layer documents its keys).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              arbitrary_types_allowed=True)

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    provider: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, gt=0)
    stop: list[str] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None
    response_format: Any = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stream: bool = False
    metadata: RequestMetadata = Field(default_factory=RequestMetadata)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    #: This call's :class:`CallContext`; never sent, never serialised. A plain field, not a
    #: private attribute: copies (retry, fallback) share it, and building a request stays cheap.
    call_context: CallContext | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, dict):
            stop = data.get("stop")
            if isinstance(stop, str):
                data = {**data, "stop": [stop]}
        return data

    @field_validator("response_format")
    @classmethod
    def _check_response_format(cls, rf: Any) -> Any:
        if rf is None or (isinstance(rf, type) and issubclass(rf, BaseModel)):
            return rf
        if isinstance(rf, dict) and rf.get("type") in ("text", "json_object", "json_schema"):
            if rf["type"] == "json_schema" and not isinstance(rf.get("json_schema"), dict):
                raise ValueError("response_format json_schema needs a 'json_schema' object")
            return rf
        raise ValueError(
            "response_format must be a pydantic model class or a dict with type "
            "'text', 'json_object' or 'json_schema'"
        )

    @property
    def context(self) -> CallContext:
        """This call's :class:`CallContext` (created on first use, shared by copies)."""
        ctx: CallContext | None = self.__dict__["call_context"]
        if ctx is None:
            ctx = self.__dict__["call_context"] = CallContext()
        return ctx

    @property
    def user_id(self) -> str | None:
        return self.metadata.user_id

    @property
    def project_id(self) -> str | None:
        return self.metadata.project_id

    def derive(self, **update: Any) -> ChatRequest:
        """A copy with ``update`` applied that shares this call's context (retry, fallback and
        the layers that adjust a request use it, so every attempt reports to the same call)."""
        self.context  # noqa: B018 - create it first: the shallow copy then shares it
        return self.model_copy(update=update)

    def with_model(self, model: str) -> ChatRequest:
        """A copy for another model that shares this call's context."""
        return self.derive(model=model)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part == "str"):
            continue  # pydantic's union-branch labels, not field names
        else:
            out += f".{part}" if out else str(part)
    return out


_SIMPLE_ROLES = frozenset({"system", "developer", "user", "assistant"})
_SIMPLE_KEYS = frozenset({"model", "messages", "provider", "stream", "temperature", "top_p",
                          "max_tokens", "seed"})


def _number(value: Any, low: float, high: float) -> bool:
    return (type(value) is float or type(value) is int) and low <= value <= high


def _simple_request(fields: dict[str, Any]) -> ChatRequest | None:
    """The common request — text messages as dicts and a few scalar parameters — checked by
    hand and built without pydantic's validation (the hot path of every call). Anything else
    returns ``None`` and takes the full validation, which gives the same result."""
    if not _SIMPLE_KEYS.issuperset(fields):
        return None
    model, messages, provider = fields.get("model"), fields.get("messages"), fields.get("provider")
    if (type(model) is not str or not model or type(messages) is not list or not messages
            or not (provider is None or type(provider) is str)
            or type(fields.get("stream", False)) is not bool):
        return None
    temperature, top_p = fields.get("temperature"), fields.get("top_p")
    max_tokens, seed = fields.get("max_tokens"), fields.get("seed")
    if ((temperature is not None and not _number(temperature, 0.0, 2.0))
            or (top_p is not None and not _number(top_p, 0.0, 1.0))
            or (max_tokens is not None and (type(max_tokens) is not int or max_tokens <= 0))
            or (seed is not None and type(seed) is not int)):
        return None
    built = []
    for message in messages:
        if type(message) is not dict or len(message) != 2:
            return None
        role, content = message.get("role"), message.get("content")
        if type(content) is not str or role not in _SIMPLE_ROLES:
            return None
        built.append(Message.model_construct(role=role, content=content))
    values = dict(fields)
    values["messages"] = built
    if temperature is not None:
        values["temperature"] = float(temperature)
    if top_p is not None:
        values["top_p"] = float(top_p)
    return ChatRequest.model_construct(**values)


def build_request(**fields: Any) -> ChatRequest:
    """Validate ``fields`` into a :class:`ChatRequest`, or raise :class:`InvalidRequestError`.

    The error names the first offending field, for example ``messages[0].role``.
    """
    fast = _simple_request(fields)
    if fast is not None:
        return fast
    try:
        return ChatRequest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = _field_path(tuple(first["loc"]))
        msg = first["msg"]
        if first["type"] == "extra_forbidden":
            msg = "unknown parameter (use extra_body= for provider-specific fields)"
        count = exc.error_count()
        more = f" (and {count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
        raise InvalidRequestError(f"invalid request: {path}: {msg}{more}", field=path) from None


class Usage(_FastConstruct):
    """Token usage, normalised across providers.

    ``input_tokens`` counts every prompt token, cached ones included (OpenAI's ``prompt_tokens``;
    for Anthropic the sum of uncached, cache-read and cache-write tokens). ``cache_read_tokens``
    and ``cache_write_tokens`` are parts of it; ``reasoning_tokens`` is part of ``output_tokens``.
    """

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    @property
    def cached_input_tokens(self) -> int:
        """Alias of ``cache_read_tokens``."""
        return self.cache_read_tokens


class ChatResponse(_FastConstruct):
    """A complete answer, from a unary call or assembled from a stream."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    id: str = ""
    model: str = ""
    provider: str = ""
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage = Field(default_factory=Usage)
    latency: float = 0.0
    time_to_first_chunk: float | None = None
    request_id: str | None = None
    requested_model: str | None = None
    cache_hit: bool = False
    cost: Decimal | None = None
    cost_estimated: bool = False
    provider_cost: float | None = None
    parsed: Any = None
    raw: Any = Field(default=None, repr=False)

    @property
    def text(self) -> str:
        """The reply's text ("" when the model only called tools)."""
        return self.content or ""


class ChatChunk(_FastConstruct):
    """One streamed piece: a text delta, tool-call fragments, and at the end a finish reason
    and (on the final chunk) the usage."""

    model_config = ConfigDict(extra="forbid")

    delta: str = ""
    tool_calls: list[ToolCallDelta] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    id: str | None = None
    model: str | None = None
    provider_cost: float | None = None

    @classmethod
    def construct_fast(cls, delta: str, tool_calls: list[ToolCallDelta],
                       finish_reason: FinishReason | None, usage: Usage | None,
                       id: str | None, model: str | None) -> ChatChunk:
        """``model_construct(delta=..., tool_calls=..., finish_reason=..., usage=..., id=...,
        model=...)`` for a transport's hot path (every chunk of every stream): the same
        instance, built without the generic per-field loop. The values are trusted."""
        obj = _new(cls)
        _set_dict(obj, {"delta": delta, "tool_calls": tool_calls, "finish_reason": finish_reason,
                        "usage": usage, "id": id, "model": model, "provider_cost": None})
        _set_fields_set(obj, {"delta", "tool_calls", "finish_reason", "usage", "id", "model"})
        _set_extra(obj, None)
        _set_private(obj, None)
        return obj


class StreamAssembler:
    """Folds chunks into the final :class:`ChatResponse` (text, tool calls, usage).

    Used by the client for ``stream.final_response`` and by any layer that needs the whole answer
    of a stream (cost, cache, dedup).
    """

    __slots__ = ("_calls", "_parts", "chunks", "finish_reason", "id", "model", "provider_cost",
                 "usage")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._calls: dict[int, list[Any]] = {}
        self.chunks = 0
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.provider_cost: float | None = None

    def add(self, chunk: ChatChunk) -> None:
        self.chunks += 1
        if chunk.delta:
            self._parts.append(chunk.delta)
        for tc in chunk.tool_calls:
            slot = self._calls.get(tc.index)
            if slot is None:
                slot = self._calls[tc.index] = [tc.id, tc.name, []]
            if tc.id:
                slot[0] = tc.id
            if tc.name:
                slot[1] = tc.name
            if tc.arguments:
                slot[2].append(tc.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.id and self.id is None:
            self.id = chunk.id
        if chunk.model and self.model is None:
            self.model = chunk.model
        if chunk.provider_cost is not None:
            self.provider_cost = chunk.provider_cost

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=slot[0] or f"call_{index}",
                     function=FunctionCall(name=slot[1] or "", arguments="".join(slot[2])))
            for index, slot in sorted(self._calls.items())
        ]

    def response(self, **fields: Any) -> ChatResponse:
        """The assembled response; ``fields`` (provider, latency, ...) are set on it too."""
        text = self.text
        calls = self.tool_calls()
        values: dict[str, Any] = {
            "id": self.id or "",
            "model": self.model or "",
            "content": text if (text or not calls) else None,
            "tool_calls": calls,
            "finish_reason": self.finish_reason,
            "usage": self.usage or Usage(),
            "provider_cost": self.provider_cost,
        }
        values.update(fields)
        return ChatResponse(**values)
