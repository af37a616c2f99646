"""The ledger contract on every backend (memory, SQLite, Redis): atomic all-or-nothing
reservations, leases that are renewed and, once expired, charged at the reserved amount (never
dropped), late settlements that replace that charge; and what only the durable and shared ones
promise: SQLite keeps every committed record through a restart and a kill -9."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llm_async import BudgetExceededError
from llm_async.application.cost_manager import (
    BudgetCheck,
    BudgetConfig,
    BudgetPeriod,
    CostManager,
    Hold,
    MemoryLedger,
    UsageRecord,
)
from llm_async.infrastructure.ledger_redis import RedisLedger
from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

KEY_A = ("total", "all", "all", "")
KEY_B = ("total", "all", "user", "u1")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        backend: Any = MemoryLedger()
    elif request.param == "sqlite":
        backend = SQLiteLedger(tmp_path / "ledger.db")
    else:
        url = request.getfixturevalue("redis_url")
        backend = RedisLedger(url, prefix="{ledger-test-" + uuid.uuid4().hex + "}")
    yield backend
    backend.clear()
    backend.close()


def record(cost: str | None, user: str | None = "u1", **fields: Any) -> UsageRecord:
    return UsageRecord(model="gpt-4o", user_id=user, input_tokens=10, output_tokens=5,
                       cost=Decimal(cost) if cost is not None else None, **fields)


def hold(rid: str, amount: int, checks: list[BudgetCheck], expires: float,
         charge: UsageRecord | None = None) -> Hold:
    counters = (KEY_A, KEY_B) if charge is not None else ()
    return Hold(rid, amount, tuple(checks), expires, charge, counters)


def test_reserve_is_all_or_nothing(ledger: Any) -> None:
    now = time.time()
    checks = [BudgetCheck("a", KEY_A, 100), BudgetCheck("b", KEY_B, 50)]
    assert ledger.reserve(hold("r1", 40, checks, now + 60), now).ok
    assert ledger.reserved(["a", "b"], now) == [40, 40]
    refused = ledger.reserve(hold("r2", 20, checks, now + 60), now)  # b: 40 + 20 > 50
    assert (refused.ok, refused.budget, refused.spent, refused.reserved) == (False, "b", 0, 40)
    assert ledger.reserved(["a", "b"], now) == [40, 40]  # nothing taken from "a" either
    ledger.release("r1")
    ledger.release("r1")  # twice is harmless
    assert ledger.reserved(["a", "b"], now) == [0, 0]


def test_commit_settles_counts_and_reports(ledger: Any) -> None:
    now = time.time()
    checks = [BudgetCheck("a", KEY_A, 10**9)]
    assert ledger.reserve(hold("r1", 5000, checks, now + 60), now).ok
    first = record("0.000003")
    totals = ledger.commit(first, [KEY_A, KEY_B, ("total", "all", "model", "gpt-4o")], "r1",
                           [KEY_A])
    assert totals == [3000]
    assert ledger.reserved(["a"], now) == [0]
    ledger.commit(record("0.000002", user=None, cache_hit=True), [KEY_A], None, [])
    ledger.commit(record(None, estimated=True), [KEY_A], None, [])
    a, b = ledger.read([KEY_A, KEY_B])
    assert (a.cost, a.requests, a.input_tokens, a.output_tokens) == (5000, 3, 30, 15)
    assert (a.cache_hits, a.estimated, a.unpriced) == (1, 1, 1)
    assert (b.cost, b.requests) == (3000, 1)
    assert ledger.read([("daily", "1999-01-01", "all", "")])[0].requests == 0
    assert set(ledger.dimension("all")) == {""}
    assert ledger.dimension("user")["u1"].cost == 3000
    recent = ledger.recent(10)
    assert [r.cost for r in recent] == [Decimal("0.000003"), Decimal("0.000002"), None]
    assert recent[0] == first
    assert [r.cost for r in ledger.recent(1)] == [None]


def test_an_expired_lease_is_charged_at_its_reserved_amount(ledger: Any) -> None:
    now = time.time()
    checks = [BudgetCheck("a", KEY_A, 100)]
    charge = UsageRecord(model="gpt-4o", user_id="u1", cost=Decimal("0.00000009"),
                         reserved=Decimal("0.00000009"), estimated=True,
                         outcome="lease_expired", call_id="c1")
    assert ledger.reserve(hold("crashed", 90, checks, now + 5, charge), now).ok
    assert not ledger.reserve(hold("r2", 20, checks, now + 60), now).ok
    later = now + 10  # its worker never renewed: the lease ran out
    assert ledger.reserved(["a"], later) == [0]
    a, b = ledger.read([KEY_A, KEY_B])
    assert (a.cost, a.requests, a.estimated, a.lease_expired) == (90, 1, 1, 1)
    assert b.cost == 90
    [kept] = ledger.recent(5)
    assert (kept.outcome, kept.call_id, kept.cost) == ("lease_expired", "c1", Decimal("9E-8"))
    # The spend stays: only 10 is left of the limit.
    assert not ledger.reserve(hold("r3", 20, checks, later + 60), later).ok
    assert ledger.reserve(hold("r4", 10, checks, later + 60), later).ok


def test_renewed_leases_keep_holding(ledger: Any) -> None:
    now = time.time()
    checks = [BudgetCheck("a", KEY_A, 100)]
    assert ledger.reserve(hold("live", 60, checks, now + 5), now).ok
    assert ledger.reserve(hold("dead", 30, checks, now + 5), now).ok
    assert ledger.renew(["live"], now + 20, now + 4) == []
    assert ledger.reserved(["a"], now + 10) == [60]  # "dead" was charged, "live" still holds
    assert ledger.read([KEY_A])[0].cost == 30
    assert ledger.renew(["live", "dead"], now + 40, now + 11) == ["dead"]
    assert ledger.reserved(["a"], now + 30) == [60]


def test_a_late_settlement_replaces_the_expiry_charge(ledger: Any) -> None:
    now = time.time()
    checks = [BudgetCheck("a", KEY_A, 1000)]
    charge = UsageRecord(model="gpt-4o", cost=Decimal("0.0000005"), estimated=True,
                         outcome="lease_expired")
    assert ledger.reserve(hold("slow", 500, checks, now + 1, charge), now).ok
    assert ledger.reserved(["a"], now + 2) == [0]  # expired and charged
    assert ledger.read([KEY_A])[0].cost == 500
    # The hung worker comes back and settles with the real bill: it replaces the charge.
    ledger.commit(record("0.00000012"), [KEY_A, KEY_B], "slow", [])
    a = ledger.read([KEY_A])[0]
    assert (a.cost, a.requests, a.lease_expired, a.estimated) == (120, 1, 0, 0)
    # A reservation charged and then released (nothing was sent) leaves nothing behind.
    assert ledger.reserve(hold("idle", 300, checks, now + 1, charge), now).ok
    assert ledger.reserved(["a"], now + 2) == [0]
    ledger.release("idle")
    assert ledger.read([KEY_A])[0].cost == 120


def test_clear(ledger: Any) -> None:
    now = time.time()
    ledger.reserve(hold("r", 1, [BudgetCheck("a", KEY_A, 10)], now + 60), now)
    ledger.commit(record("0.1"), [KEY_A], None, [])
    ledger.clear()
    assert ledger.read([KEY_A])[0].cost == 0 and ledger.recent(5) == []
    assert ledger.reserved(["a"], now) == [0]


def test_sqlite_spend_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "costs.db"
    first = CostManager(backend=SQLiteLedger(path))
    first.set_budget("month", BudgetConfig(limit=10, period=BudgetPeriod.MONTHLY))
    first.track_usage("gpt-4", 1000, 500, user_id="u1")
    first.close()
    second = CostManager(backend=SQLiteLedger(path))
    second.set_budget("month", BudgetConfig(limit=10, period=BudgetPeriod.MONTHLY))
    assert second.get_budget_status("month").spent == Decimal("0.06")
    assert second.get_metrics().by_user == {"u1": Decimal("0.06")}
    second.close()


def test_sqlite_loses_nothing_when_the_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    script = textwrap.dedent(f"""
        import os, signal
        from llm_async.application.cost_manager import CostManager
        from llm_async.infrastructure.ledger_sqlite import SQLiteLedger
        manager = CostManager(backend=SQLiteLedger({str(path)!r}))
        for i in range(25):
            manager.track_usage("gpt-4o-mini", 1000 + i, 100)
        print("recorded", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -9 and "recorded" in proc.stdout, proc.stderr
    ledger = SQLiteLedger(path)
    manager = CostManager(backend=ledger)
    assert ledger.count_records() == 25
    expected = sum((Decimal(1000 + i) * Decimal("0.15") + 100 * Decimal("0.60")
                    for i in range(25)), Decimal(0)) / 10**6
    assert manager.get_metrics().total_cost == expected
    manager.close()


def test_sqlite_max_records_keeps_counters(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "cap.db", max_records=3)
    manager = CostManager(backend=ledger)
    for _ in range(5):
        manager.track_usage("gpt-4o", 100, 10)
    assert ledger.count_records() == 3
    assert manager.get_metrics().requests == 5
    manager.close()


def test_redis_ledger_is_shared_between_managers(redis_url: str) -> None:
    prefix = "{ledger-shared-" + uuid.uuid4().hex + "}"
    one = CostManager(backend=RedisLedger(redis_url, prefix=prefix))
    two = CostManager(backend=RedisLedger(redis_url, prefix=prefix))
    for m in (one, two):
        m.set_budget("team", BudgetConfig(limit=Decimal("0.10"), period=BudgetPeriod.TOTAL))
    try:
        one.track_usage("gpt-4", 1000, 500, project_id="p")
        held = two.reserve(Decimal("0.03"), model="gpt-4o")
        assert held is not None
        assert one.get_budget_status("team").reserved == Decimal("0.03")
        with pytest.raises(BudgetExceededError, match="budget 'team' would be exceeded"):
            one.reserve(Decimal("0.02"), model="gpt-4o")
        two.release(held)
        assert one.get_metrics().by_project == {"p": Decimal("0.06")}
        assert two.get_budget_status("team").spent == Decimal("0.06")
    finally:
        one.reset()
        one.close()
        two.close()
