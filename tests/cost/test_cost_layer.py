"""The cost layer in a real pipeline against the embedded provider server: every attempt that
was sent is billed (cancelled, timed out, cut, retried, fallen back), with usage when the
provider reported it and at its reserved upper bound otherwise; budgets are enforced before
anything is sent; unpriced models are refused under a hard budget; odd usage never loses an
answer; reservations never leak."""

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
    LLMError,
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
from llm_async.application.fallback import FallbackLayer
from llm_async.application.retry_strategy import RetryConfig, RetryLayer
from llm_async.application.tokens import input_token_bound
from llm_async.context import CallContext
from llm_async.errors import APIConnectionError, UnpricedModelError
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.testing import Fault

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


def client_for(server: MockProviderServer, manager: CostManager, *outer: Any,
               **options: Any) -> AsyncLLMClient:
    return AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                          layers=[*outer, partial(CostLayer, manager=manager, **options)])


@pytest.fixture
async def client(server: MockProviderServer, manager: CostManager
                 ) -> AsyncIterator[AsyncLLMClient]:
    async with client_for(server, manager) as c:
        yield c


def bill(usage: Usage) -> Decimal:
    return usage.input_tokens * MINI_IN + usage.output_tokens * MINI_OUT


def bound(messages: list[dict[str, str]], max_tokens: int) -> Decimal:
    """The upper bound of one gpt-4o-mini attempt, as the layer reserves it."""
    from llm_async.types import build_request

    request = build_request(model="gpt-4o-mini", messages=messages, max_tokens=max_tokens)
    price = get_cost_manager().pricing.lookup("gpt-4o-mini", "openai")
    assert price is not None
    return price.worst_case(input_token_bound(request), max_tokens)


def server_bill(server: MockProviderServer) -> Decimal:
    return sum((bill(Usage(input_tokens=b.prompt_tokens, output_tokens=b.completion_tokens))
                for b in server.billed), Decimal(0))


async def test_unary_call_is_billed(client: AsyncLLMClient, manager: CostManager) -> None:
    reply = await client.chat(model="gpt-4o-mini", messages=MSG, user_id="u1", project_id="p")
    assert reply.usage.output_tokens == 12
    assert reply.cost == bill(reply.usage) and reply.cost_estimated is False
    m = manager.get_metrics()
    assert m.total_cost == reply.cost and m.by_user == {"u1": reply.cost}
    assert m.by_project == {"p": reply.cost} and (m.requests, m.calls) == (1, 1)
    [record] = manager.recent_records()
    assert (record.outcome, record.attempt, record.estimated) == ("complete", 1, False)
    assert record.call_id is not None and record.request_id == reply.request_id


async def test_stream_is_billed_from_its_final_chunk(client: AsyncLLMClient,
                                                     manager: CostManager) -> None:
    async with client.stream(model="gpt-4o-mini", messages=MSG) as stream:
        text = "".join([chunk.delta async for chunk in stream])
    final = stream.final_response
    assert final is not None and len(text.split()) == 12
    assert final.cost == bill(final.usage) and final.cost_estimated is False
    assert stream.context.cost == final.cost
    assert manager.get_metrics().total_cost == final.cost


async def test_a_cut_stream_is_billed_at_its_bound(client: AsyncLLMClient,
                                                   server: MockProviderServer,
                                                   manager: CostManager) -> None:
    server.add_fault(Fault(cut_after=5))
    stream = client.stream(model="gpt-4o-mini", messages=MSG, max_tokens=50)
    seen = []
    with pytest.raises(StreamError):
        async for chunk in stream:
            seen.append(chunk.delta)
    assert len(seen) == 5
    [record] = manager.recent_records(1)
    assert (record.outcome, record.estimated, record.output_tokens) == ("cut", True, 50)
    assert record.cost == bound(MSG, 50) >= server_bill(server) > 0
    assert stream.context.cost_estimated is True
    assert manager.get_metrics().estimated_requests == 1


