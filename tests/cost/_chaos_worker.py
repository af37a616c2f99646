"""One worker process of the money chaos suite (run by ``test_money_chaos.py``).

Usage: python _chaos_worker.py EDGE LEDGER BASE_URL CALLS OFFSET [LEASE]
LEDGER is ``redis:<url>|<prefix>`` or ``sqlite:<path>``. Prints ``ready``, waits for a line on
stdin (so every worker starts at once), makes its calls, and prints one JSON line of what its
callers saw. The ``killed`` edge is killed by the test mid-call instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from _chaos import SCENARIOS, run_calls

from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, CostManager


def ledger(spec: str) -> Any:
    kind, _, rest = spec.partition(":")
    if kind == "redis":
        from llm_async.infrastructure.ledger_redis import RedisLedger

        url, _, prefix = rest.partition("|")
        return RedisLedger(url, prefix=prefix)
    from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

    return SQLiteLedger(rest)


async def main(name: str, spec: str, base_url: str, calls: int, offset: int,
               lease: float) -> None:
    edge = SCENARIOS[name]
    manager = CostManager(backend=ledger(spec), lease=lease, admission_poll=0.01)
    manager.set_budget("hard", BudgetConfig(limit=edge.limit, period=BudgetPeriod.TOTAL))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    seen = await run_calls(edge, manager, base_url, calls, offset)
    print(json.dumps(seen), flush=True)
    manager.close()


if __name__ == "__main__":
    lease_arg = float(sys.argv[6]) if len(sys.argv) > 6 else 15.0
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                     int(sys.argv[5]), lease_arg))
