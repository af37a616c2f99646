"""OpenTelemetry is optional and lazy: ``import llm_async`` does not import it, the tracing
layer works without it (statistics only), and a global SDK configured later is picked up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    out = run("""
        import sys
        import llm_async
        import llm_async.observability
        from llm_async import AsyncLLMClient, get_observability
        from llm_async.observability.facade import Observability
        from llm_async.observability import CallRecord, create_dashboard_app
        obs = get_observability()
        obs.record(CallRecord(model="m"))
        assert obs.lifetime()["requests"] == 1
        client = AsyncLLMClient(provider="mock", tracing=False)
        print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
        # The tracing layer (on by default) imports it when a client is built.
        client = AsyncLLMClient(provider="mock", layers=None)
        print("opentelemetry.trace" in sys.modules)
    """)
    assert out.splitlines() == ["[]", "True"]


def test_tracing_works_without_opentelemetry() -> None:
    out = run("""
        import sys
        sys.modules["opentelemetry"] = None  # as if it were not installed
        import asyncio
        from llm_async import AsyncLLMClient, RateLimitError
        from llm_async.infrastructure.transports.mock import MockLLMTransport, MockReply
        from llm_async.observability import Observability, TracingLayer, get_observability

        async def main():
            transport = MockLLMTransport("one two three")
            transport.script("four five", RateLimitError("slow", status=429))
            async with AsyncLLMClient(provider="mock", transport=MockLLMTransport()) as client:
                assert isinstance(client.stack[0], TracingLayer)  # the default pipeline's
            async with AsyncLLMClient(provider="mock", transport=transport,
                                      layers=[TracingLayer]) as client:
                await client.chat(model="m1", messages=[{"role": "user", "content": "hi"}])
                try:
                    await client.chat(model="m1", messages=[{"role": "user", "content": "x"}])
                except RateLimitError:
                    pass
                async for _ in client.stream(model="m2",
                                             messages=[{"role": "user", "content": "hi"}]):
                    pass
            obs = get_observability()
            span = obs.trace_operation("llm_call", model="gpt-4")
            obs.finish_operation(span, status="success")
            data = obs.get_dashboard_data()
            assert data["total_requests"] == 4, data["total_requests"]
            assert data["failed_requests"] == 1
            assert data["by_model"]["m2"]["streams"] == 1
            assert data["by_model"]["m1"]["output_tokens"] == 2
            assert data["errors_by_type"] == {"rate_limited": 1}
            print("OK", sys.modules.get("opentelemetry"))

        asyncio.run(main())
    """)
    assert out.strip() == "OK None"


def test_global_sdk_configured_after_the_client_is_picked_up() -> None:
    out = run("""
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from llm_async import AsyncLLMClient
        from llm_async.infrastructure.transports.mock import MockLLMTransport
        from llm_async.observability.tracing import TracingLayer

        MESSAGES = [{"role": "user", "content": "hi"}]

        async def main():
            async with AsyncLLMClient(provider="mock", transport=MockLLMTransport(),
                                      layers=[TracingLayer]) as client:
                await client.chat(model="before", messages=MESSAGES)
                exporter = InMemorySpanExporter()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(provider)
                reader = InMemoryMetricReader()
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                await client.chat(model="after", messages=MESSAGES)
            print([s.name for s in exporter.get_finished_spans()])
            names = {}
            for rm in reader.get_metrics_data().resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        names[m.name] = m
            point = names["gen_ai.client.operation.duration"].data.data_points[0]
            print(point.count, point.attributes["gen_ai.request.model"],
                  "cache.hit_ratio" in names)

        asyncio.run(main())
    """)
    assert out.splitlines() == ["['chat after']", "1 after True"]
