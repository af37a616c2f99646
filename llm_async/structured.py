"""Structured output: ask for JSON that fits a schema, get a parsed object back.

``response_format`` on a request is one of

* a pydantic model class — the reply is validated into an instance of it;
* ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}`` — the reply is
  parsed as JSON and validated against the schema (the parsed value is a plain ``dict``/``list``);
* ``{"type": "json_object"}`` — the reply must be a JSON object;
* ``{"type": "text"}`` — no structure (nothing is parsed).

Each transport asks its provider for the structure in the provider's own way: OpenAI and
OpenRouter send ``response_format``; Anthropic has no such field, so its transport offers one
extra tool whose ``input_schema`` is the schema and forces the model to call it, then hands the
tool's input back as the reply's text. Whatever the provider, the client then runs
:func:`apply_structured_output` on the final answer (``chat`` and the end of a stream): the
value lands on ``response.parsed``, a reply in which the model refused raises
:class:`~llm_async.errors.RefusalError` (a :class:`~llm_async.errors.StructuredOutputError`
that says so), and a reply that is not JSON or does not validate raises
:class:`~llm_async.errors.StructuredOutputError`, whose ``raw_text`` keeps the reply.

JSON-schema validation is done by the ``jsonschema`` package (a dependency of the library), with
the validator of the schema's ``$schema`` dialect (Draft 2020-12 when it names none), so a reply
is judged the same way on every installation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from . import _json
from .errors import InvalidRequestError, RefusalError, StructuredOutputError
from .types import ChatRequest, ChatResponse

__all__ = [
    "DEFAULT_OUTPUT_NAME",
    "OutputSchema",
    "apply_structured_output",
    "output_schema",
    "parse_structured_output",
    "validate_json_schema",
]

#: The schema name used when the caller gives none.
DEFAULT_OUTPUT_NAME = "json_response"

_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]+")
_FENCE_RE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n(.*)\n\s*```$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """What a ``response_format`` asks for, in a provider-neutral form.

    ``schema`` is the JSON schema (``None`` for ``json_object``: any JSON object), ``model`` the
    pydantic class when one was given, ``name`` a tool-safe identifier
    (``^[a-zA-Z0-9_-]{1,64}$``).
    """

    name: str
    schema: dict[str, Any] | None
    model: type[BaseModel] | None = None
    description: str | None = None
    strict: bool | None = None

    @property
    def is_object(self) -> bool:
        """Whether the top level of the schema is a JSON object (tool inputs must be)."""
        if self.schema is None:
            return True
        kind = self.schema.get("type")
        return kind == "object" or (kind is None and "properties" in self.schema)

    def tool_input_schema(self) -> dict[str, Any]:
        """A schema usable as a tool's input: the schema itself when it describes an object,
        else an object with a single ``value`` property holding it."""
        if self.schema is None:
            return {"type": "object", "additionalProperties": True}
        if self.is_object:
            return self.schema
        return {"type": "object", "properties": {"value": self.schema}, "required": ["value"]}

    def tool_output_text(self, value: Any, text: str) -> str:
        """The answer's JSON text from the forced tool's input (``value``, whose JSON is
        ``text``): the input itself for an object schema, else what its ``value`` envelope
        holds (the inverse of :meth:`tool_input_schema`)."""
        if self.is_object:
            return text
        if isinstance(value, Mapping) and "value" in value:
            return _json.dumps(value["value"]).decode()
        return text


def _tool_name(name: str | None) -> str:
    cleaned = _NAME_RE.sub("_", name or "").strip("_")[:64]
    return cleaned or DEFAULT_OUTPUT_NAME


def output_schema(response_format: Any) -> OutputSchema | None:
    """The :class:`OutputSchema` of a ``response_format``; ``None`` for none or ``text``.

    Raises :class:`~llm_async.errors.InvalidRequestError` for a malformed ``response_format``.
    """
    if response_format is None:
        return None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        doc = (response_format.__doc__ or "").strip() or None
        return OutputSchema(name=_tool_name(response_format.__name__),
                            schema=response_format.model_json_schema(), model=response_format,
                            description=doc)
    if not isinstance(response_format, Mapping):
        raise InvalidRequestError("response_format must be a pydantic model class or a dict",
                                  field="response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputSchema(name=DEFAULT_OUTPUT_NAME, schema=None)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping):
            raise InvalidRequestError("response_format json_schema needs a 'json_schema' object",
                                      field="response_format.json_schema")
        schema = spec.get("schema")
        if schema is None:
            schema = {}
        if not isinstance(schema, dict):
            raise InvalidRequestError("response_format json_schema.schema must be an object",
                                      field="response_format.json_schema.schema")
        description = spec.get("description")
        strict = spec.get("strict")
        return OutputSchema(name=_tool_name(spec.get("name")), schema=schema,
                            description=str(description) if description else None,
                            strict=bool(strict) if strict is not None else None)
    raise InvalidRequestError(
        "response_format type must be 'text', 'json_object' or 'json_schema'",
        field="response_format.type")


def _strip_fence(text: str) -> str:
    """Drop one Markdown code fence around the JSON (some models add it without being asked)."""
    stripped = text.strip()
    match = _FENCE_RE.match(stripped)
    return match.group(1).strip() if match else stripped


def parse_structured_output(text: str | None, response_format: Any, *,
                            truncated: bool = False) -> Any:
    """Parse ``text`` as ``response_format`` asks: a model instance, or validated JSON.

    Returns ``None`` when ``response_format`` asks for no structure. Raises
    :class:`~llm_async.errors.StructuredOutputError` (with ``raw_text``) when ``text`` is not
    JSON or does not validate; ``truncated`` (the reply hit ``max_tokens``) is named in the message.
    """
    spec = output_schema(response_format)
    if spec is None:
        return None
    raw = text or ""
    hint = " (the reply was cut at max_tokens)" if truncated else ""
    body = _strip_fence(raw)
    if spec.model is not None:
        try:
            return spec.model.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise StructuredOutputError(
                f"reply does not validate as {spec.model.__name__}{hint}: {where}: "
                f"{first['msg']}", raw_text=raw) from exc
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise StructuredOutputError(f"reply is not JSON{hint}: {exc}", raw_text=raw) from exc
    if spec.schema is None:
        if not isinstance(value, dict):
            raise StructuredOutputError("reply is JSON but not an object", raw_text=raw)
        return value
    problem = validate_json_schema(value, spec.schema)
    if problem is not None:
        raise StructuredOutputError(f"reply does not match schema {spec.name!r}{hint}: {problem}",
                                    raw_text=raw)
    return value


def apply_structured_output(response: ChatResponse, request: ChatRequest) -> ChatResponse:
    """Set ``response.parsed`` from its text when ``request`` asks for structured output.

    A reply that called tools instead of answering is left alone (there is nothing to parse).
    A reply in which the model refused (``response.refusal``) raises
    :class:`~llm_async.errors.RefusalError` with the refusal's words and category; a reply that
    does not validate raises :class:`~llm_async.errors.StructuredOutputError`. Both name the
    provider and the request id.
    """
    if request.response_format is None:
        return response
    refusal = response.refusal
    if refusal is not None:
        said = f": {refusal.text}" if refusal.text else ""
        why = f" (category {refusal.category})" if refusal.category else ""
        raise RefusalError(f"the model refused to answer{why}{said}", refusal=refusal.text,
                           category=refusal.category, raw_text=response.content or "",
                           provider=response.provider or request.provider,
                           request_id=response.request_id)
    if response.tool_calls and not response.content:
        return response
    try:
        response.parsed = parse_structured_output(
            response.content, request.response_format,
            truncated=response.finish_reason == "length")
    except StructuredOutputError as exc:
        exc.provider = response.provider or request.provider
        exc.request_id = response.request_id
        raise
    return response


# -- JSON-schema validation -----------------------------------------------------------------

def validate_json_schema(value: Any, schema: Mapping[str, Any]) -> str | None:
    """``None`` when ``value`` matches ``schema``, else a short description of the first problem
    (its JSON path and what is wrong), as judged by ``jsonschema``."""
    import jsonschema  # imported on first use: ``import llm_async`` stays light

    document: Any = dict(schema) if isinstance(schema, Mapping) else schema  # or a bool schema
    cls = jsonschema.validators.validator_for(document)
    try:
        cls.check_schema(document)
    except jsonschema.exceptions.SchemaError as exc:
        return f"the schema itself is invalid: {exc.message}"
    error = jsonschema.exceptions.best_match(cls(document).iter_errors(value))
    if error is None:
        return None
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{path}: {error.message}"
