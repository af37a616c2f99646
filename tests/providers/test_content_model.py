"""The typed content model: parts in and out, truncated tool calls, tolerant stream ends and
strict stream cuts, provider extras on chunks."""

from __future__ import annotations

from typing import Any

import pytest

from llm_async import AsyncLLMClient
from llm_async.errors import APIConnectionError, StreamError, ToolArgumentsError
from llm_async.infrastructure.sse import SSEEvent
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.testing import Fault, MockProviderServer
from llm_async.types import (
    ChatChunk,
    ChatResponse,
    Citation,
    FunctionCall,
    Message,
    ProviderBlockPart,
    ReasoningPart,
    ServerToolCallPart,
    StreamAssembler,
    TextPart,
    ToolCall,
    ToolCallDelta,
    build_request,
)

REQUEST = build_request(model="m", messages=[{"role": "user", "content": "hi"}])


def test_a_cut_tool_call_is_marked_and_its_arguments_raise_a_typed_error() -> None:
    assembler = StreamAssembler()
    assembler.add(ChatChunk(tool_calls=[ToolCallDelta(index=0, id="c1", name="make_file",
                                                      arguments='{"lines": ["a", "b')]))
    assembler.add(ChatChunk(finish_reason="length"))
    call = assembler.response().tool_calls[0]
    assert call.incomplete
    with pytest.raises(ToolArgumentsError) as info:
        call.parsed_arguments()
    assert isinstance(info.value, ValueError)
    assert info.value.raw_text == '{"lines": ["a", "b' and info.value.tool_name == "make_file"
    assert "cut at max_tokens" in info.value.message
    whole = ToolCall(id="c2", function=FunctionCall(name="f", arguments='{"a": 1}'))
    assert whole.parsed_arguments() == {"a": 1} and not whole.incomplete
    with pytest.raises(ToolArgumentsError):
        ToolCall(id="c3", function=FunctionCall(name="f", arguments="{oops")).parsed_arguments()


def test_parts_validate_from_dicts_and_round_trip_as_json() -> None:
    message = Message.model_validate({"role": "assistant", "content": [
        {"type": "reasoning", "text": "hmm", "signature": "sig"},
        {"type": "server_tool_call", "id": "s1", "name": "web_search", "input": {"q": "x"}},
        {"type": "text", "text": "Yes.", "citations": [{"type": "url_citation",
                                                        "url": "https://example.org"}]},
        {"type": "provider_block", "provider": "anthropic", "block": {"type": "compaction"}},
    ]})
    assert [type(p) for p in message.content or ()] == [
        ReasoningPart, ServerToolCallPart, TextPart, ProviderBlockPart]
    assert message.text == "Yes."
    response = ChatResponse(content="Yes.", parts=list(message.content or ()))
    again = ChatResponse.model_validate_json(response.model_dump_json())
    assert again.parts == response.parts and again.reasoning == "hmm"
    assert again.citations == [Citation(url="https://example.org")]
    assert again.message.content == response.parts


def test_non_stream_list_content_is_parsed() -> None:
    transport = OpenAITransport(api_key="k", base_url="http://127.0.0.1:9")
    response = transport.parse_response({"id": "x", "model": "magistral", "choices": [{
        "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": [
            {"type": "thinking", "thinking": [{"type": "text", "text": "Think."}]},
            {"type": "text", "text": "Answer."}]}}]}, REQUEST)
    assert (response.text, response.reasoning) == ("Answer.", "Think.")
    assert [type(p) for p in response.parts] == [ReasoningPart, TextPart]


def test_provider_fields_land_in_extras_on_responses_and_chunks() -> None:
    transport = OpenAITransport(api_key="k", base_url="http://127.0.0.1:9")
    filters = {"hate": {"filtered": False, "severity": "safe"}}
    response = transport.parse_response({"id": "x", "model": "m", "prompt_filter_results": [
        {"prompt_index": 0}], "choices": [{"index": 0, "finish_reason": "stop",
                                           "content_filter_results": filters,
                                           "message": {"role": "assistant", "content": "hi"}}]},
                                         REQUEST)
    assert response.extras == {"prompt_filter_results": [{"prompt_index": 0}],
                               "content_filter_results": filters}
    parser = transport.stream_parser(REQUEST)
    assert parser.feed(SSEEvent("message", b'{"choices":[],"prompt_filter_results":[1]}')) == []
    chunks = parser.feed(SSEEvent("message", (
        b'{"id":"x","choices":[{"index":0,"delta":{"content":"hi"},'
        b'"content_filter_results":{"hate":{"filtered":false}}}]}')))
    assert chunks[0].extras == {"prompt_filter_results": [1],
                                "content_filter_results": {"hate": {"filtered": False}}}


