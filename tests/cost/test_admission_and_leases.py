"""Admission that uses the budget (a call that does not fit only because of calls in flight
waits for them, first come first served, cancellable and bounded; one that can never fit fails
at once) and leases (renewed while a call runs, charged at the reserved amount once they run
out, within seconds for a killed worker, on every ledger)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llm_async import BudgetExceededError
from llm_async.application.cost_manager import (
    BudgetConfig,
    BudgetPeriod,
    CostManager,
    MemoryLedger,
)
from llm_async.infrastructure.ledger_redis import RedisLedger
from llm_async.infrastructure.ledger_sqlite import SQLiteLedger

NANO = Decimal("1e-9")
HANG = 120.0  # a hang guard, never reached when the code is right


class Clock:
    """Epoch seconds that only move when told to."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def manager(limit: str = "0.000001", **options: Any) -> CostManager:
    m = CostManager(backend=MemoryLedger(), **options)
    m.set_budget("hard", BudgetConfig(limit=Decimal(limit), period=BudgetPeriod.TOTAL))
    return m


async def test_a_call_waits_for_calls_in_flight_in_arrival_order() -> None:
    m = manager()  # 1,000 nano-dollars
    first = await m.areserve(600, model="gpt-4o")
    order: list[str] = []

    async def later(name: str, amount: int) -> None:
        reservation = await m.areserve(amount, model="gpt-4o")
        order.append(name)
        m.record(m.build_record("gpt-4o", cost=Decimal(100) * NANO), reservation)

    waiting = [asyncio.create_task(later("b", 500)), asyncio.create_task(later("c", 300))]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == [] and m.metrics()["cost.budget.admission_waits"] == 2
    # "c" would fit now (600 + 300 <= 1000) but arrived after "b": it does not jump the line.
    m.record(m.build_record("gpt-4o", cost=Decimal(200) * NANO), first)
    await asyncio.gather(*waiting)
    assert order == ["b", "c"]
    assert m.get_budget_status("hard").spent == Decimal(400) * NANO
    assert m.get_budget_status("hard").reserved == 0


async def test_a_call_that_can_never_fit_fails_at_once() -> None:
    m = manager()
    m.track_usage("gpt-4o", cost=Decimal(700) * NANO)
    held = await m.areserve(100, model="gpt-4o")
    with pytest.raises(BudgetExceededError, match="nothing was sent") as caught:
        await m.areserve(400, model="gpt-4o")  # spent 700 + 400 > 1000 whatever settles
    assert caught.value.spent == Decimal(700) * NANO
    assert caught.value.reserved == Decimal(100) * NANO
    assert m.metrics()["cost.budget.admission_waits"] == 0
    m.release(held)


async def test_waiting_is_bounded_and_cancellable() -> None:
    m = manager(admission_timeout=0.005, admission_poll=0.001)
    held = await m.areserve(900, model="gpt-4o")
    with pytest.raises(BudgetExceededError, match=r"after waiting 0\.005 s"):
        await m.areserve(500, model="gpt-4o")
    m.admission_timeout = 30.0
    blocked = asyncio.create_task(m.areserve(500, model="gpt-4o"))
    behind = asyncio.create_task(m.areserve(50, model="gpt-4o"))
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    # The cancelled head left the queue and woke the next one, which fits.
    reservation = await asyncio.wait_for(behind, HANG)
    assert reservation is not None and not m._queue
    m.release(reservation)
    m.release(held)
    assert m.get_budget_status("hard").reserved == 0


