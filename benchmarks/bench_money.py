"""The money table: a $0.01 hard budget and 200 concurrent calls at each billing edge, against
the embedded provider server, which bills every reply it generates (delivered or not) the way a
provider does. Prints ``edge | provider billed | ledger`` (and the admission figure).

    python benchmarks/bench_money.py [--calls 200] [--limit 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from llm_async import AsyncLLMClient, MockProviderServer, Usage
from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, CostLayer, CostManager
from llm_async.application.pricing import get_pricing_catalog
from llm_async.application.retry_strategy import RetryConfig, RetryLayer
from llm_async.testing import Fault

MODEL = "gpt-4o"


@dataclass(frozen=True)
class Edge:
    title: str
    server: dict[str, Any] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    max_tokens: int | None = 64
    caller_timeout: float | None = None
    timeout: float | None = None
    retries: int = 1
    model: str = MODEL
    prompt: Callable[[int], str] = lambda i: "tell me " + " ".join(["river"] * (1 + i % 7))


EDGES = (
    Edge("the caller's `wait_for` timeout or cancel fires after the body was sent",
         server={"reply_words": 60}, faults=(Fault(latency=1.0, times=None),),
         caller_timeout=0.3),
    Edge("no `max_tokens`, the model writes a long answer (gpt-4o-mini)",
         server={"reply_words": 600}, max_tokens=None, model="gpt-4o-mini"),
    Edge("a prompt in a script a token estimate undercounts (rare CJK; combining marks)",
         server={"prompt_tokens": "bytes", "reply_words": 60},
         prompt=lambda i: ("鑫淼犇骉" * 60 + "e\u0301\u0302" * 150) if i % 2 else "ä\u0308" * 450),
    Edge("a timeout after send is retried", server={"reply_words": 60},
         faults=(Fault(latency=1.0, probability=0.5, times=None),), timeout=0.3, retries=4),
    Edge("a model with no price under a hard budget", model="in-house-llama-7b"),
    Edge("the provider reports odd usage (cached > prompt, a negative count)",
         server={"reply_words": 60},
         faults=(Fault(usage={"cached_tokens": 999, "completion_tokens": -3}, times=None),)),
)


def priced(server: MockProviderServer) -> Decimal:
    catalog = get_pricing_catalog()
    total = Decimal(0)
    for entry in server.billed:
        price = catalog.lookup(entry.model, "openai")
        assert price is not None
        total += price.cost(Usage(input_tokens=entry.prompt_tokens,
                                  output_tokens=entry.completion_tokens,
                                  cache_read_tokens=entry.cached_tokens))
    return total


async def run(edge: Edge, calls: int, limit: Decimal) -> tuple[Decimal, Decimal, int, int]:
    manager = CostManager()
    manager.set_budget("hard", BudgetConfig(limit=limit, period=BudgetPeriod.TOTAL))
    layers: list[Any] = [partial(CostLayer, manager=manager)]
    if edge.retries > 1:
        layers.insert(0, partial(RetryLayer, config=RetryConfig(
            max_attempts=edge.retries, base_delay=0.001, max_delay=0.005), budget=None))
    options: dict[str, Any] = {"timeout": edge.timeout} if edge.timeout else {}
    async with MockProviderServer(**edge.server) as server:
        for fault in edge.faults:
            server.add_fault(fault)
        async with AsyncLLMClient("openai", api_key="sk-money-table-0000", layers=layers,
                                  base_url=server.base_url, **options) as client:
            async def one(i: int) -> Any:
                params: dict[str, Any] = {"model": edge.model, "messages": [
                    {"role": "user", "content": edge.prompt(i)}]}
                if edge.max_tokens is not None:
                    params["max_tokens"] = edge.max_tokens
                call = client.chat(**params)
                if edge.caller_timeout is not None:
                    return await asyncio.wait_for(call, edge.caller_timeout)
                return await call

            await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
        while server.stats()["in_flight"]:
            await asyncio.sleep(0.01)
        billed = priced(server)
        attempts = len(server.billed)
    metrics = manager.get_metrics()
    return billed, metrics.total_cost, attempts, metrics.attempts


async def main(calls: int, limit: Decimal) -> None:
    get_pricing_catalog().preload()
    print(f"${limit} hard budget, {calls} concurrent calls of {MODEL}\n")
    print("| edge | provider billed | ledger |")
    print("|---|---|---|")
    for edge in EDGES:
        billed, ledger, served, recorded = await run(edge, calls, limit)
        print(f"| {edge.title} | ${billed:.6f} ({billed / limit:.2f}× the limit; {served} "
              f"attempts billed) | ${ledger:.6f} ({recorded} attempts recorded) |")


async def admission() -> None:
    """100 concurrent calls of max_tokens=20 whose total cost is about twice the limit."""
    limit = Decimal("0.00042")
    manager = CostManager()
    manager.set_budget("hard", BudgetConfig(limit=limit, period=BudgetPeriod.TOTAL))
    async with MockProviderServer(reply_words=12) as server, AsyncLLMClient(
            "openai", api_key="sk-money-table-0000", base_url=server.base_url,
            layers=[partial(CostLayer, manager=manager)]) as client:
        replies = await asyncio.gather(*(client.chat(
            model="gpt-4o-mini", max_tokens=20,
            messages=[{"role": "user", "content": "tell me " + " ".join(["river"] * (1 + i % 7))}])
            for i in range(100)), return_exceptions=True)
        billed = priced(server)
    admitted = sum(not isinstance(r, BaseException) for r in replies)
    spent = manager.get_budget_status("hard").spent
    demand = billed / admitted * 100
    print(f"\nadmission: {admitted} of 100 calls admitted; spent ${spent} = "
          f"{spent / limit:.1%} of the ${limit} limit (the 100 calls would cost about "
          f"{demand / limit:.2f}× the limit)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--limit", type=Decimal, default=Decimal("0.01"))
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.limit))
    asyncio.run(admission())
