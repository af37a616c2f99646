"""A fresh, typed context per call: a reused request never carries one call's state into the
next (who answered, the cost, the attempts)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from llm_async import AsyncLLMClient, InvalidRequestError
from llm_async.application.cost_manager import CostManager
from llm_async.context import CallContext
from llm_async.optimization.cache import CacheLayer
from llm_async.testing import Fault, MockProviderServer

MSG = [{"role": "user", "content": "name three rivers"}]
CHEAP_IN, CHEAP_OUT = Decimal("0.10"), Decimal("0.40")  # USD per million tokens
DEAR_IN, DEAR_OUT = Decimal("10"), Decimal("40")


def _bill(ctx: CallContext, per_in: Decimal, per_out: Decimal) -> Decimal:
    usage = ctx.attempts[-1].usage
    assert usage is not None
    return (usage.input_tokens * per_in + usage.output_tokens * per_out) / 10**6


async def test_reused_request_is_billed_per_call_at_the_model_that_answered() -> None:
    manager = CostManager()
    manager.pricing.set_price("cheap-a", input=CHEAP_IN, output=CHEAP_OUT, provider="openai")
    manager.pricing.set_price("pricey-b", input=DEAR_IN, output=DEAR_OUT, provider="openai")
    async with MockProviderServer() as server, AsyncLLMClient(
            provider="openai", api_key="sk-test-reuse", base_url=server.base_url,
            fallback_models=["pricey-b"], retry_config=None, cache_enabled=True,
            cost_manager=manager, tracing=False) as client:
        server.add_fault(Fault(status=503, times=1, model="cheap-a"))
        request = client.build_request("cheap-a", MSG, {"temperature": 0}, stream=False)

        # 1: "cheap-a" fails, "pricey-b" answers and is billed at its own price.
        first = CallContext()
        reply = await client.chat(request=request, context=first)
        assert reply.model == "pricey-b" and first.answered_model == "pricey-b"
        assert [a.model for a in first.attempts] == ["cheap-a", "pricey-b"]
        assert all(a.sent for a in first.attempts)
        assert reply.cost == first.cost == _bill(first, DEAR_IN, DEAR_OUT)

        # 2: the same request is a cache hit: nothing sent, nothing billed.
        second = CallContext()
        hit = await client.chat(request=request, context=second)
        assert hit.cache_hit and hit.cost == 0 and second.attempts == []
        assert second.answered_model is None

        # 3: with the cache emptied, "cheap-a" answers the same request: billed at its price,
        # never at the fallback's price from call 1.
        cache = client.layer(CacheLayer)
        assert cache is not None
        await cache.cache.aclear()
        third = CallContext()
        again = await client.chat(request=request, context=third)
        assert again.model == "cheap-a" and third.answered_model is None
        assert [a.model for a in third.attempts] == ["cheap-a"]
        assert again.cost == third.cost == _bill(third, CHEAP_IN, CHEAP_OUT)
        assert again.cost is not None and first.cost is not None and again.cost < first.cost

    # One ledger entry per attempt sent; the 503 is one the provider billed nothing for.
    records = manager.recent_records(10)
    assert [r.outcome for r in records] == ["provider_error", "complete", "complete"]
    assert sorted(r.cost for r in records if r.outcome == "complete") == sorted(
        [again.cost, reply.cost])
    assert server.request_count == 3  # 503 + fallback answer + the third call


async def test_a_context_serves_one_call(openai_client: AsyncLLMClient) -> None:
    ctx = CallContext()
    await openai_client.chat(model="gpt-4o-mini", messages=MSG, context=ctx)
    with pytest.raises(InvalidRequestError, match="already served a call"):
        await openai_client.chat(model="gpt-4o-mini", messages=MSG, context=ctx)
    with pytest.raises(InvalidRequestError, match="must be a CallContext"):
        openai_client.stream(model="gpt-4o-mini", messages=MSG, context={"x": 1})


async def test_stream_context_records_the_attempt_and_its_usage(
        openai_client: AsyncLLMClient) -> None:
    stream = openai_client.stream(model="gpt-4o-mini", messages=MSG)
    async with stream:
        async for _ in stream:
            pass
    (attempt,) = stream.context.attempts
    assert attempt.sent and attempt.error is None and attempt.usage is not None
    assert stream.final_response is not None
    assert attempt.usage == stream.final_response.usage


async def test_refused_connection_is_an_attempt_that_was_not_sent() -> None:
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncLLMClient(provider="openai", api_key="sk-test",
                              base_url=f"http://127.0.0.1:{port}/v1", layers=[]) as client:
        ctx = CallContext()
        with pytest.raises(Exception):  # noqa: B017 - the typed error is checked below
            await client.chat(model="gpt-4o-mini", messages=MSG, context=ctx)
    (attempt,) = ctx.attempts
    assert attempt.sent is False and attempt.error is not None
    assert type(attempt.error).__name__ == "APIConnectionError"
