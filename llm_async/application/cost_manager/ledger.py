"""The ledger port, and the in-process ledger.

A ledger keeps three things: the usage records, the spend counters (sums of the records per
period window and per user, project and model) and the reservations of calls in flight. A
reservation is a :class:`~.records.Hold` with a short **lease**: the call renews it while it
runs; a lease that runs out (its worker was killed or hung) is charged at its reserved amount,
as a record marked ``lease_expired``, never silently dropped. If the call settles after its
lease was charged, the charge is replaced by the real bill.

:class:`MemoryLedger` is the default; ``SQLiteLedger`` and ``RedisLedger`` (in
:mod:`llm_async.infrastructure.state`) implement the same contract for several processes.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .money import to_nano
from .records import (
    COUNTER_FIELDS,
    Counter,
    CounterKey,
    Hold,
    RecordRow,
    ReserveResult,
    UsageRecord,
    record_from_row,
)

__all__ = ["Ledger", "MemoryLedger", "default_charge"]

#: How many charged-and-expired reservations a ledger remembers, so that a late settlement
#: replaces the charge instead of adding to it.
TOMBSTONES = 100_000
_FIELDS = len(COUNTER_FIELDS)
_MASK = (1 << 64) - 1


def _pack(values: Sequence[int]) -> int:
    """Counter fields (each below 2⁶³) packed into one int, 64 bits each."""
    packed = 0
    for index, value in enumerate(values):
        packed += value << (64 * index)
    return packed


def _unpack(packed: int) -> Counter:
    return Counter(*((packed >> (64 * i)) & _MASK for i in range(_FIELDS)))


@runtime_checkable
class Ledger(Protocol):
    """Where usage records, spend counters and budget reservations live.

    Amounts are integer nano-dollars, times are epoch seconds. ``blocking`` says whether the
    methods do I/O (then the manager runs them in a worker thread). ``reserve`` is atomic: it
    checks every budget and reserves on all of them, or on none. Every method that reads
    reservations first charges the ones whose lease has expired.
    """

    blocking: bool

    def reserve(self, hold: Hold, now: float) -> ReserveResult:
        """Reserve ``hold.amount`` on every budget of ``hold.checks`` if each one's spend plus
        its reservations plus the amount stays within its limit."""
        ...

    def renew(self, ids: Sequence[str], expires_at: float, now: float) -> list[str]:
        """Extend the leases of ``ids`` to ``expires_at``; returns the ids that are no longer
        held (their lease had expired and was charged)."""
        ...

    def release(self, reservation_id: str) -> None:
        """Drop a reservation whose call sent nothing (unknown ids are ignored; a reservation
        already charged for an expired lease has that charge undone)."""
        ...

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        """Atomically append ``record``, add it to ``counters``, settle the reservation (or
        replace its expired-lease charge), and return the ``cost`` of each ``watch`` counter
        afterwards."""
        ...

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        """The counters of ``keys`` (zero when absent)."""
        ...

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
        """The amount currently reserved on each budget (expired leases are charged first)."""
        ...

    def dimension(self, dim: str) -> dict[str, Counter]:
        """All-time counters of every value of ``dim`` (all, user, project or model)."""
        ...

    def recent(self, limit: int) -> list[UsageRecord]:
        """Up to ``limit`` most recent records, oldest first."""
        ...

    def clear(self) -> None:
        """Forget every record, counter and reservation."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def default_charge(hold: Hold) -> tuple[UsageRecord, tuple[CounterKey, ...]]:
    """What an expired hold is charged as: its own ``charge`` record and counters, or (for a
    hold reserved without one) an anonymous record on its budgets' counters."""
    if hold.charge is not None:
        return hold.charge, hold.counters or tuple(c.key for c in hold.checks)
    from .money import from_nano

    record = UsageRecord(model="unknown", cost=from_nano(hold.amount),
                         reserved=from_nano(hold.amount), estimated=True,
                         outcome="lease_expired", counts_call=False)
    return record, tuple(dict.fromkeys(c.key for c in hold.checks))


