"""Per-layer CPU overhead, in process: each default layer alone, then the whole default stack.

The innermost handler is ``MockLLMTransport`` (no HTTP), so the numbers are the client's and the
layers' own work. Prints a Markdown table of CPU µs per unary call and per 5-word stream, then
the cost layer's own rows: under a hard budget (reserve, then settle), and the longest time it
holds the event loop for one call with a 50 MB prompt.

    python benchmarks/bench_layers.py [--calls 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial

from llm_async import AsyncLLMClient, ChatResponse, Usage
from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, CostLayer, CostManager
from llm_async.context import CallContext
from llm_async.infrastructure.transports.mock import MockLLMTransport
from llm_async.pipeline import _entries
from llm_async.types import build_request

MESSAGES = [{"role": "user", "content": "Hello there, how are you today?"}]


async def measure(make: Callable[[], AsyncLLMClient], calls: int) -> tuple[float, float]:
    client = make()
    # Objects left by earlier rows (ledgers, caches) must not burden this row's collections.
    gc.collect()
    gc.freeze()
    for _ in range(200):
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
        async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
            pass
    started = time.process_time()
    for _ in range(calls):
        await client.chat(model="gpt-4o-mini", messages=MESSAGES)
    unary = (time.process_time() - started) / calls * 1e6
    streams = max(1, calls // 4)
    started = time.process_time()
    for _ in range(streams):
        async for _ in client.stream(model="gpt-4o-mini", messages=MESSAGES):
            pass
    stream = (time.process_time() - started) / streams * 1e6
    await client.aclose()
    gc.unfreeze()
    return unary, stream


def _client(layers: object = None) -> AsyncLLMClient:
    transport = MockLLMTransport("hello world this is a reply")
    if layers is None:
        return AsyncLLMClient(provider="mock", transport=transport)
    return AsyncLLMClient(provider="mock", transport=transport, layers=layers)  # type: ignore[arg-type]


async def main(calls: int) -> None:
    rows: list[tuple[str, float, float]] = []
    base = await measure(lambda: _client([]), calls)
    rows.append(("no layers", *base))
    probe = _client()
    for entry in _entries():
        factory = entry(probe)
        if factory is None:
            continue
        name = entry.__name__.lstrip("_")
        rows.append((f"+ {name} only", *await measure(lambda f=factory: _client([f]), calls)))
    await probe.aclose()
    budgeted = CostManager()
    budgeted.set_budget("hard", BudgetConfig(limit=Decimal(10**6), period=BudgetPeriod.TOTAL))
    rows.append(("+ cost only, hard budget", *await measure(
        lambda: _client([partial(CostLayer, manager=budgeted)]), calls)))
    rows.append(("default stack", *await measure(_client, calls)))
    print("| handler stack | CPU µs / unary call | overhead | CPU µs / stream | overhead |")
    print("|---|---:|---:|---:|---:|")
    for name, unary, stream in rows:
        print(f"| {name} | {unary:.1f} | {unary - base[0]:+.1f} | {stream:.1f} | "
              f"{stream - base[1]:+.1f} |")


class _Answer:
    """An inner handler that answers at once (the cost layer's own work is all that is timed)."""

    async def chat(self, request: object, ctx: CallContext) -> ChatResponse:
        attempt = ctx.begin_attempt("mock", "gpt-4o-mini")
        attempt.sent = True
        return ChatResponse(content="ok", usage=Usage(input_tokens=12_500_000, output_tokens=5))

    async def aclose(self) -> None:
        return None


async def big_prompts() -> None:
    """The longest the cost layer holds the event loop for one call with a 50 MB prompt (the
    whole call runs without suspending, so its wall time is the hold)."""
    manager = CostManager()
    manager.set_budget("hard", BudgetConfig(limit=Decimal(10**6), period=BudgetPeriod.TOTAL))
    layer = CostLayer(_Answer(), manager)  # type: ignore[arg-type]
    print()
    print("| 50 MB prompt | cost layer holds the loop (ms) |")
    print("|---|---:|")
    for label, text in (("ASCII", "lorem ipsum " * (50_000_000 // 12)),
                        ("non-ASCII (é, 漢)", "é漢 " * (50_000_000 // 6))):
        request = build_request(model="gpt-4o-mini", max_tokens=100,
                                messages=[{"role": "user", "content": text}])
        await layer.chat(request, CallContext())  # the price and the pools are warm
        started = time.perf_counter()
        await layer.chat(request, CallContext())
        print(f"| {label} | {(time.perf_counter() - started) * 1e3:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4000)
    asyncio.run(main(parser.parse_args().calls))
    asyncio.run(big_prompts())
