"""A durable cost ledger in one SQLite file (standard library ``sqlite3``).

::

    manager = CostManager(backend=SQLiteLedger("costs.db"))

Every record is committed in its own transaction (WAL journal), so the spend survives a restart
and a process killed between calls loses nothing. Reservations, renewals and commits run in
``BEGIN IMMEDIATE`` transactions, which SQLite serialises across every connection to the file —
several processes on one machine share a ledger and its budgets. A reservation whose lease runs
out (its process was killed) is charged at its reserved amount by the next transaction that
looks at reservations. The manager runs these blocking calls in a worker thread
(``blocking = True``), so the event loop never waits on disk.

``synchronous="NORMAL"`` (the default) survives the process being killed; use ``"FULL"`` to
survive a power cut as well, at the price of one fsync per call.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ...application.cost_manager.ledger import default_charge
from ...application.cost_manager.records import (
    COUNTER_FIELDS,
    Counter,
    CounterKey,
    Hold,
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
    id TEXT NOT NULL, budget TEXT NOT NULL, amount INTEGER NOT NULL,
    PRIMARY KEY (id, budget)
);
CREATE INDEX IF NOT EXISTS reservations_budget ON reservations (budget);
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY, expires REAL NOT NULL, charge TEXT NOT NULL, keys TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_expires ON holds (expires);
CREATE TABLE IF NOT EXISTS tombstones (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, inc TEXT NOT NULL,
    keys TEXT NOT NULL
);
"""

_UPSERT = (
    f"INSERT INTO counters (period, win, dim, value, {', '.join(COUNTER_FIELDS)}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' for _ in COUNTER_FIELDS)}) "
    f"ON CONFLICT (period, win, dim, value) DO UPDATE SET "
    + ", ".join(f"{n} = {n} + excluded.{n}" for n in COUNTER_FIELDS)
)
_SELECT = (f"SELECT {', '.join(COUNTER_FIELDS)} FROM counters "
           f"WHERE period = ? AND win = ? AND dim = ? AND value = ?")
#: Charged-and-expired reservations remembered (so a late settlement replaces the charge).
_TOMBSTONES = 100_000


