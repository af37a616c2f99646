"""Structured output: schema extraction, parsing, validation (jsonschema and the built-in
checker), and the client hook for ``chat`` and streams."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pydantic import BaseModel, Field

from llm_async import AsyncLLMClient, ChatResponse
from llm_async.errors import InvalidRequestError, StructuredOutputError
from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply, tool_call
from llm_async.structured import (
    OutputSchema,
    apply_structured_output,
    output_schema,
    parse_structured_output,
    validate_json_schema,
)
from llm_async.types import build_request


class Point(BaseModel):
    """A point on the plane."""

    x: int
    y: int = Field(ge=0)


def test_output_schema_of_a_model() -> None:
    spec = output_schema(Point)
    assert spec is not None
    assert (spec.name, spec.model, spec.description) == ("Point", Point, "A point on the plane.")
    assert spec.schema == Point.model_json_schema()
    assert spec.is_object and spec.tool_input_schema() == spec.schema


def test_output_schema_of_dicts() -> None:
    assert output_schema(None) is None
    assert output_schema({"type": "text"}) is None
    obj = output_schema({"type": "json_object"})
    assert obj == OutputSchema(name="json_response", schema=None)
    assert obj.tool_input_schema() == {"type": "object", "additionalProperties": True}
    spec = output_schema({"type": "json_schema", "json_schema": {
        "name": "my schema! v2", "strict": True, "schema": {"type": "array"}}})
    assert spec is not None
    assert (spec.name, spec.strict, spec.is_object) == ("my_schema_v2", True, False)
    assert spec.tool_input_schema() == {"type": "object", "properties": {
        "value": {"type": "array"}}, "required": ["value"]}
    unnamed = output_schema({"type": "json_schema", "json_schema": {"schema": {}}})
    assert unnamed is not None and unnamed.name == "json_response"


@pytest.mark.parametrize("bad", [
    {"type": "xml"},
    {"type": "json_schema"},
    {"type": "json_schema", "json_schema": {"schema": ["not", "an", "object"]}},
    "json",
])
def test_malformed_response_format(bad: Any) -> None:
    with pytest.raises(InvalidRequestError):
        output_schema(bad)


def test_parse_into_a_model() -> None:
    assert parse_structured_output('{"x": 1, "y": 2}', Point) == Point(x=1, y=2)
    fenced = '```json\n{"x": 1, "y": 2}\n```'
    assert parse_structured_output(fenced, Point) == Point(x=1, y=2)
    assert parse_structured_output("anything", {"type": "text"}) is None


@pytest.mark.parametrize(("text", "fmt", "words"), [
    ("not json", Point, "does not validate as Point"),
    ('{"x": 1, "y": -1}', Point, "y"),
    ('{"x": 1', {"type": "json_object"}, "not JSON"),
    ("[1, 2]", {"type": "json_object"}, "not an object"),
    ('{"x": "1"}', {"type": "json_schema", "json_schema": {"name": "p", "schema": {
        "type": "object", "properties": {"x": {"type": "integer"}}}}}, "$.x"),
    ("", Point, "Point"),
])
def test_parse_failures_keep_the_raw_text(text: str, fmt: Any, words: str) -> None:
    with pytest.raises(StructuredOutputError) as caught:
        parse_structured_output(text, fmt)
    assert caught.value.raw_text == text
    assert words in caught.value.message


def test_truncation_is_named() -> None:
    with pytest.raises(StructuredOutputError, match="cut at max_tokens"):
        parse_structured_output('{"x": 1, "y"', Point, truncated=True)


# -- JSON-schema validation: jsonschema, whatever else is installed ------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
        "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
        "kind": {"enum": ["a", "b"]},
        "fixed": {"const": 1},
        "ref": {"$ref": "#/$defs/Inner"},
        "either": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "one": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]},
        "all": {"allOf": [{"type": "number"}, {"maximum": 3}]},
    },
    "required": ["name"],
    "additionalProperties": False,
    "$defs": {"Inner": {"type": "object", "properties": {"v": {"type": "boolean"}},
                        "required": ["v"]}},
}

CASES: list[tuple[str, Any, bool]] = [
    ("minimal", {"name": "ann"}, True),
    ("full", {"name": "bob", "age": 30, "tags": ["x"], "kind": "a", "fixed": 1,
              "ref": {"v": True}, "either": None, "one": 3, "all": 2.5}, True),
    ("integer-valued float", {"name": "ann", "age": 3.0}, True),
    ("missing required", {"age": 3}, False),
    ("wrong type", {"name": 3}, False),
    ("bool is not an integer", {"name": "ann", "age": True}, False),
    ("extra property", {"name": "ann", "other": 1}, False),
    ("too short", {"name": ""}, False),
    ("too long", {"name": "abcdef"}, False),
    ("pattern", {"name": "ABC"}, False),
    ("below minimum", {"name": "ann", "age": -1}, False),
    ("exclusive maximum", {"name": "ann", "age": 150}, False),
    ("too few items", {"name": "ann", "tags": []}, False),
    ("too many items", {"name": "ann", "tags": ["a", "b", "c"]}, False),
    ("item type", {"name": "ann", "tags": [1]}, False),
    ("enum", {"name": "ann", "kind": "c"}, False),
    ("const", {"name": "ann", "fixed": 2}, False),
    ("ref", {"name": "ann", "ref": {}}, False),
    ("anyOf", {"name": "ann", "either": 1}, False),
    ("oneOf matches two", {"name": "ann", "one": 12}, False),
    ("allOf", {"name": "ann", "all": 4}, False),
    ("not an object", [1], False),
]


@pytest.mark.parametrize(("value", "ok"), [(v, ok) for _, v, ok in CASES],
                         ids=[name for name, _, _ in CASES])
def test_json_schema_validation(value: Any, ok: bool) -> None:
    problem = validate_json_schema(value, SCHEMA)
    assert (problem is None) is ok, problem


def test_validation_names_the_path() -> None:
    problem = validate_json_schema({"name": "ann", "tags": ["a", 2]}, SCHEMA)
    assert problem is not None and problem.startswith("$.tags[1]")
    assert validate_json_schema(1, {"type": "object"}) is not None
    assert validate_json_schema(1, False) is not None  # type: ignore[arg-type]


def test_keywords_of_the_full_specification_are_enforced() -> None:
    """``multipleOf``, ``uniqueItems``, ``propertyNames``, ``dependentRequired``: the whole of
    JSON Schema, not a subset, so a reply is judged the same on every installation."""
    assert validate_json_schema(6, {"multipleOf": 2}) is None
    assert validate_json_schema(7, {"multipleOf": 2}) is not None
    assert validate_json_schema([1, 1], {"uniqueItems": True}) is not None
    assert validate_json_schema({"Bad": 1}, {"propertyNames": {"pattern": "^[a-z]+$"}}) \
        is not None
    assert validate_json_schema({"card": 1}, {"dependentRequired": {"card": ["billing"]}}) \
        is not None


def test_jsonschema_reports_an_invalid_schema() -> None:
    problem = validate_json_schema({}, {"type": "no-such-type"})
    assert problem is not None and "schema itself is invalid" in problem


def test_validation_does_not_depend_on_the_import_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``jsonschema`` unimportable the validator fails loudly; it never falls back to a
    weaker checker that would accept what jsonschema rejects."""
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(ImportError):
        validate_json_schema(7, {"multipleOf": 2})


