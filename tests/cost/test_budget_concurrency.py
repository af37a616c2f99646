"""The concurrency proof: 200 concurrent calls through the embedded server against a hard budget
smaller than their total cost, on every ledger backend (Redis and SQLite also from several
processes at once). The spend never passes the limit by more than the estimation error of the
calls in flight (here zero: every call's worst case covers its bill), nothing rejected reaches
the provider, and the ledger's total is exactly the sum of the per-call bills."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from llm_async import AsyncLLMClient, BudgetExceededError, ChatResponse, MockProviderServer
from llm_async.application.cost_manager import (
    BudgetConfig,
    BudgetPeriod,
    CostLayer,
    CostManager,
    MemoryLedger,
    UsageRecord,
)
from llm_async.infrastructure.ledger_redis import RedisLedger
from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

CALLS = 200
#: About 45% of what 200 calls cost (each bills 12 output + 6 to 12 input tokens of
#: gpt-4o-mini, about $0.0000082), so roughly half of them must be refused.
LIMIT = Decimal("0.00075")
WORKER = Path(__file__).with_name("_ledger_worker.py")


def check_ledger(manager: CostManager, costs: list[Decimal], rejected: int,
                 requests_sent: int) -> None:
    """The proof's assertions, shared by every backend."""
    assert len(costs) + rejected == CALLS
    assert costs and rejected, "the budget should admit some calls and refuse others"
    assert requests_sent == len(costs)  # a refused call never reaches the provider
    status = manager.get_budget_status("hard")
    metrics = manager.get_metrics()
    assert status.spent == metrics.total_cost == sum(costs, Decimal(0))
    assert metrics.requests == len(costs)
    assert status.reserved == 0  # every reservation was settled
    records: list[UsageRecord] = manager.recent_records(10_000)
    assert len(records) == len(costs)
    # Overspend is bounded by how far bills exceeded their reservations (the in-flight
    # estimation error); with max_tokens set and the input margin, that is zero here.
    estimation_error = sum((max(Decimal(0), (r.cost or Decimal(0)) - (r.reserved or Decimal(0)))
                            for r in records), Decimal(0))
    assert estimation_error == 0
    assert status.spent <= LIMIT + estimation_error
    assert all(r.reserved is not None and r.cost is not None and r.cost <= r.reserved
               for r in records)


async def run_in_process(manager: CostManager, server: MockProviderServer
                         ) -> tuple[list[Decimal], int]:
    manager.set_budget("hard", BudgetConfig(limit=LIMIT, period=BudgetPeriod.TOTAL))
    async with AsyncLLMClient("openai", api_key="sk-proof-key-123456", base_url=server.base_url,
                              layers=[partial(CostLayer, manager=manager)]) as client:
        async def one(i: int) -> ChatResponse:
            words = " ".join(["river"] * (1 + i % 7))
            return await client.chat(model="gpt-4o-mini", max_tokens=20,
                                     messages=[{"role": "user", "content": f"tell me {words}"}])

        results = await asyncio.gather(*(one(i) for i in range(CALLS)), return_exceptions=True)
    unexpected = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, BudgetExceededError)]
    assert not unexpected, unexpected[:3]
    costs = [r.cost for r in results if isinstance(r, ChatResponse) and r.cost is not None]
    return costs, sum(isinstance(r, BudgetExceededError) for r in results)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
async def test_200_concurrent_calls_in_one_process(kind: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    ledger: Any
    if kind == "memory":
        ledger = MemoryLedger()
    elif kind == "sqlite":
        ledger = SQLiteLedger(tmp_path / "ledger.db")
    else:
        redis_url = request.getfixturevalue("redis_url")
        ledger = RedisLedger(redis_url, prefix="{proof-" + uuid.uuid4().hex + "}")
    manager = CostManager(backend=ledger)
    try:
        async with MockProviderServer(reply_words=12) as server:
            costs, rejected = await run_in_process(manager, server)
            check_ledger(manager, costs, rejected, server.request_count)
    finally:
        if kind == "redis":
            manager.reset()
        manager.close()


async def spawn(spec: str, base_url: str, calls: int) -> asyncio.subprocess.Process:
    """Start a worker and wait until it is ready to send."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), spec, base_url, str(calls), str(LIMIT),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if line.strip() != b"ready":
        _, err = await proc.communicate()
        raise AssertionError(err.decode()[-2000:])
    return proc


async def finish(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """Let a ready worker send, and return its result."""
    out, err = await proc.communicate(b"go\n")
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert not result["errors"], result["errors"][:3]
    return result


async def run_workers(spec: str, base_url: str, workers: int, calls: int) -> list[dict[str, Any]]:
    """Start ``workers`` processes, then release them all at once."""
    procs = await asyncio.gather(*(spawn(spec, base_url, calls) for _ in range(workers)))
    return list(await asyncio.gather(*(finish(p) for p in procs)))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_200_concurrent_calls_from_four_processes(kind: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    ledger: Any
    if kind == "sqlite":
        path = tmp_path / "shared.db"
        ledger = SQLiteLedger(path)
        spec = f"sqlite:{path}"
    else:
        redis_url = request.getfixturevalue("redis_url")
        prefix = "{proof-mp-" + uuid.uuid4().hex + "}"
        ledger = RedisLedger(redis_url, prefix=prefix)
        spec = f"redis:{redis_url}|{prefix}"
    manager = CostManager(backend=ledger)
    manager.set_budget("hard", BudgetConfig(limit=LIMIT, period=BudgetPeriod.TOTAL))
    try:
        async with MockProviderServer(reply_words=12) as server:
            results = await run_workers(spec, server.base_url, 4, CALLS // 4)
            costs = [Decimal(c) for r in results for c in r["costs"]]
            rejected = sum(r["rejected"] for r in results)
            # Which processes get through is up to the scheduler (under load one may take the
            # whole budget); the invariants below hold whatever the interleaving.
            assert len(results) == 4 and sum(len(r["costs"]) for r in results) > 0
            check_ledger(manager, costs, rejected, server.request_count)
    finally:
        if kind == "redis":
            manager.reset()
        manager.close()
