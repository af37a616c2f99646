"""Typed request, response and stream-chunk models shared by every provider and every layer.

Transports translate these to and from each provider's wire format; layers only ever see these.
Plain dicts are accepted for messages and tools (``messages=[{"role": "user", ...}]``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from typing_extensions import TypeVar

from .errors import InvalidRequestError, ToolArgumentsError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "Citation",
    "ContentPart",
    "FinishReason",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "Message",
    "ProviderBlockPart",
    "ReasoningPart",
    "Refusal",
    "RequestMetadata",
    "Role",
    "ServerToolCallPart",
    "ServerToolResultPart",
    "StreamAssembler",
    "TextPart",
    "Timeout",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
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


class Citation(_Model):
    """A source the model cited for a piece of text.

    ``type`` is the provider's kind of citation (``url_citation`` for OpenAI annotations;
    ``web_search_result_location``, ``char_location``, ``page_location`` ... for Anthropic).
    ``start_index``/``end_index`` locate the cited span in the text when the provider says so.
    ``extras`` keeps the provider's other fields verbatim (``encrypted_index``,
    ``document_index`` ...), so a reply with citations can be sent back in a conversation.
    """

    type: str = "url_citation"
    url: str | None = None
    title: str | None = None
    cited_text: str | None = None
    start_index: int | None = None
    end_index: int | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class TextPart(_Model):
    """A text part of a message's content, with the sources the model cited for it."""

    type: Literal["text"] = "text"
    text: str
    citations: list[Citation] | None = None


class ImageURL(_Model):
    """An image by URL or ``data:`` URL (base64)."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Model):
    """An image part of a message's content (OpenAI shape; other providers are translated)."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class ReasoningPart(_Model):
    """The model's reasoning (Anthropic thinking, DeepSeek/vLLM ``reasoning_content``,
    OpenRouter ``reasoning_details``, Mistral ``thinking`` parts).

    ``text`` is the readable reasoning ("" when the provider hides it). ``signature`` is the
    provider's opaque proof that the text is unmodified (Anthropic requires it back with the
    thinking in the next turn of a tool loop). ``encrypted`` is reasoning the provider only
    hands out encrypted (Anthropic ``redacted_thinking``, OpenRouter ``reasoning.encrypted``).
    ``format`` names the provider's reasoning format when it gives one (OpenRouter).
    """

    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    signature: str | None = None
    encrypted: str | None = None
    format: str | None = None

    @property
    def redacted(self) -> bool:
        """Whether the reasoning is only available encrypted."""
        return self.encrypted is not None and not self.text


class ServerToolCallPart(_Model):
    """A tool the provider ran itself (Anthropic ``server_tool_use``: web search, code
    execution, web fetch ...). ``kind`` is the provider's block type; ``extras`` keeps its
    other fields verbatim."""

    type: Literal["server_tool_call"] = "server_tool_call"
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    kind: str = "server_tool_use"
    extras: dict[str, Any] = Field(default_factory=dict)


class ServerToolResultPart(_Model):
    """The result of a provider-run tool (Anthropic ``web_search_tool_result``,
    ``code_execution_tool_result`` ...). ``content`` is the provider's result as sent (for web
    search: the list of results, each with its opaque ``encrypted_content``)."""

    type: Literal["server_tool_result"] = "server_tool_result"
    tool_call_id: str
    kind: str = "web_search_tool_result"
    content: Any = None
    extras: dict[str, Any] = Field(default_factory=dict)

    @property
    def urls(self) -> list[str]:
        """The URLs of a web search's results."""
        if not isinstance(self.content, list):
            return []
        return [str(item["url"]) for item in self.content
                if isinstance(item, Mapping) and isinstance(item.get("url"), str)]


class ProviderBlockPart(_Model):
    """A content block of a kind this library has no type for (Anthropic ``compaction``,
    ``container_upload`` ...), kept verbatim so that it can be sent back to ``provider``."""

    type: Literal["provider_block"] = "provider_block"
    provider: str
    block: dict[str, Any]


ContentPart = Annotated[
    TextPart | ImagePart | ReasoningPart | ServerToolCallPart | ServerToolResultPart
    | ProviderBlockPart,
    Field(discriminator="type"),
]


class FunctionCall(_Model):
    """The function a tool call invokes; ``arguments`` is the JSON text the model produced."""

    name: str
    arguments: str = ""


