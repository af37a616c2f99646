"""What the tracing layer costs per call: without it, with it and no OpenTelemetry SDK (the
default for most users), with it and OpenTelemetry not installed at all, and with the SDK.

Calls go to a minimal in-process transport that returns prebuilt answers (no network, and no
request log whose growth would make the garbage collector dominate), so the numbers are the
client's own overhead. Prints microseconds per call (best of several interleaved runs) for
unary calls and for streams of 12 chunks, and the difference to the client without the layer::

    python benchmarks/bench_tracing_overhead.py [--calls 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Sequence
from functools import partial
from typing import Any

MESSAGES = [{"role": "user", "content": "hello there"}]


class Prebuilt:
    """A transport answering every call with the same response or the same 12 chunks."""

    def __init__(self) -> None:
        from llm_async import ChatChunk, ChatResponse, Usage

        usage = Usage(input_tokens=5, output_tokens=12)
        self.response = ChatResponse(id="r", model="m", provider="mock", content="w " * 12,
                                     finish_reason="stop", usage=usage)
        self.chunks = [ChatChunk(delta="w ", id="r", model="m") for _ in range(11)]
        self.chunks.append(ChatChunk(delta="w", finish_reason="stop", usage=usage))

    async def chat(self, request: Any, ctx: Any) -> Any:
        return self.response

    async def stream(self, request: Any, ctx: Any) -> AsyncGenerator[Any, None]:
        for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        pass


async def _one_run(client: Any, calls: int, stream: bool) -> float:
    """Microseconds per call over ``calls`` calls."""
    start = time.perf_counter()
    if stream:
        for _ in range(calls):
            async for _chunk in client.stream(model="m", messages=MESSAGES):
                pass
    else:
        for _ in range(calls):
            await client.chat(model="m", messages=MESSAGES)
    return (time.perf_counter() - start) / calls * 1e6


def _configs(with_sdk: bool) -> dict[str, list[Any]]:
    from llm_async.observability import Observability, TracingLayer

    configs: dict[str, list[Any]] = {"no tracing layer": []}
    configs["tracing, no SDK" if with_sdk else "tracing, OTel not installed"] = [
        partial(TracingLayer, observability=Observability())]
    if with_sdk:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(Drop()))
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        configs["tracing + SDK (spans + metrics)"] = [
            partial(TracingLayer, observability=Observability(), tracer_provider=tracer_provider,
                    meter_provider=meter_provider)]
    return configs


async def _run(calls: int, repeat: int, with_sdk: bool) -> dict[str, dict[str, float]]:
    """Runs of every configuration interleaved, and the best run of each kept: on a busy
    machine the minimum is the least disturbed estimate of what the code itself costs."""
    from llm_async import AsyncLLMClient

    clients = {name: AsyncLLMClient(provider="mock", transport=Prebuilt(), layers=layers)
               for name, layers in _configs(with_sdk).items()}
    best: dict[str, dict[str, float]] = {n: {"chat_us": 1e9, "stream_us": 1e9} for n in clients}
    for client in clients.values():  # warm up
        await _one_run(client, 200, False)
        await _one_run(client, 50, True)
    for _ in range(repeat):
        for name, client in clients.items():
            b = best[name]
            b["chat_us"] = min(b["chat_us"], await _one_run(client, calls, False))
            b["stream_us"] = min(b["stream_us"],
                                 await _one_run(client, max(1, calls // 4), True))
    for client in clients.values():
        await client.aclose()
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-otel", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_otel:
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
        print(json.dumps(asyncio.run(_run(args.calls, args.repeat, with_sdk=False))))
        return 0
    results = asyncio.run(_run(args.calls, args.repeat, with_sdk=True))
    proc = subprocess.run([sys.executable, __file__, "--no-otel", "--calls", str(args.calls),
                           "--repeat", str(args.repeat)], capture_output=True, text=True,
                          check=True)
    no_otel = json.loads(proc.stdout)
    results["tracing, OTel not installed"] = no_otel["tracing, OTel not installed"]
    base = results["no tracing layer"]
    base_sub = no_otel["no tracing layer"]
    print(f"{'configuration':34} {'chat µs':>9} {'+µs':>7} {'stream µs':>10} {'+µs':>7}")
    for name, r in results.items():
        ref = base_sub if name == "tracing, OTel not installed" else base
        print(f"{name:34} {r['chat_us']:9.1f} {r['chat_us'] - ref['chat_us']:7.1f} "
              f"{r['stream_us']:10.1f} {r['stream_us'] - ref['stream_us']:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