class SQLiteLedger:
    """A :class:`~llm_async.application.cost_manager.Ledger` in a SQLite file.

    ``path`` may be ``":memory:"`` for a throw-away ledger. ``max_records`` caps the rows kept
    in ``records`` (``None`` keeps all); counters are never truncated.
    """

    blocking: bool = True

    def __init__(self, path: str | Path, *, timeout: float = 30.0,
                 synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL",
                 max_records: int | None = None) -> None:
        self.path = str(path)
        self.max_records = max_records
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        # Several processes may open one file at once: switching it to WAL and creating the
        # schema can meet another opener's lock, which SQLite reports at once (its busy
        # handler does not cover a journal-mode change), so those steps are retried.
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                self._prepare(synchronous)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        self._closed = False

    def _prepare(self, synchronous: str) -> None:
        """WAL mode, the synchronous level and the schema (idempotent)."""
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(counters)")}
        for name in COUNTER_FIELDS:
            if name not in have:  # a file written before this counter existed
                self._db.execute(
                    f"ALTER TABLE counters ADD COLUMN {name} INTEGER NOT NULL DEFAULT 0")

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

    def _append(self, cur: sqlite3.Cursor, record: UsageRecord,
                keys: Sequence[CounterKey], inc: tuple[int, ...]) -> None:
        cur.executemany(_UPSERT, [(*key, *inc) for key in keys])
        cur.execute("INSERT OR IGNORE INTO records (id, ts, data) VALUES (?, ?, ?)",
                    (record.id, record.timestamp.isoformat(), record.model_dump_json()))
        if self.max_records is not None:
            cur.execute("DELETE FROM records WHERE seq <= "
                        "(SELECT MAX(seq) FROM records) - ?", (self.max_records,))

    def _purge(self, cur: sqlite3.Cursor, now: float) -> None:
        """Charge every hold whose lease expired at its reserved amount (inside a
        transaction)."""
        rows = cur.execute("SELECT id, charge, keys FROM holds WHERE expires <= ?",
                           (now,)).fetchall()
        for rid, charge, keys_json in rows:
            record = UsageRecord.model_validate_json(charge)
            keys: list[CounterKey] = [(k[0], k[1], k[2], k[3]) for k in json.loads(keys_json)]
            inc = Counter.of(record).as_tuple()
            self._append(cur, record, keys, inc)
            cur.execute("INSERT OR REPLACE INTO tombstones (id, inc, keys) VALUES (?, ?, ?)",
                        (rid, json.dumps(inc), keys_json))
            cur.execute("DELETE FROM holds WHERE id = ?", (rid,))
            cur.execute("DELETE FROM reservations WHERE id = ?", (rid,))
        if rows:
            cur.execute("DELETE FROM tombstones WHERE seq <= (SELECT MAX(seq) FROM tombstones)"
                        " - ?", (_TOMBSTONES,))

    def _settle(self, cur: sqlite3.Cursor, rid: str) -> None:
        """Drop a live hold, or undo the expired-lease charge of one already charged."""
        if cur.execute("DELETE FROM holds WHERE id = ?", (rid,)).rowcount:
            cur.execute("DELETE FROM reservations WHERE id = ?", (rid,))
            return
        row = cur.execute("SELECT inc, keys FROM tombstones WHERE id = ?", (rid,)).fetchone()
        if row is not None:
            undo = tuple(-v for v in json.loads(row[0]))
            cur.executemany(_UPSERT, [(*k, *undo) for k in json.loads(row[1])])
            cur.execute("DELETE FROM tombstones WHERE id = ?", (rid,))

    def _transaction(self) -> _Tx:
        return _Tx(self)

    # -- the port ---------------------------------------------------------------------------

    def reserve(self, hold: Hold, now: float) -> ReserveResult:
        record, keys = default_charge(hold)
        charge = record.model_dump_json()
        with self._transaction() as cur:
            self._purge(cur, now)
            for check in hold.checks:
                spent = self._spent(cur, check.key)
                held = self._held(cur, check.name)
                if spent + held + hold.amount > check.limit:
                    return ReserveResult(False, check.name, spent, held)
            cur.executemany("INSERT INTO reservations (id, budget, amount) VALUES (?, ?, ?)",
                            [(hold.id, c.name, hold.amount) for c in hold.checks])
            cur.execute("INSERT INTO holds (id, expires, charge, keys) VALUES (?, ?, ?, ?)",
                        (hold.id, hold.expires_at, charge, json.dumps(keys)))
            return ReserveResult(True)

    def renew(self, ids: Sequence[str], expires_at: float, now: float) -> list[str]:
        gone = []
        with self._transaction() as cur:
            self._purge(cur, now)
            for rid in ids:
                if not cur.execute("UPDATE holds SET expires = ? WHERE id = ?",
                                   (expires_at, rid)).rowcount:
                    gone.append(rid)
        return gone

    def release(self, reservation_id: str) -> None:
        with self._transaction() as cur:
            self._settle(cur, reservation_id)

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        inc = Counter.of(record).as_tuple()
        with self._transaction() as cur:
            if reservation_id is not None:
                self._settle(cur, reservation_id)
            self._append(cur, record, counters, inc)
            return [self._spent(cur, key) for key in watch]

    # -- reads ------------------------------------------------------------------------------

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        with self._lock:
            out = []
            for key in keys:
                row = self._db.execute(_SELECT, key).fetchone()
                out.append(Counter(*row) if row else Counter())
            return out

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
        with self._transaction() as cur:
            self._purge(cur, now)
            return [self._held(cur, name) for name in budgets]

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
        with self._transaction() as cur:
            for table in ("records", "counters", "reservations", "holds", "tombstones"):
                cur.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"


class _Tx:
    """``with ledger._transaction() as cur``: the connection's lock and one ``BEGIN
    IMMEDIATE`` transaction, committed on success and rolled back on any error."""

    def __init__(self, ledger: SQLiteLedger) -> None:
        self.ledger = ledger
        self.cur: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        self.ledger._lock.acquire()
        try:
            self.cur = self.ledger._begin()
        except BaseException:
            self.ledger._lock.release()
            raise
        return self.cur

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.cur is not None
        try:
            self.cur.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.ledger._lock.release()
