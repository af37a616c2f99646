"""The money chaos scenarios, shared by ``test_money_chaos.py`` (in process) and
``_chaos_worker.py`` (one of four worker processes sharing a SQLite or Redis ledger).

Each :class:`Edge` is one row of the billing table: a server set-up (faults, reply length, how
it counts prompts), a hard budget, and how the client calls. The embedded server bills every
reply it generates, the way a provider does; :func:`provider_billed` prices what it billed with
the same catalogue the ledger uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from llm_async import AsyncLLMClient, BudgetExceededError, ChatResponse, LLMError, Usage
from llm_async.application.cost_manager import CostLayer, CostManager
from llm_async.application.pricing import get_pricing_catalog
from llm_async.application.retry_strategy import RetryConfig, RetryLayer
from llm_async.errors import UnpricedModelError
from llm_async.testing import Fault

KEY = "sk-money-chaos-key-1234"


@dataclass(frozen=True)
class Edge:
    """One edge of the billing table."""

    name: str
    title: str
    limit: Decimal
    calls: int
    model: str = "gpt-4o-mini"
    server: dict[str, Any] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    max_tokens: int | None = 20
    #: Whether the provider reports usage for every billed request (then ledger == billed).
    usage_reported: bool = True
    #: Per-call timeout of the caller's ``asyncio.wait_for`` (None: none).
    caller_timeout: float | None = None
    #: Transport timeout (seconds, total) and retries.
    timeout: float | None = None
    retries: int = 1
    #: The text of call ``i``.
    prompt: Callable[[int], str] = lambda i: "tell me " + " ".join(["river"] * (1 + i % 7))


EDGES: dict[str, Edge] = {e.name: e for e in (
    Edge("cancel", "the caller's `wait_for` timeout or cancel fires after the body was sent",
         limit=Decimal("0.0003"), calls=40, faults=(Fault(latency=1.0, times=None),),
         max_tokens=64, server={"reply_words": 60}, usage_reported=False,
         caller_timeout=0.3),
    Edge("no_max_tokens", "no `max_tokens`, the model writes a long answer",
         limit=Decimal("0.01"), calls=40, max_tokens=None, server={"reply_words": 400}),
    Edge("script", "a prompt in a script a token estimate undercounts (rare CJK, combining "
         "marks)", limit=Decimal("0.0004"), calls=40, server={"prompt_tokens": "bytes"},
         prompt=lambda i: ("鑫淼犇骉" * 12 + "e\u0301\u0302" * 30) if i % 2 else "ä\u0308" * 90),
    Edge("retry", "a timeout after send is retried", limit=Decimal("0.0006"), calls=24,
         faults=(Fault(latency=0.3, probability=0.5, times=None),), usage_reported=False,
         timeout=0.08, retries=4),
    Edge("unpriced", "a model with no price under a hard budget", limit=Decimal("0.001"),
         calls=20, model="in-house-llama-7b"),
    Edge("odd_usage", "the provider reports odd usage (cached > prompt, a negative count)",
         limit=Decimal("0.0002"), calls=40, usage_reported=False,
         faults=(Fault(usage={"cached_tokens": 999, "completion_tokens": -3}, times=None),)),
)}


def price_billed(billed: list[dict[str, Any]]) -> Decimal:
    """What the provider billed, priced with the catalogue the ledger uses."""
    catalog = get_pricing_catalog()
    total = Decimal(0)
    for entry in billed:
        price = catalog.lookup(entry["model"], "openai")
        if price is None:
            raise AssertionError(f"the server billed an unpriced model {entry['model']!r}")
        total += price.cost(Usage(input_tokens=entry["prompt_tokens"],
                                  cache_read_tokens=entry["cached_tokens"],
                                  output_tokens=entry["completion_tokens"]))
    return total


def layers(edge: Edge, manager: CostManager) -> list[Any]:
    cost = partial(CostLayer, manager=manager)
    if edge.retries <= 1:
        return [cost]
    config = RetryConfig(max_attempts=edge.retries, base_delay=0.001, max_delay=0.005)
    return [partial(RetryLayer, config=config, budget=None), cost]


async def run_calls(edge: Edge, manager: CostManager, base_url: str, calls: int,
                    offset: int = 0) -> dict[str, Any]:
    """Make ``calls`` concurrent calls of ``edge``; returns what the callers saw."""
    options: dict[str, Any] = {}
    if edge.timeout is not None:
        options["timeout"] = edge.timeout
    async with AsyncLLMClient("openai", api_key=KEY, base_url=base_url,
                              layers=layers(edge, manager), **options) as client:
        async def one(i: int) -> ChatResponse:
            params: dict[str, Any] = {"model": edge.model,
                                      "messages": [{"role": "user", "content": edge.prompt(i)}]}
            if edge.max_tokens is not None:
                params["max_tokens"] = edge.max_tokens
            call = client.chat(**params)
            if edge.caller_timeout is not None:
                return await asyncio.wait_for(call, edge.caller_timeout)
            return await call

        results = await asyncio.gather(*(one(offset + i) for i in range(calls)),
                                       return_exceptions=True)
    seen: dict[str, Any] = {"ok": 0, "refused": 0, "unpriced": 0, "timeouts": 0, "other": []}
    for result in results:
        if isinstance(result, ChatResponse):
            seen["ok"] += 1
        elif isinstance(result, UnpricedModelError):
            seen["unpriced"] += 1
        elif isinstance(result, BudgetExceededError):
            seen["refused"] += 1
        elif isinstance(result, asyncio.TimeoutError | LLMError):
            seen["timeouts"] += 1
        else:
            seen["other"].append(repr(result))
    return seen

#: 100 calls of ``max_tokens=20`` (each bills 5-11 input and 12 output tokens of gpt-4o-mini),
#: costing about twice the limit together.
ADMISSION = Edge("admission", "100 concurrent calls whose total cost is about twice the limit",
                 limit=Decimal("0.00042"), calls=100)
#: Worker processes killed mid-call (the server takes its time answering).
KILLED = Edge("killed", "a worker killed mid-call", limit=Decimal("0.0003"), calls=40,
              max_tokens=64, server={"reply_words": 60},
              faults=(Fault(latency=0.4, times=None),))
SCENARIOS: dict[str, Edge] = {**EDGES, "admission": ADMISSION, "killed": KILLED}