def _anthropic_events(*events: dict[str, Any]) -> list[SSEEvent]:
    import json

    return [SSEEvent(event=e["type"], data=json.dumps(e).encode()) for e in events]


def test_anthropic_stream_complete_without_message_stop_but_not_before_its_stop() -> None:
    transport = AnthropicTransport(api_key="k", base_url="http://127.0.0.1:9")
    start = {"type": "message_start", "message": {"id": "m1", "model": "claude",
                                                  "usage": {"input_tokens": 3}}}
    block = {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}}
    delta = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "Hi"}}
    stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 1}}
    cut = transport.stream_parser(REQUEST)
    for event in _anthropic_events(start, block, delta):
        cut.feed(event)
    assert cut.end() is None  # cut before the stop reason: incomplete
    whole = transport.stream_parser(REQUEST)
    for event in _anthropic_events(start, block, delta, stop):
        whole.feed(event)
    final = whole.end()
    assert final is not None and final[0].finish_reason == "stop"
    assert final[0].usage is not None and final[0].usage.output_tokens == 1


def test_openai_stream_is_complete_after_every_choice_finished() -> None:
    parser = OpenAITransport(api_key="k", base_url="http://127.0.0.1:9").stream_parser(REQUEST)
    parser.feed(SSEEvent("message", b'{"choices":[{"index":0,"delta":{"content":"a"}},'
                              b'{"index":1,"delta":{"content":"b"}}]}'))
    parser.feed(SSEEvent("message", b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'))
    assert parser.end() is None  # choice 1 has not finished
    parser.feed(SSEEvent("message", b'{"choices":[{"index":1,"delta":{},"finish_reason":"stop"}]}'))
    assert parser.end() == []


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_cut_before_its_finish_is_a_typed_error(mock_server: MockProviderServer,
                                                               provider: str) -> None:
    base = mock_server.base_url if provider == "openai" else mock_server.anthropic_base_url
    async with AsyncLLMClient(provider, api_key="k", base_url=base, layers=[]) as client:
        mock_server.add_fault(Fault(cut_after=2))
        with pytest.raises(StreamError) as info:
            async for _ in client.stream(model="m", messages=[{"role": "user",
                                                                "content": "hi"}]):
                pass
        assert isinstance(info.value.cause, APIConnectionError)
        mock_server.add_fault(Fault(cut_after=0))
        with pytest.raises((StreamError, APIConnectionError)):
            async for _ in client.stream(model="m", messages=[{"role": "user",
                                                                "content": "hi"}]):
                pass


def test_reasoning_without_a_signature_is_not_sent_to_anthropic() -> None:
    transport = AnthropicTransport(api_key="k", base_url="http://127.0.0.1:9")
    request = build_request(model="claude", messages=[
        {"role": "user", "content": "hi"},
        Message(role="assistant", content=[ReasoningPart(text="from deepseek"),
                                           ReasoningPart(text="signed", signature="s"),
                                           TextPart(text="Hello")]),
        {"role": "user", "content": "again"}])
    body = transport.build_payload(request, stream=False)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "signed", "signature": "s"},
        {"type": "text", "text": "Hello"}]
    openai_body = OpenAITransport(api_key="k", base_url="http://127.0.0.1:9").build_payload(
        request, stream=False)
    assert openai_body["messages"][1] == {"role": "assistant", "content": "Hello"}


def test_anthropic_rejects_options_it_does_not_have() -> None:
    transport = AnthropicTransport(api_key="k", base_url="http://127.0.0.1:9")
    for option in ({"n": 2}, {"logprobs": True}):
        request = build_request(model="claude", messages=[{"role": "user", "content": "hi"}],
                                **option)
        with pytest.raises(Exception, match=f"does not support {next(iter(option))}"):
            transport.build_payload(request, stream=False)


def test_a_cached_answer_replays_its_reasoning_blocks_refusal_and_extras() -> None:
    from llm_async.optimization.cache import replay_chunks
    from llm_async.types import Refusal, Usage

    stored = ChatResponse(
        id="r1", model="claude", content="Yes.", finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=4),
        parts=[ReasoningPart(text="hmm", signature="sig"),
               TextPart(text="Yes.", citations=[Citation(url="https://example.org")])],
        refusal=Refusal(text="", category="cyber"), extras={"service_tier": "standard"})
    assembler = StreamAssembler()
    for chunk in replay_chunks(stored):
        assembler.add(chunk)
    replayed = assembler.response()
    assert replayed.parts == stored.parts and replayed.reasoning == "hmm"
    assert replayed.refusal == stored.refusal and replayed.extras == stored.extras
    assert (replayed.text, replayed.usage) == (stored.text, stored.usage)