async def test_leases_are_renewed_while_a_call_runs_and_charged_once_they_lapse() -> None:
    clock = Clock()
    m = manager(lease=10.0, clock=clock)
    live = await m.areserve(300, model="gpt-4o", user_id="u")
    assert m._renewer is not None and m._renewer.is_alive()  # renews every lease / 3
    for _ in range(5):  # the running call's lease is renewed: it never lapses
        clock.now += 6
        assert m.renew_leases() == []
    assert m.get_budget_status("hard").reserved == Decimal(300) * NANO
    m._live.clear()  # the worker stops renewing (hung or killed)
    clock.now += 11
    status = m.get_budget_status("hard")
    assert (status.reserved, status.spent) == (0, Decimal(300) * NANO)
    metrics = m.get_metrics()
    assert (metrics.lease_expired, metrics.estimated_requests) == (1, 1)
    assert metrics.by_user == {"u": Decimal(300) * NANO}
    [charged] = m.recent_records()
    assert charged.outcome == "lease_expired" and charged.estimated
    # Settling after all replaces the charge with the real bill.
    m.record(m.build_record("gpt-4o", cost=Decimal(120) * NANO, user_id="u"), live)
    assert m.get_budget_status("hard").spent == Decimal(120) * NANO
    m.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_killed_workers_hold_ends_within_its_lease(kind: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    if kind == "sqlite":
        spec = f"SQLiteLedger({str(tmp_path / 'killed.db')!r})"
        make = lambda: SQLiteLedger(tmp_path / "killed.db")  # noqa: E731
    else:
        url = request.getfixturevalue("redis_url")
        prefix = "{killed-" + uuid.uuid4().hex + "}"
        spec = f"RedisLedger({url!r}, prefix={prefix!r})"
        make = lambda: RedisLedger(url, prefix=prefix)  # noqa: E731
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from decimal import Decimal
        from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, CostManager
        from llm_async.infrastructure.ledger_sqlite import SQLiteLedger
        from llm_async.infrastructure.ledger_redis import RedisLedger
        m = CostManager(backend={spec}, lease=2.0)
        m.set_budget("team", BudgetConfig(limit=Decimal("1"), period=BudgetPeriod.TOTAL))
        asyncio.run(m.areserve(Decimal("0.98"), model="gpt-4o", project_id="p"))
        print("reserved", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -9 and "reserved" in proc.stdout, proc.stderr
    import time

    now = time.time()
    observer = CostManager(backend=make(), clock=lambda: now)
    observer.set_budget("team", BudgetConfig(limit=Decimal("1"), period=BudgetPeriod.TOTAL))
    assert observer.get_budget_status("team").reserved == Decimal("0.98")  # still leased
    later = CostManager(backend=make(), clock=lambda: now + 2.5)  # the lease has run out
    later.set_budget("team", BudgetConfig(limit=Decimal("1"), period=BudgetPeriod.TOTAL))
    status = later.get_budget_status("team")
    assert (status.reserved, status.spent) == (0, Decimal("0.98"))  # charged, not dropped
    assert later.get_metrics().by_project == {"p": Decimal("0.98")}
    later.reset()
    observer.close()
    later.close()


class GatedLedger(SQLiteLedger):
    """A SQLite ledger whose ``reserve`` and ``commit`` wait for the test's go-ahead (in the
    ledger's worker thread), so a cancellation can be made to land while one is running."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = {"reserve": threading.Event(), "commit": threading.Event()}
        self.go = {"reserve": threading.Event(), "commit": threading.Event()}

    def _gate(self, name: str) -> None:
        self.entered[name].set()
        assert self.go[name].wait(HANG), "the test never let the ledger go on"

    def reserve(self, hold: Any, now: float) -> Any:
        self._gate("reserve")
        return super().reserve(hold, now)

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self._gate("commit")
        return super().commit(*args, **kwargs)


@pytest.mark.parametrize("step", ["reserve", "commit"])
async def test_a_call_cancelled_during_a_ledger_write_ends_with_the_ledger_settled(
        step: str, tmp_path: Path) -> None:
    """A caller cancelled while its reservation (or its bill) is being written waits for that
    write: once the cancelled call has ended, nothing is held, and a bill is recorded."""
    ledger = GatedLedger(tmp_path / "gated.db")
    m = CostManager(backend=ledger)
    m.set_budget("hard", BudgetConfig(limit=Decimal("0.001"), period=BudgetPeriod.TOTAL))
    if step == "commit":
        ledger.go["reserve"].set()
        reservation = await m.areserve(500, model="gpt-4o")
        call = asyncio.create_task(
            m.arecord(m.build_record("gpt-4o", cost=Decimal(300) * NANO), reservation))
    else:
        call = asyncio.create_task(m.areserve(500, model="gpt-4o"))
    try:
        assert await asyncio.to_thread(ledger.entered[step].wait, HANG)
        call.cancel()
        for _ in range(5):  # the cancellation is delivered; the call must still be waiting
            await asyncio.sleep(0)
        assert not call.done()
    finally:
        ledger.go[step].set()
    with pytest.raises(asyncio.CancelledError):
        await call
    status = m.get_budget_status("hard")
    assert status.reserved == 0
    assert status.spent == (Decimal(300) * NANO if step == "commit" else 0)
    m.close()