class MemoryLedger:
    """The in-process ledger (the default). Thread-safe; keeps the last ``max_records`` records
    (counters are never truncated)."""

    blocking: bool = False

    def __init__(self, max_records: int = 10_000) -> None:
        self._lock = threading.Lock()
        # Each counter packed into one int, COUNTER_FIELDS as 64-bit fields (one addition per
        # counter per record).
        self._counters: dict[CounterKey, list[int]] = {}
        # The cells of recently added key tuples (by identity): most records add to the same
        # counters as the one before, so they skip the lookups.
        self._cells: dict[int, tuple[Sequence[CounterKey], list[list[int]]]] = {}
        # Records, and rows (RecordRow) of usual attempts not yet read as records.
        self._records: deque[UsageRecord | RecordRow] = deque(maxlen=max_records)
        self._rows = False
        self._holds: dict[str, Hold] = {}
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._reserved: dict[str, int] = {}
        self._tombs: OrderedDict[str, tuple[Counter, tuple[CounterKey, ...]]] = OrderedDict()

    # -- internals (called with the lock held) ------------------------------------------------

    def _add(self, keys: Sequence[CounterKey], inc: Counter, sign: int = 1) -> None:
        self._add_packed(keys, sign * _pack(inc.as_tuple()))

    def _add_packed(self, keys: Sequence[CounterKey], packed: int) -> None:
        found = self._cells.get(id(keys))
        if found is None or found[0] is not keys:
            table = self._counters
            cells = []
            for key in keys:
                cell = table.get(key)
                if cell is None:
                    cell = table[key] = [0]
                cells.append(cell)
            if len(self._cells) >= 1024:
                self._cells.clear()
            self._cells[id(keys)] = found = (keys, cells)
        for cell in found[1]:
            cell[0] += packed

    def _value(self, key: CounterKey) -> int:
        cell = self._counters.get(key)
        return cell[0] if cell is not None else 0

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expires, rid = heapq.heappop(heap)
            if self._expires.get(rid) == expires:
                self._charge(rid)

    def _charge(self, rid: str) -> None:
        hold = self._drop(rid)
        if hold is None:
            return
        record, keys = default_charge(hold)
        inc = Counter.of(record)
        self._add(keys, inc)
        self._records.append(record)
        self._tombs[rid] = (inc, keys)
        while len(self._tombs) > TOMBSTONES:
            self._tombs.popitem(last=False)

    def _drop(self, rid: str) -> Hold | None:
        hold = self._holds.pop(rid, None)
        if hold is None:
            return None
        self._expires.pop(rid, None)
        for check in hold.checks:
            left = self._reserved.get(check.name, 0) - hold.amount
            if left > 0:
                self._reserved[check.name] = left
            else:
                self._reserved.pop(check.name, None)
        return hold

    def _undo_tomb(self, rid: str) -> None:
        tomb = self._tombs.pop(rid, None)
        if tomb is not None:
            self._add(tomb[1], tomb[0], -1)

    # -- the port ------------------------------------------------------------------------------

    def reserve(self, hold: Hold, now: float) -> ReserveResult:
        with self._lock:
            self._purge(now)
            amount = hold.amount
            for check in hold.checks:
                spent = self._value(check.key) & _MASK
                held = self._reserved.get(check.name, 0)
                if spent + held + amount > check.limit:
                    return ReserveResult(False, check.name, spent, held)
            self._holds[hold.id] = hold
            self._expires[hold.id] = hold.expires_at
            heapq.heappush(self._heap, (hold.expires_at, hold.id))
            for check in hold.checks:
                self._reserved[check.name] = self._reserved.get(check.name, 0) + amount
            return ReserveResult(True)

    def renew(self, ids: Sequence[str], expires_at: float, now: float) -> list[str]:
        with self._lock:
            self._purge(now)
            gone = []
            for rid in ids:
                if rid in self._holds:
                    self._expires[rid] = expires_at
                    heapq.heappush(self._heap, (expires_at, rid))
                else:
                    gone.append(rid)
            return gone

    def release(self, reservation_id: str) -> None:
        with self._lock:
            if self._drop(reservation_id) is None:
                self._undo_tomb(reservation_id)

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        return self.commit_nano(record, counters, reservation_id, watch,
                                to_nano(record.cost) if record.cost is not None else 0)

    def commit_nano(self, record: UsageRecord, counters: Sequence[CounterKey],
                    reservation_id: str | None, watch: Sequence[CounterKey],
                    cost: int, plain: bool = False) -> list[int]:
        """:meth:`commit` of a record whose cost in nano-dollars is ``cost`` already; ``plain``
        promises it has nothing but input and output tokens, a cost and ``counts_call``."""
        if plain or not (record.cache_read_tokens or record.cache_write_tokens
                         or record.reasoning_tokens or record.cache_hit or record.estimated
                         or record.cost is None or record.outcome == "lease_expired"
                         or record.flags):
            # Counter.of(record), packed (the hot path of every call).
            packed = (cost | 1 << 64 | record.input_tokens << 128
                      | record.output_tokens << 192 | int(record.counts_call) << 640)
        else:
            packed = _pack(Counter.of(record).as_tuple())
        with self._lock:
            if reservation_id is not None and self._drop(reservation_id) is None:
                self._undo_tomb(reservation_id)
            self._add_packed(counters, packed)
            self._records.append(record)
            return [self._value(k) & _MASK for k in watch]

    def commit_row(self, row: RecordRow, counters: Sequence[CounterKey], cost: int) -> None:
        """Commit a usual attempt (:data:`~.records.RecordRow`) whose cost in nano-dollars is
        ``cost``, with no reservation; its record is made when it is first read."""
        packed = (cost | 1 << 64 | row[5] << 128 | row[6] << 192 | int(row[12]) << 640)
        with self._lock:
            self._add_packed(counters, packed)
            self._records.append(row)
            self._rows = True

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        with self._lock:
            rows = [self._value(key) for key in keys]
        return [_unpack(row) for row in rows]

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
        with self._lock:
            self._purge(now)
            return [self._reserved.get(name, 0) for name in budgets]

    def dimension(self, dim: str) -> dict[str, Counter]:
        with self._lock:
            return {value: _unpack(cell[0]) for (period, _window, d, value), cell
                    in self._counters.items() if period == "total" and d == dim}

    def recent(self, limit: int) -> list[UsageRecord]:
        with self._lock:
            kept = self._records
            records: list[UsageRecord] = [
                item if isinstance(item, UsageRecord) else record_from_row(item)
                for item in kept]
            if self._rows:
                kept.clear()
                kept.extend(records)
                self._rows = False
        return records[-limit:] if limit < len(records) else records

    def clear(self) -> None:
        with self._lock:
            self._counters.clear()
            self._cells.clear()
            self._records.clear()
            self._rows = False
            self._holds.clear()
            self._expires.clear()
            self._heap.clear()
            self._reserved.clear()
            self._tombs.clear()

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return (f"MemoryLedger(records={len(self._records)}, "
                f"reservations={len(self._holds)})")

