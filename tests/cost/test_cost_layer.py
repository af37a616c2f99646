"""The cost layer in a real pipeline against the embedded provider server: every call billed,
streams included; budgets enforced before anything is sent; reservations settled, released on
failure and never leaked by a cancelled caller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from decimal import Decimal
from functools import partial
from typing import Any

import pytest

from llm_async import (
    AsyncLLMClient,
    BudgetExceededError,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Fault,
    LLMError,
    MockLLMTransport,
    MockProviderServer,
    ServerError,
    StreamError,
    Usage,
)
from llm_async.application.cost_manager import (
    BudgetConfig,
    BudgetPeriod,
    CostLayer,
    CostManager,
    MemoryLedger,
    get_cost_manager,
)
from llm_async.context import CallContext

KEY = "sk-test-cost-layer-1234"
MSG = [{"role": "user", "content": "tell me about rivers"}]
MINI_IN = Decimal("0.15") / 10**6
MINI_OUT = Decimal("0.60") / 10**6


@pytest.fixture
async def server() -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(reply_words=12) as s:
        yield s


@pytest.fixture
def manager() -> CostManager:
    return CostManager()


@pytest.fixture
async def client(server: MockProviderServer, manager: CostManager
                 ) -> AsyncIterator[AsyncLLMClient]:
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              layers=[partial(CostLayer, manager=manager)]) as c:
        yield c


def bill(usage: Usage) -> Decimal:
    return usage.input_tokens * MINI_IN + usage.output_tokens * MINI_OUT


async def test_unary_call_is_billed(client: AsyncLLMClient, manager: CostManager) -> None:
    reply = await client.chat(model="gpt-4o-mini", messages=MSG, user_id="u1", project_id="p")
    assert reply.usage.output_tokens == 12
    assert reply.cost == bill(reply.usage) and reply.cost_estimated is False
    m = manager.get_metrics()
    assert m.total_cost == reply.cost and m.by_user == {"u1": reply.cost}
    assert m.by_project == {"p": reply.cost} and m.requests == 1


async def test_stream_is_billed_from_its_final_chunk(client: AsyncLLMClient,
                                                     manager: CostManager) -> None:
    async with client.stream(model="gpt-4o-mini", messages=MSG) as stream:
        text = "".join([chunk.delta async for chunk in stream])
    final = stream.final_response
    assert final is not None and len(text.split()) == 12
    assert final.cost == bill(final.usage) and final.cost_estimated is False
    assert stream.context.cost == final.cost
    assert manager.get_metrics().total_cost == final.cost


async def test_cut_stream_is_billed_from_an_estimate(client: AsyncLLMClient,
                                                     server: MockProviderServer,
                                                     manager: CostManager) -> None:
    server.add_fault(Fault(cut_after=5))
    stream = client.stream(model="gpt-4o-mini", messages=MSG)
    seen = []
    with pytest.raises(StreamError):
        async for chunk in stream:
            seen.append(chunk.delta)
    assert len(seen) == 5
    record = manager.recent_records(1)[0]
    assert record.estimated and record.output_tokens == 5  # one word = one token here
    assert record.cost is not None and record.cost > 0
    assert stream.context.cost_estimated is True
    assert manager.get_metrics().estimated_requests == 1


async def test_broken_off_and_cancelled_streams_are_estimated(client: AsyncLLMClient,
                                                              server: MockProviderServer,
                                                              manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    async with client.stream(model="gpt-4o-mini", messages=MSG) as stream:
        async for _ in stream:
            break
    assert manager.recent_records(1)[0].estimated
    assert manager.recent_records(1)[0].output_tokens == 1

    slow = MockProviderServer(reply_words=50, token_delay=0.002)
    async with slow, AsyncLLMClient("openai", api_key=KEY, base_url=slow.base_url,
                                    layers=[partial(CostLayer, manager=manager)]) as c2:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in c2.stream(model="gpt-4o-mini", messages=MSG):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    record = manager.recent_records(1)[0]
    assert record.estimated and 1 <= record.output_tokens < 50
    assert manager.get_budget_status("d").reserved == 0
    assert manager.get_metrics().requests == 2


async def test_hard_budget_rejects_before_sending(client: AsyncLLMClient,
                                                  server: MockProviderServer,
                                                  manager: CostManager) -> None:
    reply = await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    assert reply.cost is not None
    manager.set_budget("tight", BudgetConfig(limit=reply.cost * 3, period=BudgetPeriod.TOTAL))
    with pytest.raises(BudgetExceededError) as info:
        await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=2000)
    err = info.value
    assert err.budget == "tight" and err.limit == reply.cost * 3 and err.spent == reply.cost
    assert err.reserved == 0 and err.requested > reply.cost
    with pytest.raises(BudgetExceededError):
        async for _ in client.stream(model="gpt-4o-mini", messages=MSG, max_tokens=2000):
            pass
    assert server.request_count == 1  # nothing else reached the provider
    # A call whose worst case fits still goes through.
    ok = await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=12)
    assert ok.cost is not None


async def test_failures_release_the_reservation(server: MockProviderServer,
                                                manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              layers=[partial(CostLayer, manager=manager)]) as client:
        server.add_fault(Fault(status=500, times=1))
        with pytest.raises(ServerError):
            await client.chat(model="gpt-4o-mini", messages=MSG)
        server.add_fault(Fault(status=503, times=1, stream=True))
        with pytest.raises(ServerError):
            async for _ in client.stream(model="gpt-4o-mini", messages=MSG):
                pass
    status = manager.get_budget_status("d")
    assert status.reserved == 0 and status.spent == 0
    assert manager.get_metrics().requests == 0


async def test_cancelled_caller_leaks_no_reservation(manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    slow = MockProviderServer(reply_words=3, shutdown_timeout=0.05)
    async with slow, AsyncLLMClient("openai", api_key=KEY, base_url=slow.base_url,
                                    layers=[partial(CostLayer, manager=manager)]) as client:
        slow.add_fault(Fault(latency=5.0))
        task = asyncio.create_task(client.chat(model="gpt-4o-mini", messages=MSG))
        while manager.get_budget_status("d").reserved == 0:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert manager.get_budget_status("d").reserved == 0

        slow.add_fault(Fault(latency=5.0, stream=True))

        async def consume() -> None:
            async for _ in client.stream(model="gpt-4o-mini", messages=MSG):
                pass

        stream_task = asyncio.create_task(consume())
        while manager.get_budget_status("d").reserved == 0:
            await asyncio.sleep(0.001)
        stream_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stream_task
    assert manager.get_budget_status("d").reserved == 0
    assert manager.get_metrics().requests == 0


class CachedInner:
    """An inner handler that answers from a (pretend) cache."""

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        ctx.cache_hit = True
        return ChatResponse(content="cached", cache_hit=True,
                            usage=Usage(input_tokens=500, output_tokens=50))

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        ctx.cache_hit = True
        yield ChatChunk(delta="cached")
        yield ChatChunk(usage=Usage(input_tokens=500, output_tokens=50))

    async def aclose(self) -> None:
        return None


async def test_cache_hits_cost_nothing(manager: CostManager) -> None:
    layer = CostLayer(CachedInner(), manager)
    async with AsyncLLMClient("openai", transport=MockLLMTransport(), layers=[]) as client:
        request = client.build_request("gpt-4o", MSG, {}, stream=False)
    reply = await layer.chat(request, CallContext())
    assert reply.cost == 0
    streamed = request.model_copy(update={"stream": True})
    chunks = [c async for c in layer.stream(streamed, CallContext())]
    assert len(chunks) == 2
    m = manager.get_metrics()
    assert m.total_cost == 0 and m.cache_hits == 2 and m.requests == 2


async def test_unknown_model_costs_none_and_warns_once(manager: CostManager,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    async with AsyncLLMClient("openai", transport=MockLLMTransport(), layers=[
            partial(CostLayer, manager=manager)]) as client, \
            AsyncLLMClient("openai", transport=MockLLMTransport(), layers=[
                partial(CostLayer, manager=manager, unknown_price="reject")]) as strict:
        with caplog.at_level(logging.WARNING, logger="llm_async.cost"):
            first = await client.chat(model="in-house-7b", messages=MSG)
            second = await client.chat(model="in-house-7b", messages=MSG)
        with pytest.raises(BudgetExceededError, match="has no price"):
            await strict.chat(model="in-house-7b", messages=MSG)
    assert first.cost is None and second.cost is None
    assert len([r for r in caplog.records if "in-house-7b" in r.getMessage()]) == 1
    assert manager.get_metrics().unpriced_requests == 2


async def test_reservation_covers_the_dearest_fallback(manager: CostManager) -> None:
    layer = CostLayer(MockLLMTransport(), manager, fallback_models=["gpt-4"])
    async with AsyncLLMClient("openai", transport=MockLLMTransport(), layers=[]) as client:
        request = client.build_request("gpt-4o-mini", MSG, {"max_tokens": 100}, stream=False)
    plan = layer.plan(request)
    gpt4 = manager.pricing.lookup("gpt-4")
    assert gpt4 is not None and plan.worst_case is not None
    assert plan.worst_case >= Decimal(100) * gpt4.output / 10**6
    per_call = request.model_copy(update={"options": {"fallback_models": []}})
    cheap = layer.plan(per_call).worst_case
    assert cheap is not None and cheap < plan.worst_case


async def test_cap_output_sends_the_default_cap(server: MockProviderServer,
                                                manager: CostManager) -> None:
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url, layers=[
            partial(CostLayer, manager=manager, cap_output=True, default_max_tokens=5)]) as c:
        reply = await c.chat(model="gpt-4o-mini", messages=MSG)
    assert reply.usage.output_tokens == 5 and reply.finish_reason == "length"
    assert server.requests[-1].body["max_tokens"] == 5


async def test_default_pipeline_and_client_cost_manager(server: MockProviderServer) -> None:
    mine = CostManager()
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              cost_manager=mine) as client:
        assert client.cost_manager is mine
        layer = client.layer(CostLayer)
        assert layer is not None and layer.manager is mine
        names = [type(h).__name__ for h in client.stack]
        assert names.index("CostLayer") < names.index("FallbackLayer")
        reply = await client.chat(model="gpt-4o-mini", messages=MSG)
        assert reply.cost is not None and mine.get_metrics().total_cost == reply.cost
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url) as default:
        assert default.cost_manager is get_cost_manager()
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              cost_manager=None) as off:
        assert off.cost_manager is None and off.layer(CostLayer) is None
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              track_cost=False) as off2:
        assert off2.layer(CostLayer) is None


async def test_prompt_cache_and_openrouter_cost_end_to_end(server: MockProviderServer,
                                                           manager: CostManager) -> None:
    from llm_async.infrastructure.transports.openrouter_transport import OpenRouterTransport
    from llm_async.testing.dialects.openrouter import cost as server_cost

    history = [{"role": "system", "content": "You answer questions about rivers " * 20},
               {"role": "user", "content": "first question"}]
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              layers=[partial(CostLayer, manager=manager)]) as client:
        first = await client.chat(model="gpt-4o-mini", messages=history)
        again = await client.chat(model="gpt-4o-mini",
                                  messages=[*history[:1], {"role": "user", "content": "second"}])
    assert first.usage.cache_read_tokens == 0 and again.usage.cache_read_tokens > 0
    cached = again.usage.cache_read_tokens
    assert again.cost == ((again.usage.input_tokens - cached) * MINI_IN
                          + cached * Decimal("0.075") / 10**6 + 12 * MINI_OUT)
    transport = OpenRouterTransport(KEY, server.openrouter_base_url)
    async with AsyncLLMClient("openrouter", transport=transport,
                              layers=[partial(CostLayer, manager=manager)]) as router:
        routed = await router.chat(model="openai/gpt-4o-mini", messages=MSG)
        streamed = await router.stream(model="openai/gpt-4o-mini",
                                       messages=MSG).get_final_response()
    records = manager.recent_records(2)
    for response, record in zip((routed, streamed), records, strict=True):
        assert response.provider_cost is not None
        assert record.provider_cost == Decimal(repr(response.provider_cost))
        assert response.cost == record.cost == record.provider_cost
        assert record.computed_cost == bill(response.usage)
    expected = server_cost_of(routed, server_cost)
    assert float(records[0].provider_cost or 0) == pytest.approx(expected)


def server_cost_of(response: ChatResponse, fn: object) -> float:
    from llm_async.testing._wire import Usage as ServerUsage

    usage = ServerUsage(response.usage.input_tokens, response.usage.output_tokens,
                        response.usage.cache_read_tokens)
    return float(fn(usage))  # type: ignore[operator]


class BrokenLedger(MemoryLedger):
    """A ledger whose storage fails on demand."""

    fail_reserve = False
    fail_commit = False

    def reserve(self, *args: Any) -> Any:
        if self.fail_reserve:
            raise OSError("disk I/O error")
        return super().reserve(*args)

    def commit(self, *args: Any) -> Any:
        if self.fail_commit:
            raise ConnectionError("ledger unreachable")
        return super().commit(*args)


async def test_ledger_failures_are_typed_and_never_lose_an_answer(
        server: MockProviderServer, caplog: pytest.LogCaptureFixture) -> None:
    ledger = BrokenLedger()
    manager = CostManager(backend=ledger)
    manager.set_budget("d", BudgetConfig(limit=1))
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              layers=[partial(CostLayer, manager=manager)]) as client:
        ledger.fail_reserve = True
        with pytest.raises(LLMError, match="cost ledger reserve failed") as info:
            await client.chat(model="gpt-4o-mini", messages=MSG)
        assert isinstance(info.value.__cause__, OSError)
        assert server.request_count == 0  # fail closed: nothing sent without a reservation
        ledger.fail_reserve, ledger.fail_commit = False, True
        with caplog.at_level(logging.ERROR, logger="llm_async.cost"):
            reply = await client.chat(model="gpt-4o-mini", messages=MSG)
        assert reply.text and reply.cost == bill(reply.usage)
        assert any("could not record the cost" in r.getMessage() for r in caplog.records)
