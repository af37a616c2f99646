"""Golden bills: real-shaped usage payloads from each provider, read by the real transports
(over aioresponses), billed by the cost layer, compared with bills worked out by hand from the
catalogue's prices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from aioresponses import aioresponses

from llm_async import AsyncLLMClient
from llm_async.application.cost_manager import CostLayer, CostManager
from llm_async.infrastructure.transports.anthropic_transport import AnthropicTransport
from llm_async.infrastructure.transports.openai_transport import OpenAITransport
from llm_async.infrastructure.transports.openrouter_transport import OpenRouterTransport

OPENAI = "https://api.openai.com/v1/chat/completions"
ANTHROPIC = "https://api.anthropic.com/v1/messages"
OPENROUTER = "https://openrouter.ai/api/v1/chat/completions"
HI = [{"role": "user", "content": "Summarise the attached report."}]


def openai_body(model: str, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "Here is the summary.",
                                 "refusal": None, "annotations": []}}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_fc9f1d7035",
        **extra,
    }


def sse_lines(*objects: Any) -> bytes:
    return "".join(f"data: {json.dumps(o)}\n\n" for o in objects).encode() + b"data: [DONE]\n\n"


def sse_events(*events: tuple[str, Any]) -> bytes:
    return "".join(f"event: {n}\ndata: {json.dumps(d)}\n\n" for n, d in events).encode()


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture
def manager() -> CostManager:
    return CostManager()


def client_for(provider: str, transport: Any, manager: CostManager) -> AsyncLLMClient:
    return AsyncLLMClient(provider, transport=transport,
                          layers=[lambda inner: CostLayer(inner, manager)])


# -- OpenAI -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "usage", "bill"),
    [
        # gpt-4o, 1920 of 2006 prompt tokens read from the prompt cache:
        # 86 × $2.50 + 1920 × $1.25 + 300 × $10.00 per million.
        ("gpt-4o-2024-08-06",
         {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
          "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
          "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                        "accepted_prediction_tokens": 0,
                                        "rejected_prediction_tokens": 0}},
         Decimal("0.005615")),
        # o4-mini with cache and reasoning: 904 × $1.10 + 4096 × $0.275 + 800 × $4.40
        # (the 640 reasoning tokens are part of the 800 output tokens, at the output price).
        ("o4-mini-2025-04-16",
         {"prompt_tokens": 5000, "completion_tokens": 800, "total_tokens": 5800,
          "prompt_tokens_details": {"cached_tokens": 4096, "audio_tokens": 0},
          "completion_tokens_details": {"reasoning_tokens": 640, "audio_tokens": 0,
                                        "accepted_prediction_tokens": 0,
                                        "rejected_prediction_tokens": 0}},
         Decimal("0.0056408")),
        # o3, no cache, mostly reasoning: 1200 × $2 + 2500 × $8.
        ("o3",
         {"prompt_tokens": 1200, "completion_tokens": 2500, "total_tokens": 3700,
          "prompt_tokens_details": {"cached_tokens": 0},
          "completion_tokens_details": {"reasoning_tokens": 2200}},
         Decimal("0.0224")),
    ],
)
async def test_openai_unary_bills(mocked: aioresponses, manager: CostManager, model: str,
                                  usage: dict[str, Any], bill: Decimal) -> None:
    mocked.post(OPENAI, payload=openai_body(model, usage))
    async with client_for("openai", OpenAITransport("sk-golden-test-key"), manager) as client:
        reply = await client.chat(model=model.split("-2025")[0].split("-2024")[0], messages=HI)
    assert reply.cost == bill
    assert reply.cost_estimated is False
    record = manager.recent_records(1)[0]
    assert record.cost == record.computed_cost == bill
    assert record.cache_read_tokens == usage["prompt_tokens_details"]["cached_tokens"]
    assert record.reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"]
    assert manager.get_metrics().total_cost == bill


async def test_openai_stream_bill_comes_from_the_usage_chunk(mocked: aioresponses,
                                                             manager: CostManager) -> None:
    base = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_44709d6fcb"}
    body = sse_lines(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                              "finish_reason": None}], "usage": None},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}],
         "usage": None},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
        {**base, "choices": [], "usage": {
            "prompt_tokens": 3000, "completion_tokens": 2, "total_tokens": 3002,
            "prompt_tokens_details": {"cached_tokens": 2048},
            "completion_tokens_details": {"reasoning_tokens": 0}}},
    )
    mocked.post(OPENAI, body=body, headers={"Content-Type": "text/event-stream"})
    async with client_for("openai", OpenAITransport("sk-golden-test-key"), manager) as client:
        stream = client.stream(model="gpt-4o-mini", messages=HI)
        final = await stream.get_final_response()
    # 952 × $0.15 + 2048 × $0.075 + 2 × $0.60 per million.
    assert final.cost == Decimal("0.0002976")
    assert final.cost_estimated is False
    assert manager.get_metrics().cache_read_tokens == 2048


# -- Anthropic --------------------------------------------------------------------------------


def anthropic_body(usage: dict[str, Any], model: str = "claude-sonnet-4-5-20250929"
                   ) -> dict[str, Any]:
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": model, "content": [{"type": "text", "text": "Done."}],
            "stop_reason": "end_turn", "stop_sequence": None, "usage": usage}


@pytest.mark.parametrize(
    ("usage", "bill"),
    [
        # First call writes the cache: 21 × $3 + 1888 × $3.75 + 393 × $15 per million.
        ({"input_tokens": 21, "cache_creation_input_tokens": 1888, "cache_read_input_tokens": 0,
          "output_tokens": 393, "service_tier": "standard"}, Decimal("0.013038")),
        # Next call reads it: 21 × $3 + 1888 × $0.30 + 120 × $15.
        ({"input_tokens": 21, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1888,
          "output_tokens": 120, "service_tier": "standard"}, Decimal("0.0024294")),
        # Over 200K input tokens (cache included) the whole request is billed at the
        # long-context price: 5000 × $6 + 200000 × $0.60 + 1000 × $22.50.
        ({"input_tokens": 5000, "cache_creation_input_tokens": 0,
          "cache_read_input_tokens": 200000, "output_tokens": 1000}, Decimal("0.1725")),
    ],
)
async def test_anthropic_unary_bills(mocked: aioresponses, manager: CostManager,
                                     usage: dict[str, Any], bill: Decimal) -> None:
    mocked.post(ANTHROPIC, payload=anthropic_body(usage))
    transport = AnthropicTransport("sk-ant-golden-test-key", "https://api.anthropic.com")
    async with client_for("anthropic", transport, manager) as client:
        reply = await client.chat(model="claude-sonnet-4-5", messages=HI, max_tokens=1024)
    assert reply.cost == bill
    record = manager.recent_records(1)[0]
    assert record.cache_write_tokens == usage["cache_creation_input_tokens"]
    assert record.cache_read_tokens == usage["cache_read_input_tokens"]
    assert record.uncached_input_tokens == usage["input_tokens"]


async def test_anthropic_stream_bill_combines_start_and_delta_usage(
        mocked: aioresponses, manager: CostManager) -> None:
    body = sse_events(
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message",
            "role": "assistant", "content": [], "model": "claude-3-5-haiku-20241022",
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 472, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 2160, "output_tokens": 2}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Hello"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "!"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 15}}),
        ("message_stop", {"type": "message_stop"}),
    )
    mocked.post(ANTHROPIC, body=body, headers={"Content-Type": "text/event-stream"})
    transport = AnthropicTransport("sk-ant-golden-test-key", "https://api.anthropic.com")
    async with client_for("anthropic", transport, manager) as client:
        stream = client.stream(model="claude-3-5-haiku-20241022", messages=HI, max_tokens=256)
        final = await stream.get_final_response()
    # 472 × $0.80 + 2160 × $0.08 + 15 × $4 per million.
    assert final.cost == Decimal("0.0006104")
    assert final.cost_estimated is False
    record = manager.recent_records(1)[0]
    assert (record.input_tokens, record.cache_read_tokens, record.output_tokens) == (2632, 2160, 15)


# -- OpenRouter -------------------------------------------------------------------------------


async def test_openrouter_reported_cost_is_billed_and_ours_is_kept(
        mocked: aioresponses, manager: CostManager) -> None:
    payload = {
        "id": "gen-1732450000-AbCdEfGhIjKlMnOp", "provider": "OpenAI",
        "model": "openai/gpt-4o-mini", "object": "chat.completion", "created": 1732450000,
        "choices": [{"logprobs": None, "finish_reason": "stop", "native_finish_reason": "stop",
                     "index": 0, "message": {"role": "assistant", "content": "Hi!",
                                             "refusal": None, "reasoning": None}}],
        "usage": {"prompt_tokens": 1500, "completion_tokens": 200, "total_tokens": 1700,
                  "cost": 0.0001785, "is_byok": False,
                  "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
                  "cost_details": {"upstream_inference_cost": None},
                  "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0}},
    }
    mocked.post(OPENROUTER, payload=payload)
    transport = OpenRouterTransport("sk-or-v1-golden-test-key")
    async with client_for("openrouter", transport, manager) as client:
        reply = await client.chat(model="openai/gpt-4o-mini", messages=HI)
    record = manager.recent_records(1)[0]
    # Ours: 476 × $0.15 + 1024 × $0.075 + 200 × $0.60 per million.
    assert record.computed_cost == Decimal("0.0002682")
    assert record.provider_cost == Decimal("0.0001785")
    assert record.cost == reply.cost == Decimal("0.0001785")
    assert manager.get_metrics().by_model == {"openai/gpt-4o-mini": Decimal("0.0001785")}


async def test_openrouter_stream_cost_from_the_last_chunk(mocked: aioresponses,
                                                          manager: CostManager) -> None:
    base = {"id": "gen-1732450001-ZyXwVuTs", "provider": "Anthropic",
            "model": "anthropic/claude-3.5-haiku", "object": "chat.completion.chunk",
            "created": 1732450001}
    body = (b": OPENROUTER PROCESSING\n\n" + sse_lines(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                              "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop",
                              "native_finish_reason": "end_turn"}]},
        {**base, "choices": [], "usage": {
            "prompt_tokens": 3000, "completion_tokens": 150, "total_tokens": 3150,
            "cost": 0.00152544,
            "prompt_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}}},
    ))
    mocked.post(OPENROUTER, body=body, headers={"Content-Type": "text/event-stream"})
    transport = OpenRouterTransport("sk-or-v1-golden-test-key")
    async with client_for("openrouter", transport, manager) as client:
        final = await client.stream(model="anthropic/claude-3.5-haiku",
                                    messages=HI).get_final_response()
    record = manager.recent_records(1)[0]
    # Ours, at Anthropic's prices: 952 × $0.80 + 2048 × $0.08 + 150 × $4 per million.
    assert record.computed_cost == Decimal("0.00152544")
    assert record.provider_cost == Decimal("0.00152544")
    assert final.cost == Decimal("0.00152544")


async def test_cached_tokens_are_never_billed_at_the_full_price(manager: CostManager) -> None:
    # The peer bug: 10,000 prompt tokens of which 9,000 cached, priced as if none were.
    cached = manager.track_usage("claude-sonnet-4-5", input_tokens=10_000, output_tokens=0,
                                 provider="anthropic", cache_read_tokens=9_000)
    uncached = manager.track_usage("claude-sonnet-4-5", input_tokens=10_000, output_tokens=0,
                                   provider="anthropic")
    assert uncached.cost == Decimal("0.03")
    assert cached.cost == Decimal("0.0057")  # 1000 × $3 + 9000 × $0.30 per million