class ToolCall(_Model):
    """A complete tool call made by the assistant.

    ``incomplete`` is set when the reply was cut (``max_tokens``) while the model was still
    writing the arguments: they are then not valid JSON.
    """

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    incomplete: bool = False

    @property
    def name(self) -> str:
        return self.function.name

    def parsed_arguments(self) -> Any:
        """The arguments as JSON.

        Raises :class:`~llm_async.errors.ToolArgumentsError` (a ``ValueError``, with the raw
        text and whether the call was cut) when they are not JSON.
        """
        text = self.function.arguments or "{}"
        try:
            return json.loads(text)
        except ValueError as exc:
            cut = " (the reply was cut at max_tokens)" if self.incomplete else ""
            raise ToolArgumentsError(
                f"the arguments of tool call {self.id!r} ({self.name}) are not JSON{cut}: {exc}",
                raw_text=self.function.arguments, tool_name=self.name,
                incomplete=self.incomplete) from None


def mark_incomplete(calls: list[ToolCall], finish_reason: str | None) -> list[ToolCall]:
    """Mark the tool calls whose arguments were cut by ``max_tokens`` (not valid JSON)."""
    if finish_reason != "length":
        return calls
    for call in calls:
        try:
            json.loads(call.function.arguments or "{}")
        except ValueError:
            call.incomplete = True
    return calls


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
    n: int | None = Field(default=None, ge=1, le=128)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = False
    metadata: RequestMetadata = Field(default_factory=RequestMetadata)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout | None = None
    options: dict[str, Any] = Field(default_factory=dict)

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
    def user_id(self) -> str | None:
        return self.metadata.user_id

    @property
    def project_id(self) -> str | None:
        return self.metadata.project_id

    def with_model(self, model: str) -> ChatRequest:
        """A copy of this request for another model (fallback uses it)."""
        return self.model_copy(update={"model": model})


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


class TopLogprob(_FastConstruct):
    """One of the most likely tokens at a position, with its log probability."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(_FastConstruct):
    """The log probability of one output token (and the ``top_logprobs`` alternatives)."""

    model_config = ConfigDict(extra="forbid")

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class Refusal(_FastConstruct):
    """The model declined to answer.

    ``text`` is what it said instead (OpenAI's ``refusal``, Anthropic's ``stop_details``
    explanation; "" when the provider gives no words), ``category`` the provider's reason when
    it names one (Anthropic ``stop_details.category``: ``cyber``, ``bio`` ...).
    """

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    category: str | None = None


def _joined_reasoning(parts: list[Any]) -> str:
    return "".join(p.text for p in parts if isinstance(p, ReasoningPart))


def _citations(parts: list[Any]) -> list[Citation]:
    return [c for p in parts if isinstance(p, TextPart) and p.citations for c in p.citations]


def _assistant_message(content: str | None, parts: list[Any], tool_calls: list[ToolCall],
                       refusal: Refusal | None) -> Message:
    if parts:
        body: str | list[Any] | None = list(parts)
    elif content or not tool_calls:
        # A refusal goes back as what the model said (there is no other content).
        body = content or (refusal.text if refusal is not None else "") or ""
    else:
        body = None
    return Message(role="assistant", content=body, tool_calls=list(tool_calls) or None)


class Choice(_FastConstruct):
    """One of the ``n`` answers of a call (``response.choices``; choice 0 is the response's
    own fields)."""

    model_config = ConfigDict(extra="forbid")

    index: int = 0
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    parts: list[ContentPart] = Field(default_factory=list)
    refusal: Refusal | None = None
    logprobs: list[TokenLogprob] | None = None

    @property
    def text(self) -> str:
        return self.content or ""

    @property
    def reasoning(self) -> str:
        return _joined_reasoning(self.parts)

    @property
    def message(self) -> Message:
        """This choice as an assistant :class:`Message`, to append to the conversation."""
        return _assistant_message(self.content, self.parts, self.tool_calls, self.refusal)


#: The type of :attr:`ChatResponse.parsed` (the model class a call asked for; ``Any`` unsaid).
ParsedT = TypeVar("ParsedT", default=Any)


class ChatResponse(_FastConstruct, Generic[ParsedT]):
    """A complete answer, from a unary call or assembled from a stream.

    ``parsed`` holds the structured output when the call gave ``response_format``: an instance
    of the pydantic model it named (so ``chat(..., response_format=City)`` is typed
    ``ChatResponse[City]``), or the parsed JSON for a JSON-schema dict.

    ``content`` is the reply's text and ``tool_calls`` the functions it calls. ``parts`` holds
    the reply's content blocks in the provider's order when there is more to it than text:
    reasoning (with signatures), text with citations, provider-run tools and their results,
    images. ``message`` turns all of it into the assistant :class:`Message` to send back in the
    next turn. ``refusal`` is set when the model declined; ``logprobs`` when they were asked
    for; ``extras`` keeps provider fields this model has no place for (Azure
    ``content_filter_results``, ``system_fingerprint``, ``service_tier`` ...).
    """

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
    parsed: ParsedT | None = None
    parts: list[ContentPart] = Field(default_factory=list)
    refusal: Refusal | None = None
    logprobs: list[TokenLogprob] | None = None
    other_choices: list[Choice] = Field(default_factory=list)
    extras: dict[str, Any] = Field(default_factory=dict)
    raw: Any = Field(default=None, repr=False)

    @property
    def text(self) -> str:
        """The reply's text ("" when the model only called tools)."""
        return self.content or ""

    @property
    def reasoning(self) -> str:
        """The readable reasoning of the reply ("" when there is none or it is encrypted)."""
        return _joined_reasoning(self.parts)

    @property
    def reasoning_parts(self) -> list[ReasoningPart]:
        return [p for p in self.parts if isinstance(p, ReasoningPart)]

    @property
    def citations(self) -> list[Citation]:
        """Every source cited in the reply's text, in order."""
        return _citations(self.parts)

    @property
    def choices(self) -> list[Choice]:
        """Every answer when ``n`` > 1 was asked for; ``choices[0]`` is this response's own."""
        first = Choice.model_construct(
            index=0, content=self.content, tool_calls=self.tool_calls,
            finish_reason=self.finish_reason, parts=self.parts, refusal=self.refusal,
            logprobs=self.logprobs)
        return [first, *self.other_choices]

    @property
    def message(self) -> Message:
        """The reply as an assistant :class:`Message`, ready to append to ``messages``: with its
        reasoning blocks and signatures, citations and provider-tool blocks, which providers
        require back in the next turn of a tool loop."""
        return _assistant_message(self.content, self.parts, self.tool_calls, self.refusal)


