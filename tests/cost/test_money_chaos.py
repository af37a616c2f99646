"""The money chaos suite: every edge of the billing table, on the memory ledger in process and
on SQLite and Redis from four worker processes at once, against the embedded provider server,
which bills every reply it generates the way a provider does (delivered or not).

For every edge: the provider billed at most the hard limit, and the ledger holds at least what
the provider billed (exactly that where the provider reported usage), with a ledger entry for
every attempt the provider billed. Also: a killed worker's hold ends within its lease, charged;
and admission waits for calls in flight instead of failing, so 100 concurrent calls costing
twice the limit spend at least 90% of it, never more.
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
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
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
from llm_async.application.pricing import get_pricing_catalog
from llm_async.infrastructure.ledger_redis import RedisLedger
from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

WORKER = Path(__file__).with_name("_chaos_worker.py")
PROCESSES = 4
HANG = 120.0  # a guard against a hang, never a speed check


@dataclass
class Backend:
    """Where the scenarios' ledgers live: one ledger per scenario."""

    kind: str
    spec: str
    ledger: Callable[[str], Ledger]


def make_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Backend:
    if kind == "memory":
        ledgers: dict[str, MemoryLedger] = {}
        return Backend("memory", "", lambda edge: ledgers.setdefault(edge, MemoryLedger()))
    if kind == "sqlite":
        return Backend("sqlite", f"sqlite:{tmp_path}",
                       lambda edge: SQLiteLedger(tmp_path / f"{edge}.db"))
    url = request.getfixturevalue("redis_url")
    prefix = "{chaos-" + uuid.uuid4().hex + "}"
    return Backend("redis", f"redis:{url}|{prefix}",
                   lambda edge: RedisLedger(url, prefix=f"{prefix[:-1]}-{edge}}}"))


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return make_backend(request.param, tmp_path, request)


@pytest.fixture(scope="module", autouse=True)
def _prices_loaded() -> None:
    # The first read of the price data (once per process) must not eat the scenarios' timeouts.
    get_pricing_catalog().preload()


def manager_for(backend: Backend, edge: Edge, **options: Any) -> CostManager:
    manager = CostManager(backend=backend.ledger(edge.name), admission_poll=0.01, **options)
    manager.set_budget("hard", BudgetConfig(limit=edge.limit, period=BudgetPeriod.TOTAL))
    return manager