async def test_broken_off_and_cancelled_streams_are_billed(client: AsyncLLMClient,
                                                           manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    async with client.stream(model="gpt-4o-mini", messages=MSG, max_tokens=30) as stream:
        async for _ in stream:
            break
    [record] = manager.recent_records(1)
    assert (record.outcome, record.estimated, record.cost) == ("cancelled", True, bound(MSG, 30))

    slow = MockProviderServer(reply_words=50, token_delay=0.002)
    async with slow, client_for(slow, manager) as c2:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in c2.stream(model="gpt-4o-mini", messages=MSG, max_tokens=60):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    record = manager.recent_records(1)[0]
    assert (record.outcome, record.cost) == ("cancelled", bound(MSG, 60))
    assert manager.get_budget_status("d").reserved == 0
    assert manager.get_metrics().requests == 2


async def test_a_caller_cancelling_after_the_send_is_billed(manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    slow = MockProviderServer(reply_words=3, shutdown_timeout=0.05)
    async with slow, client_for(slow, manager) as client:
        slow.add_fault(Fault(latency=5.0))
        task = asyncio.create_task(client.chat(model="gpt-4o-mini", messages=MSG,
                                               max_tokens=40))
        while slow.request_count == 0:  # the body has reached the provider
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    [record] = manager.recent_records(1)
    assert (record.outcome, record.estimated, record.cost) == ("cancelled", True, bound(MSG, 40))
    assert manager.get_budget_status("d").reserved == 0
    assert manager.get_budget_status("d").spent == record.cost


async def test_nothing_sent_means_nothing_billed(manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    closed = MockProviderServer()
    await closed.start()
    url = closed.base_url
    await closed.close()  # the port is now refused: no byte can reach a provider
    async with AsyncLLMClient("openai", api_key=KEY, base_url=url, layers=[
            partial(CostLayer, manager=manager)]) as client:
        with pytest.raises(APIConnectionError):
            await client.chat(model="gpt-4o-mini", messages=MSG)
    assert manager.get_metrics().requests == 0
    assert manager.get_budget_status("d").reserved == 0


async def test_a_provider_error_is_an_attempt_billed_nothing(server: MockProviderServer,
                                                             manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    async with client_for(server, manager) as client:
        server.add_fault(Fault(status=500, times=1))
        with pytest.raises(ServerError):
            await client.chat(model="gpt-4o-mini", messages=MSG)
        server.add_fault(Fault(status=503, times=1, stream=True))
        with pytest.raises(ServerError):
            async for _ in client.stream(model="gpt-4o-mini", messages=MSG):
                pass
    status = manager.get_budget_status("d")
    assert status.reserved == 0 and status.spent == 0
    records = manager.recent_records()
    assert [(r.outcome, r.cost) for r in records] == [("provider_error", 0)] * 2
    assert server.billed == []


async def test_every_retry_is_its_own_record(server: MockProviderServer,
                                            manager: CostManager) -> None:
    retry = partial(RetryLayer, config=RetryConfig(max_attempts=4, base_delay=0.001),
                    budget=None)
    server.add_fault(Fault(status=503, times=1))
    server.add_fault(Fault(latency=1.0, times=1))
    async with client_for(server, manager, retry) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=20,
                                  timeout=0.2)
    records = manager.recent_records()
    assert [(r.attempt, r.outcome) for r in records] == [
        (1, "provider_error"), (2, "timed_out"), (3, "complete")]
    assert len({r.call_id for r in records}) == 1
    assert reply.cost == sum((r.cost or Decimal(0) for r in records), Decimal(0))
    assert reply.cost_estimated is True
    metrics = manager.get_metrics()
    assert (metrics.calls, metrics.attempts) == (1, 3)
    assert manager.metrics()["cost.calls"] == 1 and manager.metrics()["cost.attempts"] == 3


async def test_a_fallback_attempt_is_billed_at_its_own_model(server: MockProviderServer,
                                                             manager: CostManager) -> None:
    server.add_fault(Fault(status=503, times=1, model="gpt-4o"))
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url) as probe:
        resolve = probe.resolve
    fallback = partial(FallbackLayer, models=("gpt-4o-mini",), resolve=resolve)
    async with client_for(server, manager, fallback) as client:
        reply = await client.chat(model="gpt-4o", messages=MSG)
    first, second = manager.recent_records()
    assert (first.model, first.outcome, second.model) == ("gpt-4o", "provider_error",
                                                          "gpt-4o-mini")
    assert second.cost == bill(reply.usage) == reply.cost


async def test_hard_budget_rejects_before_sending(client: AsyncLLMClient,
                                                  server: MockProviderServer,
                                                  manager: CostManager) -> None:
    reply = await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=20)
    assert reply.cost is not None
    manager.set_budget("tight", BudgetConfig(limit=reply.cost * 4, period=BudgetPeriod.TOTAL))
    with pytest.raises(BudgetExceededError) as info:
        await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=2000)
    err = info.value
    assert err.budget == "tight" and err.limit == reply.cost * 4 and err.spent == reply.cost
    assert err.reserved == 0 and err.requested == bound(MSG, 2000)
    with pytest.raises(BudgetExceededError):
        async for _ in client.stream(model="gpt-4o-mini", messages=MSG, max_tokens=2000):
            pass
    assert server.request_count == 1  # nothing else reached the provider
    ok = await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=12)
    assert ok.cost is not None and ok.cost <= bound(MSG, 12)