async def test_text_stream_follows_the_first_choice(mock_server: MockProviderServer) -> None:
    async with AsyncLLMClient("openai", api_key="k", base_url=mock_server.base_url,
                              layers=[]) as client:
        stream = client.stream(model="m", n=3, messages=[{"role": "user", "content": "hi"}])
        text = "".join([piece async for piece in stream.text_stream()])
        final = stream.final_response
        assert final is not None and len(final.choices) == 3
        assert text == final.text != final.choices[1].text


def test_an_anthropic_block_of_another_kind_is_kept_whole_with_its_deltas() -> None:
    transport = AnthropicTransport(api_key="k", base_url="http://127.0.0.1:9")
    parser = transport.stream_parser(REQUEST)
    events = _anthropic_events(
        {"type": "message_start", "message": {"id": "m", "model": "claude",
                                              "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "compaction", "content": None, "encrypted_content": None}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "compaction_delta", "content": "Summary.",
                   "encrypted_content": "opaque"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "text_delta", "text": "Hello"}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
         "usage": {"output_tokens": 2}},
        {"type": "message_stop"})
    assembler = StreamAssembler()
    for event in events:
        for chunk in parser.feed(event):
            assembler.add(chunk)
    response = assembler.response()
    block = response.parts[0]
    assert isinstance(block, ProviderBlockPart) and block.block == {
        "type": "compaction", "content": "Summary.", "encrypted_content": "opaque"}
    assert response.text == "Hello" and isinstance(response.parts[1], TextPart)
    sent = transport.build_payload(build_request(model="claude", messages=[
        {"role": "user", "content": "hi"}, response.message,
        {"role": "user", "content": "more"}]), stream=False)
    assert sent["messages"][1]["content"][0] == block.block


def test_a_refusal_goes_back_in_the_conversation_as_what_the_model_said() -> None:
    from llm_async.types import Refusal

    refused = ChatResponse(content=None, refusal=Refusal(text="No.", category="cyber"))
    assert refused.message.content == "No." and refused.choices[0].message.content == "No."
    silent = ChatResponse(content=None, refusal=Refusal(text=""))
    assert silent.message.content == ""


def _interleaved() -> list[dict[str, Any]]:
    return [
        {"type": "thinking", "thinking": "first", "signature": "s1"},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
        {"type": "thinking", "thinking": "second", "signature": "s2"},
        {"type": "tool_use", "id": "t2", "name": "g", "input": {"b": 2}},
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
def test_interleaved_thinking_goes_back_in_its_order(streamed: bool) -> None:
    import json

    transport = AnthropicTransport(api_key="k", base_url="http://127.0.0.1:9")
    blocks = _interleaved()
    if streamed:
        events: list[dict[str, Any]] = [{"type": "message_start", "message": {"id": "m"}}]
        for index, block in enumerate(blocks):
            if block["type"] == "thinking":
                events += [{"type": "content_block_start", "index": index,
                            "content_block": {"type": "thinking", "thinking": "",
                                              "signature": ""}},
                           {"type": "content_block_delta", "index": index, "delta": {
                               "type": "thinking_delta", "thinking": block["thinking"]}},
                           {"type": "content_block_delta", "index": index, "delta": {
                               "type": "signature_delta", "signature": block["signature"]}}]
            else:
                events += [{"type": "content_block_start", "index": index,
                            "content_block": {**block, "input": {}}},
                           {"type": "content_block_delta", "index": index, "delta": {
                               "type": "input_json_delta",
                               "partial_json": json.dumps(block["input"])}}]
            events.append({"type": "content_block_stop", "index": index})
        events += [{"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
                   {"type": "message_stop"}]
        parser = transport.stream_parser(REQUEST)
        assembler = StreamAssembler()
        for event in _anthropic_events(*events):
            for chunk in parser.feed(event):
                assembler.add(chunk)
        response = assembler.response()
    else:
        response = transport.parse_response({"id": "m", "content": blocks,
                                             "stop_reason": "tool_use"}, REQUEST)
    assert [c.id for c in response.tool_calls] == ["t1", "t2"]
    assert response.reasoning == "firstsecond"
    sent = transport.build_payload(build_request(model="claude", messages=[
        {"role": "user", "content": "hi"}, response.message,
        {"role": "tool", "tool_call_id": "t1", "content": "1"},
        {"role": "tool", "tool_call_id": "t2", "content": "2"}]), stream=False)
    assert sent["messages"][1]["content"] == blocks
    # Not interleaved: the thinking alone is kept in parts, the call comes from tool_calls.
    plain = transport.parse_response({"id": "m", "content": blocks[:2],
                                      "stop_reason": "tool_use"}, REQUEST)
    assert [type(p) for p in plain.parts] == [ReasoningPart]