class ChatChunk(_FastConstruct):
    """One streamed piece: a text delta, tool-call fragments, and at the end a finish reason
    and (on the final chunk) the usage.

    ``reasoning`` and ``refusal`` are deltas of their own kind, apart from the text. ``index``
    is the choice the chunk belongs to (only ever not 0 when ``n`` > 1 was asked for).
    ``parts`` holds complete content blocks (reasoning with signatures, citations, provider
    tools), sent once by transports whose provider streams such blocks, on the final chunk;
    ``citations`` are sources as they stream in; ``refusal_details`` the provider's refusal
    reason; ``extras`` provider fields without a place here (Azure ``content_filter_results``).
    """

    model_config = ConfigDict(extra="forbid")

    delta: str = ""
    tool_calls: list[ToolCallDelta] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    id: str | None = None
    model: str | None = None
    provider_cost: float | None = None
    reasoning: str = ""
    refusal: str = ""
    index: int = 0
    logprobs: list[TokenLogprob] | None = None
    citations: list[Citation] | None = None
    parts: list[ContentPart] | None = None
    refusal_details: Refusal | None = None
    extras: dict[str, Any] | None = None

    @classmethod
    def construct_fast(cls, delta: str, tool_calls: list[ToolCallDelta],
                       finish_reason: FinishReason | None, usage: Usage | None,
                       id: str | None, model: str | None) -> ChatChunk:
        """``model_construct(delta=..., tool_calls=..., finish_reason=..., usage=..., id=...,
        model=...)`` for a transport's hot path (every chunk of every stream): the same
        instance, built without the generic per-field loop. The values are trusted."""
        obj = _new(cls)
        _set_dict(obj, {"delta": delta, "tool_calls": tool_calls, "finish_reason": finish_reason,
                        "usage": usage, "id": id, "model": model, "provider_cost": None,
                        "reasoning": "", "refusal": "", "index": 0, "logprobs": None,
                        "citations": None, "parts": None, "refusal_details": None,
                        "extras": None})
        _set_fields_set(obj, {"delta", "tool_calls", "finish_reason", "usage", "id", "model"})
        _set_extra(obj, None)
        _set_private(obj, None)
        return obj