async def test_under_a_hard_budget_the_reserved_cap_is_sent(server: MockProviderServer,
                                                            manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    async with client_for(server, manager, default_max_tokens=7) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=MSG)
    assert server.requests[-1].body["max_tokens"] == 7
    assert reply.usage.output_tokens == 7 and reply.finish_reason == "length"
    assert manager.recent_records(1)[0].reserved == bound(MSG, 7)
    async with client_for(server, manager) as client:
        await client.chat(model="gpt-4o", messages=MSG)
    assert server.requests[-1].body["max_tokens"] == 4096  # the default cap, below the max
    manager.remove_budget("d")
    async with client_for(server, manager) as client:
        await client.chat(model="gpt-4o-mini", messages=MSG)
    assert "max_tokens" not in server.requests[-1].body  # no budget: the request as given
    async with client_for(server, manager, cap_output=True, default_max_tokens=5) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=MSG)
    assert reply.usage.output_tokens == 5 and server.requests[-1].body["max_tokens"] == 5


async def test_unpriced_models(server: MockProviderServer, manager: CostManager,
                               caplog: pytest.LogCaptureFixture) -> None:
    async with client_for(server, manager) as client:
        with caplog.at_level(logging.WARNING, logger="llm_async.cost"):
            first = await client.chat(model="in-house-7b", messages=MSG)
            second = await client.chat(model="in-house-7b", messages=MSG)
        assert first.cost is None and second.cost is None
        assert len([r for r in caplog.records if "in-house-7b" in r.getMessage()]) == 1
        assert manager.get_metrics().unpriced_requests == 2
        manager.set_budget("d", BudgetConfig(limit=1))
        sent = server.request_count
        with pytest.raises(UnpricedModelError, match="set_price") as info:
            await client.chat(model="in-house-7b", messages=MSG)
        assert info.value.model == "in-house-7b" and isinstance(info.value, BudgetExceededError)
        assert server.request_count == sent  # refused before sending
    async with client_for(server, manager, unknown_price="allow") as allowing:
        with caplog.at_level(logging.WARNING, logger="llm_async.cost"):
            allowed = await allowing.chat(model="in-house-7b", messages=MSG)
    assert allowed.cost is None and server.request_count == sent + 1
    assert any("unchecked" in r.getMessage() for r in caplog.records)


async def test_odd_usage_never_loses_the_answer(server: MockProviderServer,
                                                manager: CostManager) -> None:
    manager.set_budget("d", BudgetConfig(limit=1))
    server.add_fault(Fault(usage={"cached_tokens": 999, "completion_tokens": -3}, times=2))
    async with client_for(server, manager) as client:
        reply = await client.chat(model="gpt-4o-mini", messages=MSG, max_tokens=30)
        streamed = await client.stream(model="gpt-4o-mini", messages=MSG,
                                       max_tokens=30).get_final_response()
    assert reply.text and streamed.text  # the paid answers reached the caller
    for record in manager.recent_records():
        assert record.flags and any("negative output_tokens" in f for f in record.flags)
        assert record.estimated and record.cost == bound(MSG, 30) >= bill(Usage(
            input_tokens=server.billed[0].prompt_tokens,
            output_tokens=server.billed[0].completion_tokens))
    assert manager.get_budget_status("d").reserved == 0
    assert manager.get_metrics().flagged_requests == 2


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


async def test_default_pipeline_and_client_cost_manager(server: MockProviderServer) -> None:
    mine = CostManager()
    async with AsyncLLMClient("openai", api_key=KEY, base_url=server.base_url,
                              cost_manager=mine) as client:
        assert client.cost_manager is mine
        layer = client.layer(CostLayer)
        assert layer is not None and layer.manager is mine
        names = [type(h).__name__ for h in client.stack]
        # Inside retry and fallback: each attempt is reserved and billed on its own.
        assert names.index("FallbackLayer") < names.index("RetryLayer") \
            < names.index("CostLayer") < names.index("CircuitBreakerLayer")
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
    async with client_for(server, manager) as client:
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
    async with client_for(server, manager) as client:
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
