"""A durable cost ledger in one SQLite file (standard library ``sqlite3``).

::

    manager = CostManager(backend=SQLiteLedger("costs.db"))

Every record is committed in its own transaction (WAL journal), so the spend survives a restart
and a process killed between calls loses nothing. Reservations and commits run in
``BEGIN IMMEDIATE`` transactions, which SQLite serialises across every connection to the file —
several processes on one machine can share a ledger and its budgets. The manager runs these
blocking calls in a worker thread (``blocking = True``), so the event loop never waits on disk.

``synchronous="NORMAL"`` (the default) survives the process being killed; use ``"FULL"`` to
survive a power cut as well, at the price of one fsync per call.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from ..application.cost_manager import (
    COUNTER_FIELDS,
    BudgetCheck,
    Counter,
    CounterKey,
    ReserveResult,
    UsageRecord,
)

__all__ = ["SQLiteLedger"]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    period TEXT NOT NULL, win TEXT NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL,
    {", ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in COUNTER_FIELDS)},
    PRIMARY KEY (period, win, dim, value)
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT NOT NULL, budget TEXT NOT NULL, amount INTEGER NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (id, budget)
);
CREATE INDEX IF NOT EXISTS reservations_budget ON reservations (budget);
CREATE INDEX IF NOT EXISTS reservations_expires ON reservations (expires);
"""

_UPSERT = (
    f"INSERT INTO counters (period, win, dim, value, {', '.join(COUNTER_FIELDS)}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' for _ in COUNTER_FIELDS)}) "
    f"ON CONFLICT (period, win, dim, value) DO UPDATE SET "
    + ", ".join(f"{n} = {n} + excluded.{n}" for n in COUNTER_FIELDS)
)
_SELECT = (f"SELECT {', '.join(COUNTER_FIELDS)} FROM counters "
           f"WHERE period = ? AND win = ? AND dim = ? AND value = ?")


class SQLiteLedger:
    """A :class:`~llm_async.application.cost_manager.Ledger` in a SQLite file.

    ``path`` may be ``":memory:"`` for a throw-away ledger. ``max_records`` caps the rows kept
    in ``records`` (``None`` keeps all); counters are never truncated.
    """

    blocking: ClassVar[bool] = True

    def __init__(self, path: str | Path, *, timeout: float = 30.0,
                 synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL",
                 max_records: int | None = None) -> None:
        self.path = str(path)
        self.max_records = max_records
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        self._closed = False

    # -- transactions -----------------------------------------------------------------------

    def _begin(self) -> sqlite3.Cursor:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        return cur

    def _spent(self, cur: sqlite3.Cursor, key: CounterKey) -> int:
        row = cur.execute("SELECT cost FROM counters WHERE period = ? AND win = ? AND dim = ? "
                          "AND value = ?", key).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _held(cur: sqlite3.Cursor, budget: str) -> int:
        row = cur.execute("SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE budget = ?",
                          (budget,)).fetchone()
        return int(row[0])

    def reserve(self, reservation_id: str, amount: int, checks: Sequence[BudgetCheck],
                expires_at: float, now: float) -> ReserveResult:
        with self._lock:
            cur = self._begin()
            try:
                cur.execute("DELETE FROM reservations WHERE expires <= ?", (now,))
                for check in checks:
                    spent = self._spent(cur, check.key)
                    held = self._held(cur, check.name)
                    if spent + held + amount > check.limit:
                        cur.execute("COMMIT")
                        return ReserveResult(False, check.name, spent, held)
                cur.executemany(
                    "INSERT INTO reservations (id, budget, amount, expires) VALUES (?, ?, ?, ?)",
                    [(reservation_id, c.name, amount, expires_at) for c in checks])
                cur.execute("COMMIT")
                return ReserveResult(True)
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def release(self, reservation_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        inc = Counter.of(record).as_tuple()
        data = record.model_dump_json()
        with self._lock:
            cur = self._begin()
            try:
                if reservation_id is not None:
                    cur.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
                cur.executemany(_UPSERT, [(*key, *inc) for key in counters])
                cur.execute("INSERT INTO records (id, ts, data) VALUES (?, ?, ?)",
                            (record.id, record.timestamp.isoformat(), data))
                if self.max_records is not None:
                    cur.execute("DELETE FROM records WHERE seq <= "
                                "(SELECT MAX(seq) FROM records) - ?", (self.max_records,))
                totals = [self._spent(cur, key) for key in watch]
                cur.execute("COMMIT")
                return totals
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # -- reads ------------------------------------------------------------------------------

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        with self._lock:
            out = []
            for key in keys:
                row = self._db.execute(_SELECT, key).fetchone()
                out.append(Counter(*row) if row else Counter())
            return out

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
        with self._lock:
            cur = self._db.cursor()
            out = []
            for name in budgets:
                row = cur.execute("SELECT COALESCE(SUM(amount), 0) FROM reservations "
                                  "WHERE budget = ? AND expires > ?", (name, now)).fetchone()
                out.append(int(row[0]))
            return out

    def dimension(self, dim: str) -> dict[str, Counter]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT value, {', '.join(COUNTER_FIELDS)} FROM counters "
                f"WHERE period = 'total' AND dim = ?", (dim,)).fetchall()
        return {str(row[0]): Counter(*row[1:]) for row in rows}

    def recent(self, limit: int) -> list[UsageRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM records ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [UsageRecord.model_validate_json(row[0]) for row in reversed(rows)]

    def count_records(self) -> int:
        """How many records the file holds."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def clear(self) -> None:
        with self._lock:
            cur = self._begin()
            cur.execute("DELETE FROM records")
            cur.execute("DELETE FROM counters")
            cur.execute("DELETE FROM reservations")
            cur.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"
