"""Fixtures for the observability tests: the real OpenTelemetry SDK with in-memory readers,
passed to the layer explicitly (never through global state)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_async import AsyncLLMClient
from llm_async.observability import Observability, TracingLayer
from llm_async.testing import MockProviderServer

API_KEY = "sk-observability-test-key-0123456789"  # the same value as in the test files


@dataclass
class Otel:
    """An SDK tracer and meter provider with in-memory exporters."""

    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metrics(self) -> dict[str, Any]:
        """``{name: metric}`` of everything collected now."""
        out: dict[str, Any] = {}
        data = self.reader.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out[metric.name] = metric
        return out

    def points(self, name: str) -> list[Any]:
        metric = self.metrics().get(name)
        return [] if metric is None else list(metric.data.data_points)

    def layer(self, obs: Observability, **kwargs: Any) -> Callable[[Any], TracingLayer]:
        """A TracingLayer factory on these providers."""
        return partial(TracingLayer, tracer_provider=self.tracer_provider,
                       meter_provider=self.meter_provider, observability=obs, **kwargs)


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(tracer_provider, exporter, meter_provider, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def obs() -> Observability:
    return Observability()


@pytest.fixture
async def traced(mock_server: MockProviderServer, otel: Otel,
                 obs: Observability) -> AsyncIterator[AsyncLLMClient]:
    """An OpenAI client on the embedded server with only the tracing layer."""
    layer = otel.layer(obs, endpoints={"openai": mock_server.base_url})
    async with AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=mock_server.base_url,
                              layers=[layer]) as client:
        yield client
