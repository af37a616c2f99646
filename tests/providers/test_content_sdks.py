"""Reasoning, thinking with tools, refusals, citations, ``n`` choices, logprobs and schema-filling
JSON: the embedded server answers like the real APIs (the official ``openai`` and ``anthropic``
SDKs read it), and our client reads the same answers into its typed content model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from pydantic import BaseModel

from llm_async import AsyncLLMClient
from llm_async.errors import AuthenticationError, BadRequestError, RefusalError
from llm_async.testing import MockProviderServer, Script
from llm_async.types import (
    Message,
    ReasoningPart,
    ServerToolCallPart,
    ServerToolResultPart,
    TextPart,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}
ANTHROPIC_WEATHER = {"name": "get_weather", "description": "The weather in a city.",
                     "input_schema": WEATHER["function"]["parameters"]}  # type: ignore[index]
THINKING = {"type": "enabled", "budget_tokens": 1024}
SOURCES = [{"url": "https://example.org/lyon", "title": "Lyon", "cited_text": "Lyon is big."},
           {"url": "https://example.org/rhone", "title": "Rhone", "cited_text": "On the Rhone."}]


class City(BaseModel):
    name: str
    population: int


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer() as srv:
        yield srv


@pytest.fixture
async def oai(server: MockProviderServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key="sk-test", base_url=server.base_url,
                                  max_retries=0) as client:
        yield client


@pytest.fixture
async def ant(server: MockProviderServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=server.url,
                                        max_retries=0) as client:
        yield client


def _client(server: MockProviderServer, provider: str) -> AsyncLLMClient:
    urls = {"openai": server.base_url, "anthropic": server.anthropic_base_url,
            "openrouter": server.openrouter_base_url}
    return AsyncLLMClient(provider, api_key="sk-test-key", base_url=urls[provider], layers=[])


USER = [{"role": "user", "content": "Tell me about Lyon."}]


# -- OpenAI: reasoning, refusals, citations, n, logprobs, JSON schema, 401 ----------------------

async def test_openai_reasoning(server: MockProviderServer, oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(model="o4-mini", messages=USER,
                                                   reasoning_effort="low")
    message = completion.choices[0].message
    sdk_reasoning = (message.model_extra or {})["reasoning_content"]
    assert sdk_reasoning.startswith("Let me think about")
    assert completion.usage is not None and completion.usage.completion_tokens_details
    assert completion.usage.completion_tokens_details.reasoning_tokens == len(
        sdk_reasoning.split())
    async with _client(server, "openai") as client:
        reply = await client.chat(model="o4-mini", messages=USER,
                                  extra_body={"reasoning_effort": "low"})
        assert reply.reasoning == sdk_reasoning and reply.text == message.content
        assert reply.usage.reasoning_tokens == len(sdk_reasoning.split())
        deltas = []
        async with client.stream(model="o4-mini", messages=USER,
                                 extra_body={"reasoning_effort": "low"}) as stream:
            async for chunk in stream:
                deltas.append(chunk.reasoning)
            final = stream.final_response
        assert "".join(deltas) == sdk_reasoning == final.reasoning
        assert final.text == reply.text
        assert isinstance(final.parts[0], ReasoningPart)


async def test_openai_refusal(server: MockProviderServer, oai: openai.AsyncOpenAI) -> None:
    server.add_script(Script(refusal="I can't help with that.", times=3))
    parsed = await oai.chat.completions.parse(model="gpt-4o", messages=USER,
                                              response_format=City)
    message = parsed.choices[0].message
    assert message.refusal == "I can't help with that." and message.parsed is None
    async with _client(server, "openai") as client:
        reply = await client.chat(model="gpt-4o", messages=USER)
        assert reply.refusal is not None and reply.refusal.text == "I can't help with that."
        assert reply.text == ""
        with pytest.raises(RefusalError) as info:
            async with client.stream(model="gpt-4o", messages=USER,
                                     response_format=City) as stream:
                async for _ in stream:
                    pass
        assert info.value.refusal == "I can't help with that."
        assert "refused" in info.value.message


async def test_openai_citations(server: MockProviderServer, oai: openai.AsyncOpenAI) -> None:
    server.add_script(Script(citations=SOURCES, times=3))
    completion = await oai.chat.completions.create(model="gpt-4o-search-preview", messages=USER)
    annotations = completion.choices[0].message.annotations or []
    assert [a.url_citation.url for a in annotations] == [s["url"] for s in SOURCES]
    async with _client(server, "openai") as client:
        reply = await client.chat(model="gpt-4o-search-preview", messages=USER)
        assert [c.url for c in reply.citations] == [s["url"] for s in SOURCES]
        assert reply.citations[0].end_index == len(reply.text)
        stream = client.stream(model="gpt-4o-search-preview", messages=USER)
        final = await stream.get_final_response()
        assert [c.title for c in final.citations] == ["Lyon", "Rhone"]
        # The reply goes back as plain text: OpenAI takes no annotations in history.
        follow = await client.chat(model="gpt-4o", messages=[*USER, reply.message,
                                                             {"role": "user", "content": "ok"}])
        assert follow.text
        assert server.requests[-1].body["messages"][1]["content"] == reply.text


async def test_openai_n_choices_and_logprobs(server: MockProviderServer,
                                             oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(model="gpt-4o", messages=USER, n=3,
                                                   logprobs=True, top_logprobs=2)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    first = completion.choices[0]
    assert first.logprobs is not None and first.logprobs.content
    assert "".join(t.token for t in first.logprobs.content) == first.message.content
    assert len(first.logprobs.content[0].top_logprobs) == 2
    async with _client(server, "openai") as client:
        reply = await client.chat(model="gpt-4o", messages=USER, n=3, logprobs=True,
                                  top_logprobs=2)
        assert [c.text for c in reply.choices] == [c.message.content for c in completion.choices]
        assert reply.text == reply.choices[0].text == first.message.content
        assert reply.logprobs is not None
        assert [t.token for t in reply.logprobs] == [t.token for t in first.logprobs.content]
        assert reply.logprobs[0].top_logprobs[0].logprob == pytest.approx(
            first.logprobs.content[0].top_logprobs[0].logprob)
        stream = client.stream(model="gpt-4o", messages=USER, n=3, logprobs=True)
        chunks = [chunk async for chunk in stream]
        final = stream.final_response
        assert {c.index for c in chunks} == {0, 1, 2}
        assert [c.text for c in final.choices] == [c.text for c in reply.choices]
        assert final.logprobs is not None and "".join(t.token for t in final.logprobs) == \
            final.text
        with pytest.raises(Exception, match="top_logprobs needs logprobs"):
            await client.chat(model="gpt-4o", messages=USER, top_logprobs=2)


async def test_openai_json_schema_is_filled(server: MockProviderServer,
                                            oai: openai.AsyncOpenAI) -> None:
    parsed = await oai.chat.completions.parse(model="gpt-4o", messages=USER,
                                              response_format=City)
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City)
    async with _client(server, "openai") as client:
        reply = await client.chat(model="gpt-4o", messages=USER, response_format=City)
        assert reply.parsed == city
        stream = client.stream(model="gpt-4o", messages=USER, response_format=City)
        assert (await stream.get_final_response()).parsed == city


async def test_openai_401_is_shaped_like_openai(server: MockProviderServer,
                                                oai: openai.AsyncOpenAI) -> None:
    server.require_api_key = "sk-the-right-key"
    with pytest.raises(openai.AuthenticationError) as info:
        await oai.chat.completions.create(model="gpt-4o", messages=USER)
    assert info.value.code == "invalid_api_key" and info.value.type == "invalid_request_error"
    async with _client(server, "openai") as client:
        with pytest.raises(AuthenticationError) as ours:
            await client.chat(model="gpt-4o", messages=USER)
    assert ours.value.status == 401 and "sk-test-key" not in repr(ours.value.body)


# -- OpenRouter: reasoning details with signatures, sent back ---------------------------------

async def test_openrouter_reasoning_details_round_trip(server: MockProviderServer) -> None:
    async with openai.AsyncOpenAI(api_key="sk-or-test", base_url=server.openrouter_base_url,
                                  max_retries=0) as sdk:
        completion = await sdk.chat.completions.create(
            model="anthropic/claude-sonnet-4", messages=USER,
            extra_body={"reasoning": {"max_tokens": 1024}})
    details = (completion.choices[0].message.model_extra or {})["reasoning_details"]
    assert details[0]["type"] == "reasoning.text" and details[0]["signature"]
    async with _client(server, "openrouter") as client:
        for streamed in (False, True):
            args: dict[str, Any] = {"model": "anthropic/claude-sonnet-4", "messages": USER,
                                    "extra_body": {"reasoning": {"max_tokens": 1024}}}
            if streamed:
                reply = await client.stream(**args).get_final_response()
            else:
                reply = await client.chat(**args)
            part = reply.parts[0]
            assert isinstance(part, ReasoningPart)
            assert part.text == details[0]["text"] and part.signature == details[0]["signature"]
            await client.chat(model="anthropic/claude-sonnet-4",
                              messages=[*USER, reply.message, {"role": "user", "content": "go"}])
            sent = server.requests[-1].body["messages"][1]
            assert sent["reasoning_details"][0]["signature"] == part.signature
            assert sent["content"] == reply.text


# -- Anthropic: thinking with tools across turns, refusals, citations and server tools --------

async def test_anthropic_thinking_tool_loop_with_the_sdk(server: MockProviderServer,
                                                          ant: anthropic.AsyncAnthropic) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Lyon?"}]
    args: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 4096,
                            "thinking": THINKING, "tools": [ANTHROPIC_WEATHER]}
    first = await ant.messages.create(messages=messages, **args)  # type: ignore[arg-type]
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    tool_use = first.content[1]
    assert tool_use.type == "tool_use"
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id,
                                           "content": "sunny"}]}
    # Without the thinking block, the next turn is refused, as Anthropic does.
    bare = {"role": "assistant", "content": [tool_use.model_dump()]}
    with pytest.raises(anthropic.BadRequestError, match="thinking"):
        await ant.messages.create(messages=[*messages, bare, result], **args)
    # With it, the loop goes on.
    messages += [{"role": "assistant", "content": first.content}, result]
    second = await ant.messages.create(messages=messages, **args)
    assert [b.type for b in second.content] == ["thinking", "text"]
    # A thinking block changed on the way back is refused (its signature no longer fits).
    forged = first.content[0].model_dump()
    forged["thinking"] += " (edited)"
    with pytest.raises(anthropic.BadRequestError, match="signature"):
        await ant.messages.create(messages=[messages[0], {"role": "assistant", "content": [
            forged, tool_use.model_dump()]}, result], **args)
    async with ant.messages.stream(messages=messages, **args) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].type == "thinking" and streamed.content[0].signature


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_anthropic_three_turn_tool_loop_with_thinking(server: MockProviderServer,
                                                            streamed: bool) -> None:
    """Three turns of a tool loop with extended thinking through our client: each reply's
    signed thinking goes back with its tool call, as Anthropic requires."""
    async with _client(server, "anthropic") as client:
        async def ask(history: list[Any]) -> Any:
            args: dict[str, Any] = {"model": "claude-sonnet-4-5", "messages": history,
                                    "tools": [WEATHER], "max_tokens": 4096,
                                    "extra_body": {"thinking": THINKING}}
            if streamed:
                return await client.stream(**args).get_final_response()
            return await client.chat(**args)

        history: list[Any] = [{"role": "user", "content": "Weather in Lyon?"}]
        turns = []
        for turn in range(3):
            reply = await ask(history)
            turns.append(reply)
            thinking = reply.reasoning_parts
            assert thinking and thinking[0].signature and reply.reasoning
            history.append(reply.message)
            if reply.tool_calls:
                call = reply.tool_calls[0]
                assert call.parsed_arguments() == {"city": call.parsed_arguments()["city"]}
                history.append({"role": "tool", "tool_call_id": call.id,
                                "content": f"sunny, turn {turn}"})
            else:
                history.append({"role": "user", "content": "And in Paris?"})
        assert [bool(r.tool_calls) for r in turns] == [True, False, True]
        sent = server.requests[-1].body["messages"]
        assert [b["type"] for b in sent[1]["content"]] == ["thinking", "tool_use"]
        assert sent[1]["content"][0]["signature"] == turns[0].reasoning_parts[0].signature
        # Dropping the thinking from the last tool turn is refused by the server.
        broken = [*history[:-2], Message(role="assistant", tool_calls=turns[2].tool_calls),
                  history[-1]]
        with pytest.raises(BadRequestError, match="thinking"):
            await ask(broken)


async def test_anthropic_redacted_thinking_round_trip(server: MockProviderServer) -> None:
    server.add_script(Script(reasoning="secret plan", redacted_reasoning=True))
    async with _client(server, "anthropic") as client:
        args: dict[str, Any] = {"model": "claude-sonnet-4-5", "tools": [WEATHER],
                                "max_tokens": 4096, "extra_body": {"thinking": THINKING}}
        reply = await client.chat(messages=USER, **args)
        part = reply.reasoning_parts[0]
        assert part.redacted and part.encrypted and reply.reasoning == ""
        call = reply.tool_calls[0]
        follow = await client.chat(messages=[*USER, reply.message, {
            "role": "tool", "tool_call_id": call.id, "content": "sunny"}], **args)
        assert follow.text
        assert server.requests[-1].body["messages"][1]["content"][0] == {
            "type": "redacted_thinking", "data": part.encrypted}


async def test_anthropic_refusal(server: MockProviderServer,
                                 ant: anthropic.AsyncAnthropic) -> None:
    server.add_script(Script(refusal="This request was refused.", refusal_category="cyber",
                             times=4))
    message = await ant.messages.create(model="claude-sonnet-4-5", max_tokens=256,
                                        messages=USER)  # type: ignore[arg-type]
    assert message.stop_reason == "refusal"
    details = message.stop_details or (message.model_extra or {}).get("stop_details")
    category = details.category if hasattr(details, "category") else details["category"]
    assert category == "cyber"
    async with _client(server, "anthropic") as client:
        for streamed in (False, True):
            args: dict[str, Any] = {"model": "claude-sonnet-4-5", "messages": USER}
            reply = (await client.stream(**args).get_final_response() if streamed
                     else await client.chat(**args))
            assert reply.finish_reason == "content_filter"
            assert reply.refusal is not None
            assert (reply.refusal.text, reply.refusal.category) == (
                "This request was refused.", "cyber")
        with pytest.raises(RefusalError) as info:
            await client.chat(model="claude-sonnet-4-5", messages=USER, response_format=City)
        assert info.value.category == "cyber"


async def test_anthropic_citations_and_server_tools(server: MockProviderServer,
                                                    ant: anthropic.AsyncAnthropic) -> None:
    server.add_script(Script(citations=SOURCES, times=5))
    message = await ant.messages.create(model="claude-sonnet-4-5", max_tokens=256,
                                        messages=USER)  # type: ignore[arg-type]
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result",
                                                 "text"]
    text = message.content[2]
    assert text.type == "text" and text.citations
    assert [c.url for c in text.citations] == [s["url"] for s in SOURCES]  # type: ignore[union-attr]
    # A history holding the server-tool blocks is accepted back.
    again = await ant.messages.create(model="claude-sonnet-4-5", max_tokens=256, messages=[
        *USER, {"role": "assistant", "content": message.content},
        {"role": "user", "content": "More?"}])  # type: ignore[list-item]
    assert again.content
    async with _client(server, "anthropic") as client:
        for streamed in (False, True):
            args: dict[str, Any] = {"model": "claude-sonnet-4-5", "messages": USER}
            reply = (await client.stream(**args).get_final_response() if streamed
                     else await client.chat(**args))
            kinds = [type(p) for p in reply.parts]
            assert kinds == [ServerToolCallPart, ServerToolResultPart, TextPart]
            call, result = reply.parts[0], reply.parts[1]
            assert isinstance(call, ServerToolCallPart) and call.name == "web_search"
            assert isinstance(result, ServerToolResultPart)
            assert result.urls == [s["url"] for s in SOURCES]
            assert [(c.url, c.cited_text) for c in reply.citations] == [
                (s["url"], s["cited_text"]) for s in SOURCES]
            assert reply.extras["server_tool_use"] == {"web_search_requests": 1}
            follow = await client.chat(model="claude-sonnet-4-5", messages=[
                *USER, reply.message, {"role": "user", "content": "More?"}])
            assert follow.text
            sent = server.requests[-1].body["messages"][1]["content"]
            assert [b["type"] for b in sent] == [b.type for b in message.content]
            assert sent[2]["citations"][0]["encrypted_index"] == \
                text.citations[0].encrypted_index  # type: ignore[union-attr]


async def test_scripts_are_programmable_over_http(server: MockProviderServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/_mock/scripts",
                                json={"refusal": "No.", "model": "gpt-4o"}) as resp:
            assert (await resp.json()) == {"added": 1, "pending": 1}
        async with session.post(f"{server.url}/_mock/scripts", json={"nope": 1}) as resp:
            assert resp.status == 400 and "nope" in (await resp.json())["error"]["message"]
    async with _client(server, "openai") as client:
        assert (await client.chat(model="gpt-4o-mini", messages=USER)).refusal is None
        refused = await client.chat(model="gpt-4o", messages=USER)
        assert refused.refusal is not None and refused.refusal.text == "No."
        assert (await client.chat(model="gpt-4o", messages=USER)).refusal is None
