"""What the optimization layers buy: cache-hit latency, dedup, cache memory, batching throughput.

::

    python benchmarks/bench_optimization.py [--hits 20000] [--batch 2000]

1. **Cache-hit latency through the full client** — ``await client.chat(...)`` answered from the
   in-memory cache, with only the cache layer and with the whole default pipeline (tracing,
   cache, retry, breaker, ...); p50/p90/p99 in microseconds. Target: p50 <= 50 µs in memory (the
   design document claims 1-5 ms).
2. **Dedup** — 100 concurrent identical requests through a client with ``dedup_enabled=True``
   against the embedded server: upstream calls as counted by the server (target: exactly 1),
   and the same 100 requests without dedup.
3. **Cache memory per 1,000 entries** — ``tracemalloc`` growth while storing 1,000 answers of
   ~60 words, and the number of entries the backend holds.
4. **Batching throughput** — ``client.chat_many`` over the embedded server (loopback HTTP, same
   process), which waits ``--latency`` seconds before each answer like a provider thinking, at
   several concurrencies, in requests per second.

The embedded server runs in this process, so throughput numbers include the server's own work;
they compare settings with each other, not with a remote provider.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_async import AsyncLLMClient
from llm_async.optimization.cache import CacheLayer, ResponseCache
from llm_async.testing import Fault, MockProviderServer
from llm_async.types import ChatResponse, Usage

KEY = "sk-bench-optimization-0001"
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Write one short sentence about rivers."}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def cache_hit_latency(server: MockProviderServer, hits: int) -> list[tuple[str, ...]]:
    rows = []
    setups: dict[str, dict[str, Any]] = {
        "cache layer only": {"layers": [lambda inner: CacheLayer(inner, ResponseCache())]},
        "default pipeline + cache": {"cache_enabled": True},
    }
    for label, kwargs in setups.items():
        async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                                  **kwargs) as client:
            first = await client.chat(model=MODEL, messages=MESSAGES, temperature=0)
            assert not first.cache_hit
            for _ in range(200):  # warm-up
                await client.chat(model=MODEL, messages=MESSAGES, temperature=0)
            samples = []
            gc.disable()
            try:
                for _ in range(hits):
                    started = time.perf_counter()
                    reply = await client.chat(model=MODEL, messages=MESSAGES, temperature=0)
                    samples.append((time.perf_counter() - started) * 1e6)
            finally:
                gc.enable()
            assert reply.cache_hit
        rows.append((f"cache hit, {label}", f"p50 {pct(samples, 0.5):.1f} µs",
                     f"p90 {pct(samples, 0.9):.1f} µs / p99 {pct(samples, 0.99):.1f} µs",
                     "p50 <= 50 µs"))
    return rows


async def dedup(server: MockProviderServer) -> list[tuple[str, ...]]:
    rows = []
    for enabled in (True, False):
        server.reset()
        server.add_fault(Fault(latency=0.02, times=1))  # keep the first call in flight
        async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                                  layers=None, dedup_enabled=enabled, tracing=False,
                                  retry_config=None, circuit_breaker_config=None) as client:
            started = time.perf_counter()
            replies = await asyncio.gather(*(client.chat(model=MODEL, messages=MESSAGES)
                                             for _ in range(100)))
            elapsed = time.perf_counter() - started
        assert len(replies) == 100
        rows.append((f"100 identical concurrent requests, dedup {'on' if enabled else 'off'}",
                     f"{server.request_count} upstream call(s)", f"{elapsed * 1000:.1f} ms",
                     "exactly 1" if enabled else "-"))
    return rows


def cache_memory() -> list[tuple[str, ...]]:
    words = ["river", "stone", "cloud", "garden", "window", "paper", "silver", "forest",
             "candle", "bridge", "market", "ocean", "pencil", "thunder", "valley"]
    answers = [ChatResponse(
        id=f"chatcmpl-{i:08d}", model=MODEL, provider="openai",
        content=" ".join(words[(i + j) % len(words)] for j in range(60)) + f" #{i}",
        finish_reason="stop", usage=Usage(input_tokens=20, output_tokens=61))
        for i in range(1000)]
    cache = ResponseCache()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, answer in enumerate(answers):
        cache.set(f"llm:v1:-:{i:032x}", answer.model_copy(update={"raw": None}))
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    stats = cache.statistics()
    content = statistics.mean(len(a.content or "") for a in answers)
    return [("cache memory, 1,000 entries of ~60 words", f"{(after - before) / 1024:.0f} KiB "
             "measured", f"{stats.entries} entries "
             f"(~{content:.0f} chars of text each)", "design document: ~50 MB")]


async def batching(server: MockProviderServer, n: int,
                   latency: float) -> list[tuple[str, ...]]:
    rows = []
    requests = [{"model": MODEL, "messages": [{"role": "user", "content": f"item {i}"}]}
                for i in range(n)]
    async with AsyncLLMClient(provider="openai", api_key=KEY, base_url=server.base_url,
                              layers=[]) as client:
        await client.chat_many(requests[:50], concurrency=8)  # warm the connection pool
        for concurrency in (1, 8, 32, 128):
            count = min(n, 100 * concurrency)
            server.reset()
            server.add_fault(Fault(latency=latency, times=None))  # a provider's think time
            started = time.perf_counter()
            results = await client.chat_many(requests[:count], concurrency=concurrency)
            elapsed = time.perf_counter() - started
            assert results.succeeded == count
            rows.append((f"chat_many, {count} requests, concurrency {concurrency}",
                         f"{count / elapsed:.0f} req/s",
                         f"{latency * 1000:.0f} ms upstream latency, max in flight "
                         f"{server.stats()['max_in_flight']}", "seed: 10-50 req/s"))
    return rows


async def main(hits: int, batch: int, latency: float) -> None:
    async with MockProviderServer(reply_words=20) as server:
        rows = await cache_hit_latency(server, hits)
        rows += await dedup(server)
        rows += cache_memory()
        rows += await batching(server, batch, latency)
    headers = ("measurement", "result", "detail", "target / seed claim")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(4)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
              + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--latency", type=float, default=0.02,
                        help="seconds the server waits before each answer (batching section)")
    args = parser.parse_args()
    asyncio.run(main(args.hits, args.batch, args.latency))
