"""The money chaos suite: every edge of the billing table, on the memory ledger in process and
on SQLite and Redis from four worker processes at once, against the embedded provider server,
which bills every reply it generates the way a provider does (delivered or not).

For every edge: the provider billed at most the hard limit, and the ledger holds at least what
the provider billed (exactly that where the provider reported usage). Also: a killed worker's
hold ends within its lease, charged; and admission waits for calls in flight instead of failing,
so 100 concurrent calls costing twice the limit spend at least 90% of it, never more.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _chaos import ADMISSION, EDGES, KILLED, Edge, price_billed, run_calls

from llm_async import MockProviderServer
from llm_async.application.cost_manager import (
    BudgetConfig,
    BudgetPeriod,
    CostManager,
    Ledger,
    MemoryLedger,
)
from llm_async.infrastructure.ledger_redis import RedisLedger
from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

WORKER = Path(__file__).with_name("_chaos_worker.py")
PROCESSES = 4


@dataclass
class Backend:
    kind: str
    spec: str
    make: Callable[[], Ledger]


def make_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    if kind == "memory":
        shared = MemoryLedger()
        return Backend("memory", "", lambda: shared)
    if kind == "sqlite":
        path = tmp_path / "chaos.db"
        return Backend("sqlite", f"sqlite:{path}", lambda: SQLiteLedger(path))
    url = request.getfixturevalue("redis_url")
    prefix = "{chaos-" + uuid.uuid4().hex + "}"
    return Backend("redis", f"redis:{url}|{prefix}", lambda: RedisLedger(url, prefix=prefix))


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request.param, tmp_path, request)


def manager_for(backend: Backend, limit: Decimal, **options: Any) -> CostManager:
    manager = CostManager(backend=backend.make(), admission_poll=0.01, **options)
    manager.set_budget("hard", BudgetConfig(limit=limit, period=BudgetPeriod.TOTAL))
    return manager


def start_workers(edge: str, backend: Backend, server: MockProviderServer, calls: int,
                  lease: float = 15.0) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    share = calls // PROCESSES
    procs = [subprocess.Popen(
        [sys.executable, str(WORKER), edge, backend.spec, server.base_url, str(share),
         str(i * share), str(lease)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=WORKER.parent, env=env) for i in range(PROCESSES)]
    return procs


async def wait_ready(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    for proc in procs:  # the start barrier: every worker competes from the same instant
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


async def run_workers(edge: Edge, backend: Backend, server: MockProviderServer,
                      calls: int) -> dict[str, Any]:
    procs = start_workers(edge.name, backend, server, calls)
    await wait_ready(procs)
    seen: dict[str, Any] = {"ok": 0, "refused": 0, "unpriced": 0, "timeouts": 0, "other": []}
    for proc in procs:
        out, err = await asyncio.to_thread(proc.communicate, None, 120)
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        for key in ("ok", "refused", "unpriced", "timeouts"):
            seen[key] += result[key]
        seen["other"] += result["other"]
    return seen


async def settled(server: MockProviderServer) -> None:
    """Wait until the server has finished (and billed) every request it received."""
    for _ in range(2000):
        if server.stats()["in_flight"] == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the server never finished its requests")


def report(edge: str, kind: str, billed: Decimal, ledger: Decimal, limit: Decimal) -> None:
    print(f"\n| {edge} | {kind} | ${billed:f} ({billed / limit:.2f}× the limit) | "
          f"${ledger:f} |")


@pytest.mark.parametrize("name", list(EDGES))
async def test_money_holds_at_every_edge(name: str, backend: Backend) -> None:
    edge = EDGES[name]
    async with MockProviderServer(**edge.server) as server:
        for fault in edge.faults:
            server.add_fault(fault)
        if backend.kind == "memory":
            manager = manager_for(backend, edge.limit)
            seen = await run_calls(edge, manager, server.base_url, edge.calls)
        else:
            seen = await run_workers(edge, backend, server, edge.calls)
            manager = manager_for(backend, edge.limit)
        await settled(server)
        billed_entries = [entry.as_dict() for entry in server.billed]
        requests = server.request_count
    billed = price_billed(billed_entries)
    metrics = manager.get_metrics()
    status = manager.get_budget_status("hard")
    report(name, backend.kind, billed, metrics.total_cost, edge.limit)
    assert seen["other"] == []
    assert billed <= edge.limit, "the provider billed more than the hard limit"
    assert metrics.total_cost >= billed, "the ledger holds less than the provider billed"
    if edge.usage_reported:
        assert metrics.total_cost == billed
    assert status.reserved == 0 and status.spent == metrics.total_cost <= edge.limit
    if name == "unpriced":
        assert requests == 0 and seen["unpriced"] == edge.calls
    else:
        assert billed_entries, "the scenario should reach the provider"
        assert seen["refused"] > 0, "the scenario should meet the limit"
    if name == "cancel":
        assert metrics.estimated_requests >= len(billed_entries) and seen["timeouts"] > 0
    if name == "retry":
        assert metrics.attempts > metrics.calls  # timed-out attempts were billed too
    if name == "odd_usage":
        assert metrics.flagged_requests == seen["ok"] > 0
    if name == "no_max_tokens":
        assert all(e["completion_tokens"] <= 4096 for e in billed_entries)
    manager.reset()
    manager.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_killed_worker_is_charged_within_its_lease(kind: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    backend = make_backend(kind, tmp_path, request)
    edge = KILLED
    async with MockProviderServer(**edge.server) as server:
        for fault in edge.faults:
            server.add_fault(fault)
        procs = start_workers(edge.name, backend, server, edge.calls, lease=1.0)
        await wait_ready(procs)
        for _ in range(2000):  # until the workers' first calls are at the provider
            if server.request_count >= PROCESSES:
                break
            await asyncio.sleep(0.005)
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            await asyncio.to_thread(proc.wait, 30)
            assert proc.returncode == -signal.SIGKILL
        await settled(server)
        billed = price_billed([entry.as_dict() for entry in server.billed])
    assert billed > 0
    now = time.time()
    during = manager_for(backend, edge.limit, clock=lambda: now)
    held = during.get_budget_status("hard").reserved
    after = manager_for(backend, edge.limit, clock=lambda: now + 1.5)  # the leases ran out
    status = after.get_budget_status("hard")
    metrics = after.get_metrics()
    report("killed", kind, billed, metrics.total_cost, edge.limit)
    assert held > 0 or metrics.lease_expired > 0  # the killed calls held budget...
    assert status.reserved == 0  # ...and no longer do: their holds were charged
    assert metrics.lease_expired > 0 and metrics.total_cost >= billed
    assert billed <= edge.limit and status.spent <= edge.limit
    after.reset()
    during.close()
    after.close()


async def test_admission_uses_the_budget(backend: Backend) -> None:
    edge = ADMISSION
    async with MockProviderServer(**edge.server) as server:
        if backend.kind == "memory":
            manager = manager_for(backend, edge.limit)
            seen = await run_calls(edge, manager, server.base_url, edge.calls)
        else:
            seen = await run_workers(edge, backend, server, edge.calls)
            manager = manager_for(backend, edge.limit)
        await settled(server)
        billed = price_billed([entry.as_dict() for entry in server.billed])
    spent = manager.get_budget_status("hard").spent
    demand = billed / seen["ok"] * edge.calls if seen["ok"] else Decimal(0)
    print(f"\n| admission ({backend.kind}) | {seen['ok']} of {edge.calls} admitted | spent "
          f"${spent:f} = {spent / edge.limit:.1%} of the limit | demand ≈ "
          f"{demand / edge.limit:.2f}× the limit |")
    assert seen["other"] == [] and seen["ok"] + seen["refused"] == edge.calls
    assert spent == billed <= edge.limit
    assert spent >= edge.limit * Decimal("0.9")
    assert demand >= edge.limit * Decimal("1.8")
    manager.reset()
    manager.close()
