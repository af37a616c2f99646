"""A worker process for the cross-process budget proof (run by test_budget_concurrency.py).

Usage: python _ledger_worker.py BACKEND BASE_URL CALLS LIMIT
BACKEND is ``redis:<url>|<prefix>`` or ``sqlite:<path>``. Prints ``ready``, waits for a line on
stdin (so that every worker starts sending at once), then prints one JSON line: the cost and the
reservation of every call that went through, and how many were rejected.
"""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from functools import partial

from llm_async import AsyncLLMClient, BudgetExceededError, ChatResponse
from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, CostLayer, CostManager


def ledger(spec: str) -> object:
    kind, _, rest = spec.partition(":")
    if kind == "redis":
        from llm_async.infrastructure.ledger_redis import RedisLedger

        url, _, prefix = rest.partition("|")
        return RedisLedger(url, prefix=prefix)
    from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

    return SQLiteLedger(rest)


async def main(spec: str, base_url: str, calls: int, limit: str) -> None:
    manager = CostManager(backend=ledger(spec))  # type: ignore[arg-type]
    manager.set_budget("hard", BudgetConfig(limit=Decimal(limit), period=BudgetPeriod.TOTAL))
    async with AsyncLLMClient("openai", api_key="sk-worker-key-123456", base_url=base_url,
                              layers=[partial(CostLayer, manager=manager)]) as client:
        async def one(i: int) -> ChatResponse:
            words = " ".join(["river"] * (1 + i % 7))
            return await client.chat(model="gpt-4o-mini", max_tokens=20,
                                     messages=[{"role": "user", "content": f"tell me {words}"}])

        # Start barrier: every worker is up before any sends, so they really compete.
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        results = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, ChatResponse)]
    rejected = sum(isinstance(r, BudgetExceededError) for r in results)
    other = [repr(r) for r in results if isinstance(r, BaseException)
             and not isinstance(r, BudgetExceededError)]
    records = {r.id: r for r in manager.recent_records(100_000)}
    print(json.dumps({"costs": [str(r.cost) for r in ok], "rejected": rejected,
                      "errors": other, "records": len(records)}))
    manager.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
