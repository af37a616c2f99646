"""Every layer of the default pipeline works unchanged on Azure, Gemini and Bedrock: retry
recovers from an overload, the breaker opens on an outage, the concurrency limit holds, the cache
answers a repeat, the cost layer bills each call, and tracing names the provider with its
``gen_ai.provider.name`` — over real HTTP to the embedded server, with the real OpenTelemetry
SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_async import AsyncLLMClient
from llm_async.application.circuit_breaker import CircuitBreakerConfig
from llm_async.application.cost_manager import CostManager
from llm_async.application.pricing import PricingCatalog
from llm_async.application.retry_strategy import RetryConfig
from llm_async.errors import CircuitBreakerOpenError, ServerError
from llm_async.infrastructure.transports import (
    AzureOpenAITransport,
    BedrockTransport,
    GeminiTransport,
)
from llm_async.observability import Observability
from llm_async.testing import Fault, MockProviderServer

KEY = "sk-test-provider-layers-key"


@dataclass(frozen=True)
class Case:
    provider: str
    model: str
    otel_name: str


CASES = [
    Case("azure", "gpt-4o-mini", "azure.ai.openai"),
    Case("gemini", "gemini-2.5-flash", "gcp.gemini"),
    Case("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", "aws.bedrock"),
]


def transport_for(case: Case, server: MockProviderServer) -> Any:
    if case.provider == "azure":
        return AzureOpenAITransport(KEY, endpoint=server.azure_endpoint, api_version="2024-10-21")
    if case.provider == "gemini":
        return GeminiTransport(KEY, server.gemini_base_url)
    return BedrockTransport(base_url=server.bedrock_base_url, region="us-east-1",
                            aws_access_key_id="AKIDLAYERS", aws_secret_access_key="layers-secret")


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider, MeterProvider]]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    yield spans, tracer_provider, meter_provider
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture(params=CASES, ids=[c.provider for c in CASES])
async def stack(request: pytest.FixtureRequest,
                exporter: tuple[InMemorySpanExporter, TracerProvider, MeterProvider],
                ) -> AsyncIterator[tuple[Case, AsyncLLMClient, MockProviderServer,
                                         InMemorySpanExporter, PricingCatalog]]:
    case: Case = request.param
    spans, tracer_provider, meter_provider = exporter
    prices = PricingCatalog()
    prices.set_price(case.model, provider=case.provider, input="1.00", output="4.00")
    async with MockProviderServer() as server:
        client = AsyncLLMClient(
            case.provider, transport=transport_for(case, server),
            tracer_provider=tracer_provider, meter_provider=meter_provider,
            observability=Observability(), cache_enabled=True,
            cost_manager=CostManager(pricing=prices),
            retry_config=RetryConfig(max_attempts=3, base_delay=0.001, max_delay=0.002),
            circuit_breaker_config=CircuitBreakerConfig(failure_threshold=3, timeout=600.0),
            max_concurrency=1)
        async with client:
            yield case, client, server, spans, prices


async def test_the_default_pipeline_on_each_cloud(
        stack: tuple[Case, AsyncLLMClient, MockProviderServer, InMemorySpanExporter,
                     PricingCatalog]) -> None:
    case, client, server, spans, prices = stack
    question = [{"role": "user", "content": f"echo: layers on {case.provider}"}]

    # Retry: one overload, then the answer (temperature 0: a deterministic call, cacheable).
    server.add_fault(Fault(status=503, stream=False))
    reply = await client.chat(model=case.model, messages=question, temperature=0)
    assert (reply.text, reply.provider) == (f"layers on {case.provider}", case.provider)
    assert server.request_count == 2

    # Cost: billed at the price of this provider's model, from the reply's usage.
    price = prices.lookup(case.model, case.provider)
    assert price is not None
    assert reply.cost == price.cost(reply.usage) and reply.cost > Decimal(0)

    # Tracing: one span per logical call, naming the provider as OpenTelemetry does.
    [span] = [s for s in spans.get_finished_spans() if s.attributes]
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.provider.name"] == case.otel_name
    assert attributes["gen_ai.request.model"] == case.model
    assert attributes["gen_ai.usage.input_tokens"] == reply.usage.input_tokens

    # Cache: the same call again is answered without the provider.
    again = await client.chat(model=case.model, messages=question, temperature=0)
    assert again.cache_hit and again.text == reply.text
    assert server.request_count == 2

    # A stream passes through every layer too, and is billed.
    stream = client.stream(model=case.model,
                           messages=[{"role": "user", "content": "echo: streamed through"}])
    async with stream:
        text = "".join([chunk.delta async for chunk in stream])
    assert text == "streamed through"
    assert stream.final_response is not None and stream.final_response.cost is not None


async def test_concurrency_limit_and_breaker_on_each_cloud(
        stack: tuple[Case, AsyncLLMClient, MockProviderServer, InMemorySpanExporter,
                     PricingCatalog]) -> None:
    case, client, server, _, _ = stack

    # The concurrency limit (1) holds: four calls, never two at the provider at once.
    server.add_fault(Fault(latency=0.01, times=4, stream=False))
    await asyncio.gather(*(
        client.chat(model=case.model, messages=[{"role": "user", "content": f"echo: call {i}"}])
        for i in range(4)))
    assert server.stats()["max_in_flight"] == 1

    # An outage opens the breaker: after it opens, calls fail at once and reach nobody.
    server.add_fault(Fault(status=500, times=None))
    outcomes: list[type[BaseException]] = []
    for i in range(6):
        try:
            await client.chat(model=case.model,
                              messages=[{"role": "user", "content": f"echo: outage {i}"}])
        except (ServerError, CircuitBreakerOpenError) as exc:
            outcomes.append(type(exc))
    assert CircuitBreakerOpenError in outcomes
    first_open = outcomes.index(CircuitBreakerOpenError)
    assert all(o is CircuitBreakerOpenError for o in outcomes[first_open:])
    before = server.request_count
    with pytest.raises(CircuitBreakerOpenError):
        await client.chat(model=case.model, messages=[{"role": "user", "content": "echo: x"}])
    assert server.request_count == before


@pytest.mark.parametrize("case", CASES, ids=[c.provider for c in CASES])
async def test_prices_come_from_the_maintained_source(case: Case) -> None:
    """With the packaged catalogue, each cloud's model is priced (genai-prices has all three)
    and a repeated prompt prefix is billed at the cached-input rate."""
    from llm_async.application.cost_manager.catalogue import get_pricing_catalog

    price = get_pricing_catalog().lookup(case.model, case.provider)
    assert price is not None and "genai-prices" in (price.source or "")
    async with MockProviderServer() as server:
        client = AsyncLLMClient(case.provider, transport=transport_for(case, server),
                                tracing=False, cost_manager=CostManager(), retry_config=None)
        async with client:
            turns: list[Any] = [{"role": "user", "content": "echo: first turn here"},
                                {"role": "assistant", "content": "first turn here"},
                                {"role": "user", "content": "echo: second turn"}]
            first = await client.chat(model=case.model, messages=turns)
            second = await client.chat(model=case.model, messages=turns)  # prefix cached
    assert second.usage.cache_read_tokens > 0
    for reply in (first, second):
        assert reply.cost == price.cost(reply.usage) and reply.cost > Decimal(0)
    assert second.cost < price.cost(second.usage.model_copy(update={"cache_read_tokens": 0}))