class Workers:
    """Four worker processes sharing a ledger; each scenario is split between them."""

    def __init__(self, backend: Backend, lease: float = 15.0) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
        self.procs = [subprocess.Popen(
            [sys.executable, str(WORKER), backend.spec, str(PROCESSES), str(i), str(lease)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=WORKER.parent, env=env) for i in range(PROCESSES)]

    async def _line(self, proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line:
            raise AssertionError(proc.stderr.read() if proc.stderr else "worker died")
        return line.strip()

    async def ready(self) -> None:
        for proc in self.procs:
            assert await self._line(proc) == "ready"

    def start(self, edge: str, base_url: str) -> None:
        for proc in self.procs:  # every worker competes from the same instant
            assert proc.stdin is not None
            proc.stdin.write(f"{edge} {base_url}\n")
            proc.stdin.flush()

    async def run(self, edge: str, base_url: str) -> dict[str, Any]:
        self.start(edge, base_url)
        seen: dict[str, Any] = {"ok": 0, "refused": 0, "unpriced": 0, "timeouts": 0,
                                "other": []}
        for proc in self.procs:
            result = json.loads(await self._line(proc))
            for key in ("ok", "refused", "unpriced", "timeouts"):
                seen[key] += result[key]
            seen["other"] += result["other"]
        return seen

    async def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                assert proc.stdin is not None
                proc.stdin.write("\n")
                proc.stdin.flush()
        for proc in self.procs:
            await asyncio.to_thread(proc.wait, HANG)

    def kill(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGKILL)


@asynccontextmanager
async def server_for(edge: Edge) -> AsyncIterator[MockProviderServer]:
    async with MockProviderServer(**edge.server) as server:
        for fault in edge.faults:
            server.add_fault(fault)
        yield server


async def settled(server: MockProviderServer) -> None:
    """Wait until the server has finished (and billed) every request it received."""
    deadline = time.monotonic() + HANG
    while server.stats()["in_flight"]:
        assert time.monotonic() < deadline, "the server never finished its requests"
        await asyncio.sleep(0.005)


def report(edge: str, kind: str, billed: Decimal, ledger: Decimal, limit: Decimal) -> None:
    print(f"\n| {edge} | {kind} | ${billed:f} ({billed / limit:.2f}× the limit) | "
          f"${ledger:f} |")


def check_edge(name: str, kind: str, seen: dict[str, Any], server: MockProviderServer,
               manager: CostManager) -> None:
    """The money assertions of one edge."""
    edge = EDGES[name]
    billed_entries = [entry.as_dict() for entry in server.billed]
    billed = price_billed(billed_entries)
    metrics = manager.get_metrics()
    status = manager.get_budget_status("hard")
    report(name, kind, billed, metrics.total_cost, edge.limit)
    assert seen["other"] == [], name
    assert billed <= edge.limit, f"{name}: the provider billed more than the hard limit"
    assert metrics.total_cost >= billed, f"{name}: the ledger holds less than the provider billed"
    if edge.usage_reported:
        assert metrics.total_cost == billed, name
    assert status.reserved == 0 and status.spent == metrics.total_cost <= edge.limit, name
    # Every attempt the provider billed is a ledger entry (more may be: sent but never reached).
    records = [r for r in manager.recent_records(100_000) if r.outcome != "provider_error"]
    assert len(records) >= len(billed_entries), name
    if name == "unpriced":
        assert server.request_count == 0 and seen["unpriced"] == edge.calls
        return
    assert billed_entries, f"{name}: the scenario should reach the provider"
    if name not in ("cancel", "retry"):
        assert seen["refused"] > 0, f"{name}: the scenario should meet the limit"
    if name == "cancel":
        assert metrics.estimated_requests >= len(billed_entries) and seen["timeouts"] > 0
    if name == "retry":
        assert metrics.attempts > metrics.calls  # timed-out attempts were billed too
    if name == "odd_usage":
        assert metrics.flagged_requests == seen["ok"] > 0
    if name == "no_max_tokens":
        assert all(e["completion_tokens"] <= 4096 for e in billed_entries)


async def test_money_holds_at_every_edge(backend: Backend) -> None:
    async with AsyncExitStack() as stack:
        workers = None
        if backend.kind != "memory":
            workers = Workers(backend)
            stack.push_async_callback(workers.close)
            await workers.ready()
        for name, edge in EDGES.items():
            async with server_for(edge) as server:
                if workers is None:
                    seen = await run_calls(edge, manager_for(backend, edge), server.base_url,
                                           edge.calls)
                else:
                    seen = await workers.run(name, server.base_url)
                await settled(server)
                manager = manager_for(backend, edge)
                check_edge(name, backend.kind, seen, server, manager)
                manager.reset()
                manager.close()


async def test_admission_uses_the_budget(backend: Backend) -> None:
    edge = ADMISSION
    async with server_for(edge) as server:
        if backend.kind == "memory":
            seen = await run_calls(edge, manager_for(backend, edge), server.base_url,
                                   edge.calls)
        else:
            workers = Workers(backend)
            await workers.ready()
            seen = await workers.run(edge.name, server.base_url)
            await workers.close()
        await settled(server)
        billed = price_billed([entry.as_dict() for entry in server.billed])
    manager = manager_for(backend, edge)
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


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_a_killed_worker_is_charged_within_its_lease(kind: str, tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    backend = make_backend(kind, tmp_path, request)
    edge = KILLED
    async with server_for(edge) as server:
        workers = Workers(backend, lease=1.0)
        await workers.ready()
        workers.start(edge.name, server.base_url)
        deadline = time.monotonic() + HANG
        while server.request_count < PROCESSES:  # the workers' first calls are at the provider
            assert time.monotonic() < deadline, "the workers never reached the provider"
            await asyncio.sleep(0.005)
        workers.kill()
        for proc in workers.procs:
            await asyncio.to_thread(proc.wait, HANG)
            assert proc.returncode == -signal.SIGKILL
        await settled(server)
        billed = price_billed([entry.as_dict() for entry in server.billed])
    assert billed > 0
    now = time.time()
    during = manager_for(backend, edge, clock=lambda: now)
    held = during.get_budget_status("hard").reserved
    after = manager_for(backend, edge, clock=lambda: now + 1.5)  # the leases have run out
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