class _ChoiceAssembler:
    """The fold of one choice's chunks."""

    __slots__ = ("calls", "citations", "finish_reason", "logprobs", "parts", "reasoning",
                 "refusal", "refusal_details", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}
        self.citations: list[Citation] = []
        self.logprobs: list[TokenLogprob] | None = None
        self.parts: list[Any] | None = None
        self.refusal_details: Refusal | None = None
        self.finish_reason: FinishReason | None = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.delta:
            self.text.append(chunk.delta)
        for tc in chunk.tool_calls:
            slot = self.calls.get(tc.index)
            if slot is None:
                slot = self.calls[tc.index] = [tc.id, tc.name, []]
            if tc.id:
                slot[0] = tc.id
            if tc.name:
                slot[1] = tc.name
            if tc.arguments:
                slot[2].append(tc.arguments)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.reasoning:
            self.reasoning.append(chunk.reasoning)
        if chunk.refusal:
            self.refusal.append(chunk.refusal)
        if chunk.citations:
            self.citations.extend(chunk.citations)
        if chunk.logprobs:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(chunk.logprobs)
        if chunk.parts is not None:
            self.parts = [*(self.parts or ()), *chunk.parts]
        if chunk.refusal_details is not None:
            self.refusal_details = chunk.refusal_details

    def tool_calls(self) -> list[ToolCall]:
        calls = [
            ToolCall(id=slot[0] or f"call_{index}",
                     function=FunctionCall(name=slot[1] or "", arguments="".join(slot[2])))
            for index, slot in sorted(self.calls.items())
        ]
        return mark_incomplete(calls, self.finish_reason)

    def choice_fields(self) -> dict[str, Any]:
        text = "".join(self.text)
        calls = self.tool_calls()
        # Blocks the transport sent whole (signed reasoning, cited text, provider tools) come
        # first; reasoning and text known only from their deltas complete them.
        parts: list[Any] = list(self.parts or ())
        reasoning = "".join(self.reasoning)
        if reasoning and not any(isinstance(p, ReasoningPart) for p in parts):
            parts.insert(0, ReasoningPart(text=reasoning))
        if (parts or self.citations) and text and not any(isinstance(p, TextPart)
                                                          for p in parts):
            parts.append(TextPart(text=text, citations=self.citations or None))
        refusal = self.refusal_details
        joined = "".join(self.refusal)
        if joined:
            refusal = Refusal(text=joined, category=refusal.category if refusal else None)
        return {
            "content": text if (text or not calls) else None,
            "tool_calls": calls,
            "finish_reason": self.finish_reason,
            "parts": parts,
            "refusal": refusal,
            "logprobs": self.logprobs,
        }


class StreamAssembler:
    """Folds chunks into the final :class:`ChatResponse` (text, reasoning, tool calls, usage,
    the other choices of ``n`` > 1).

    Used by the client for ``stream.final_response`` and by any layer that needs the whole answer
    of a stream (cost, cache, dedup).
    """

    __slots__ = ("_choice", "_others", "chunks", "extras", "id", "model", "provider_cost",
                 "usage")

    def __init__(self) -> None:
        self._choice = _ChoiceAssembler()
        self._others: dict[int, _ChoiceAssembler] = {}
        self.chunks = 0
        self.usage: Usage | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.provider_cost: float | None = None
        self.extras: dict[str, Any] = {}

    def add(self, chunk: ChatChunk) -> None:
        self.chunks += 1
        if chunk.index:
            other = self._others.get(chunk.index)
            if other is None:
                other = self._others[chunk.index] = _ChoiceAssembler()
            other.add(chunk)
        else:
            self._choice.add(chunk)
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.id and self.id is None:
            self.id = chunk.id
        if chunk.model and self.model is None:
            self.model = chunk.model
        if chunk.provider_cost is not None:
            self.provider_cost = chunk.provider_cost
        if chunk.extras:
            self.extras.update(chunk.extras)

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._choice.finish_reason

    @property
    def text(self) -> str:
        return "".join(self._choice.text)

    @property
    def reasoning(self) -> str:
        return "".join(self._choice.reasoning)

    def tool_calls(self) -> list[ToolCall]:
        return self._choice.tool_calls()

    def response(self, **fields: Any) -> ChatResponse:
        """The assembled response; ``fields`` (provider, latency, ...) are set on it too."""
        values: dict[str, Any] = {
            "id": self.id or "",
            "model": self.model or "",
            **self._choice.choice_fields(),
            "usage": self.usage or Usage(),
            "provider_cost": self.provider_cost,
            "extras": dict(self.extras),
            "other_choices": [Choice(index=index, **other.choice_fields())
                              for index, other in sorted(self._others.items())],
        }
        values.update(fields)
        return ChatResponse(**values)
