"""One worker process of the money chaos suite (run by ``test_money_chaos.py``).

Usage: python _chaos_worker.py LEDGER WORKERS INDEX [LEASE]
LEDGER is ``redis:<url>|<prefix>`` or ``sqlite:<directory>``; each scenario gets its own ledger
(``<prefix>-<edge>``, ``<directory>/<edge>.db``). The worker prints ``ready``, then for each line
``<edge> <base_url>`` it reads on stdin (every worker gets the line at once, so they compete),
makes its share (one WORKERS-th) of the scenario's calls and prints one JSON line of what its
callers saw; an empty line ends it. The ``killed`` scenario is killed by the test mid-call instead.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from _chaos import SCENARIOS, run_calls

from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, CostManager


def ledger(spec: str, edge: str) -> Any:
    kind, _, rest = spec.partition(":")
    if kind == "redis":
        from llm_async.infrastructure.ledger_redis import RedisLedger

        url, _, prefix = rest.partition("|")
        return RedisLedger(url, prefix=f"{prefix[:-1]}-{edge}}}")
    from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

    return SQLiteLedger(f"{rest}/{edge}.db")


async def main(spec: str, workers: int, index: int, lease: float) -> None:
    print("ready", flush=True)
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if not line:
            return
        name, base_url = line.split()
        edge = SCENARIOS[name]
        manager = CostManager(backend=ledger(spec, name), lease=lease, admission_poll=0.01)
        manager.pricing.preload()
        manager.set_budget("hard", BudgetConfig(limit=edge.limit, period=BudgetPeriod.TOTAL))
        share = edge.calls // workers
        seen = await run_calls(edge, manager, base_url, share, index * share)
        print(json.dumps(seen), flush=True)
        manager.close()


if __name__ == "__main__":
    lease_arg = float(sys.argv[4]) if len(sys.argv) > 4 else 15.0
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), lease_arg))
