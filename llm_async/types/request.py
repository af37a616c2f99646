"""The request: :class:`ChatRequest`, its metadata and timeouts, and :func:`build_request`,
which validates keyword fields into one (by hand on the common path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InvalidRequestError
from ._base import _Model, trusted_instance
from .content import Message
from .tools import Tool

__all__ = ["ChatRequest", "RequestMetadata", "Timeout", "_simple_request", "build_request"]


class RequestMetadata(BaseModel):
    """Who a call is for: used for cost attribution, budgets and cache namespacing."""

    model_config = ConfigDict(extra="allow")

    user_id: str | None = None
    project_id: str | None = None

    def extra_value(self, name: str) -> Any:
        """The value of an extra field (``tenant_id``, ``conversation_id``, ...), or ``None``
        (without the cost of a failed attribute lookup)."""
        extra = self.__pydantic_extra__
        return extra.get(name) if extra else None


def _no_metadata() -> RequestMetadata:
    """``RequestMetadata()`` without validating its defaults (the default of every request)."""
    return trusted_instance(RequestMetadata, {"user_id": None, "project_id": None}, set(), {})


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
    metadata: RequestMetadata = Field(default_factory=_no_metadata)
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


def _text_message(role: str, content: str) -> Message:
    """``Message.model_construct(role=role, content=content)`` on the hot path."""
    data = _MESSAGE_DEFAULTS.copy()
    data["role"] = role
    data["content"] = content
    return trusted_instance(Message, data, {"role", "content"})


_MESSAGE_DEFAULTS: dict[str, Any] = {name: None for name in Message.model_fields}


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
        built.append(_text_message(role, content))
    # ChatRequest.model_construct(**fields), with the messages built, done directly: every
    # field in order from the template, the given ones over it, fresh defaults for the rest.
    data = _REQUEST_TEMPLATE.copy()
    data.update(fields)
    data["messages"] = built
    if temperature is not None:
        data["temperature"] = float(temperature)
    if top_p is not None:
        data["top_p"] = float(top_p)
    data["metadata"] = _no_metadata()
    data["extra_body"] = {}
    data["extra_headers"] = {}
    data["options"] = {}
    return trusted_instance(ChatRequest, data, set(fields))


#: Every field of ChatRequest in order, at its default (the required ones at None).
_REQUEST_TEMPLATE: dict[str, Any] = {
    name: None if info.is_required() or info.default_factory is not None else info.default
    for name, info in ChatRequest.model_fields.items()}


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