# -- apply_structured_output and the client hook ------------------------------------------------


def test_apply_leaves_tool_calls_alone() -> None:
    request = build_request(model="m", messages=[{"role": "user", "content": "hi"}],
                            response_format=Point)
    response = ChatResponse(tool_calls=[tool_call("f")], finish_reason="tool_calls")
    assert apply_structured_output(response, request).parsed is None


def test_apply_names_provider_and_request_id() -> None:
    request = build_request(model="m", provider="openai", response_format=Point,
                            messages=[{"role": "user", "content": "hi"}])
    response = ChatResponse(content="nope", provider="openai", request_id="req_1")
    with pytest.raises(StructuredOutputError) as caught:
        apply_structured_output(response, request)
    assert (caught.value.provider, caught.value.request_id) == ("openai", "req_1")


async def test_client_parses_chat_and_stream() -> None:
    transport = MockLLMTransport(responses=['{"x": 3, "y": 4}', '{"x": 5, "y": 6}',
                                            '{"x": 1, "y": -2}', '{"x": 1, "y": -3}'])
    async with AsyncLLMClient("mock", transport=transport, layers=[]) as client:
        messages = [{"role": "user", "content": "a point please"}]
        reply = await client.chat(model="m", messages=messages, response_format=Point)
        assert reply.parsed == Point(x=3, y=4)

        stream = client.stream(model="m", messages=messages, response_format=Point)
        final = await stream.get_final_response()
        assert final.parsed == Point(x=5, y=6)

        with pytest.raises(StructuredOutputError) as caught:
            await client.chat(model="m", messages=messages, response_format=Point)
        assert caught.value.raw_text == '{"x": 1, "y": -2}'

        failing = client.stream(model="m", messages=messages, response_format=Point)
        with pytest.raises(StructuredOutputError):
            async for _ in failing:
                pass
        # The stream still finished: its assembled answer is there, unparsed.
        assert failing.final_response is not None
        assert failing.final_response.text == '{"x": 1, "y": -3}'
        assert failing.final_response.parsed is None


async def test_no_response_format_means_no_parsing() -> None:
    transport = MockLLMTransport(responses=[MockReply(text="plain words")])
    async with AsyncLLMClient("mock", transport=transport, layers=[]) as client:
        reply = await client.chat(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.parsed is None and reply.text == "plain words"
