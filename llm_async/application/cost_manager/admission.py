"""Admission: reserving an attempt's worst case on the hard budgets, waiting for calls in
flight when that is what stands in the way, and keeping the reservations' leases alive.

Before an attempt is sent, its worst-case cost is reserved on every hard budget it falls under
(:meth:`Admission.areserve`):

* it fits → reserved, with a short **lease** that a background renewer extends while the call
  runs (every ``lease / 3`` seconds); a worker that dies stops renewing, and the ledger charges
  the hold at its reserved amount once the lease runs out;
* it would not fit even with nothing in flight (``spent + bound > limit``) →
  :class:`~llm_async.errors.BudgetExceededError` at once, nothing sent;
* it does not fit only because other reservations are in flight → it **waits**, first come
  first served, until those settle (settlements in this process wake it at once; other
  processes' are seen by polling every ``admission_poll`` seconds), for at most
  ``admission_timeout`` seconds. Waiting is cancellable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from ...errors import BudgetExceededError, LLMError
from .book import BudgetBook
from .money import from_nano, new_id, quantize, to_nano
from .periods import limits_nano
from .records import BudgetCheck, BudgetEvent, Hold, Reservation, ReserveResult, UsageRecord

__all__ = ["Admission", "invoke", "log_task_error"]

logger = logging.getLogger("llm_async.cost")
T = TypeVar("T")


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(self.event.set)


class Admission(BudgetBook):
    """Reservations, the admission queue and the lease renewer (a base of
    :class:`~.manager.CostManager`)."""

    lease: float
    admission_timeout: float
    admission_poll: float

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[_Waiter] = deque()
        self._live: dict[str, Reservation] = {}
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.backend.blocking:
            return await asyncio.to_thread(invoke, fn, *args)
        return invoke(fn, *args)

    async def _call_shielded(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` to completion even if the caller is cancelled meanwhile; a cancelled
        caller waits for it before the cancellation goes on, so the ledger is settled once
        the call has ended."""
        if not self.backend.blocking:
            return invoke(fn, *args)
        task = asyncio.ensure_future(asyncio.to_thread(invoke, fn, *args))
        task.add_done_callback(log_task_error)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # A second cancellation ends this wait early; the write still runs to its end.
            await asyncio.wait((task,))
            raise


    # -- reservations --------------------------------------------------------------------

    def _hold(self, amount: int, model: str, user_id: str | None, project_id: str | None,
              charge: UsageRecord | None) -> tuple[Hold, list[BudgetCheck]] | None:
        hard = self.hard_budgets(user_id, project_id, model)
        if not hard:
            return None
        now = self.now()
        checks = [BudgetCheck(name, self._key(config, now), limits_nano(config)[0])
                  for name, config in hard]
        rid = new_id()
        if charge is None:
            charge = UsageRecord(model=model, user_id=user_id, project_id=project_id,
                                 cost=from_nano(amount), reserved=from_nano(amount),
                                 estimated=True, outcome="lease_expired", timestamp=now)
        counters = tuple(self.record_keys(charge.model, charge.user_id, charge.project_id,
                                          charge.timestamp))
        hold = Hold(rid, amount, tuple(checks), self.clock() + self.lease, charge, counters)
        return hold, checks

    def _refuse(self, result: ReserveResult, amount: int, checks: Sequence[BudgetCheck],
                why: str = "") -> BudgetExceededError:
        with self._lock:
            self._stats["rejections"] += 1
        name = result.budget or ""
        check = next(c for c in checks if c.name == name)
        limit, spent = from_nano(check.limit), from_nano(result.spent)
        held, requested = from_nano(result.reserved), from_nano(amount)
        logger.info("budget %r refuses a call: spent $%s + reserved $%s + this call up to $%s "
                    "> limit $%s%s; the call was not sent", name, f"{spent:f}", f"{held:f}",
                    f"{requested:f}", f"{limit:f}", why)
        self._emit(BudgetEvent("rejected", name, limit, spent, requested=requested,
                               window=check.key[1]))
        return BudgetExceededError(
            f"budget {name!r} would be exceeded: spent ${spent:f} + reserved ${held:f} + "
            f"requested ${requested:f} > limit ${limit:f}{why}; nothing was sent",
            budget=name, limit=limit, spent=spent, reserved=held, requested=requested,
        )

    def _accept(self, hold: Hold) -> Reservation:
        reservation = Reservation(hold.id, from_nano(hold.amount),
                                  tuple(c.name for c in hold.checks), nano=hold.amount)
        with self._lock:
            self._stats["reservations"] += 1
            self._live[hold.id] = reservation
            self._ensure_renewer()
        return reservation

    def reserve(self, amount: Decimal, *, model: str, user_id: str | None = None,
                project_id: str | None = None) -> Reservation | None:
        """Reserve ``amount`` (USD) on every hard budget the call falls under, without waiting.

        Returns ``None`` when no hard budget applies; raises
        :class:`~llm_async.errors.BudgetExceededError` when the amount does not fit now.
        """
        planned = self._hold(to_nano(quantize(amount)), model, user_id, project_id, None)
        if planned is None:
            return None
        hold, checks = planned
        result = invoke(self.backend.reserve, hold, self.clock())
        if not result.ok:
            raise self._refuse(result, hold.amount, checks)
        return self._accept(hold)

    async def areserve(self, amount: Decimal | int, *, model: str, user_id: str | None = None,
                       project_id: str | None = None, charge: UsageRecord | None = None,
                       wait: bool = True) -> Reservation | None:
        """Reserve ``amount`` (USD, or an ``int`` of nano-dollars) on every hard budget the call
        falls under, waiting (FIFO, at most ``admission_timeout``) while it does not fit only
        because of reservations in flight.

        Returns ``None`` when no hard budget applies. ``charge`` is the record written if the
        lease expires (default: the amount, for this model, user and project).
        """
        nano = amount if isinstance(amount, int) else to_nano(quantize(amount))
        planned = self._hold(nano, model, user_id, project_id, charge)
        if planned is None:
            return None
        hold, checks = planned
        if not self._queue:
            result = await self._try(hold)
            if result.ok:
                return self._accept(hold)
            if not wait or self._final(result, nano, checks):
                raise self._refuse(result, nano, checks)
        return await self._admit(hold, checks)

    @staticmethod
    def _final(result: ReserveResult, amount: int, checks: Sequence[BudgetCheck]) -> bool:
        """Whether a refusal stands even once every reservation in flight has settled."""
        limit = next(c.limit for c in checks if c.name == result.budget)
        return result.spent + amount > limit

    async def _try(self, hold: Hold) -> ReserveResult:
        if not self.backend.blocking:
            return invoke(self.backend.reserve, hold, self.clock())
        task = asyncio.ensure_future(asyncio.to_thread(
            invoke, self.backend.reserve, hold, self.clock()))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller is gone: undo the reservation once the ledger has made it, before
            # the cancellation goes on, so nothing is held once the call has ended.
            await self._undo_when_made(hold.id, task)
            raise

    async def _undo_when_made(self, rid: str, task: asyncio.Future[ReserveResult]) -> None:
        undo: asyncio.Future[None] | None = None
        try:
            await asyncio.wait((task,))
            if self._made(task):
                undo = asyncio.ensure_future(asyncio.to_thread(invoke, self.backend.release,
                                                               rid))
                undo.add_done_callback(log_task_error)
                await asyncio.wait((undo,))
        except asyncio.CancelledError:
            # Cancelled again while waiting: the undo still happens, in the background.
            if undo is None:
                task.add_done_callback(lambda t: self._undo(rid, t))

    @staticmethod
    def _made(task: asyncio.Future[ReserveResult]) -> bool:
        return not task.cancelled() and task.exception() is None and task.result().ok

    def _undo(self, rid: str, task: asyncio.Future[ReserveResult]) -> None:
        if not self._made(task):
            return
        undo = asyncio.ensure_future(asyncio.to_thread(invoke, self.backend.release, rid))
        undo.add_done_callback(log_task_error)

    async def _admit(self, hold: Hold, checks: Sequence[BudgetCheck]) -> Reservation:
        waiter = _Waiter(asyncio.get_running_loop())
        with self._lock:
            self._queue.append(waiter)
            self._stats["admission_waits"] += 1
            head = self._queue[0] is waiter
        if head:
            waiter.event.set()
        loop = waiter.loop
        deadline = time.monotonic() + self.admission_timeout
        result: ReserveResult | None = None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                head = bool(self._queue) and self._queue[0] is waiter
                if not waiter.event.is_set():
                    # Woken by a settlement, by the waiter ahead leaving, or by the timer (to
                    # poll a ledger other processes settle in, and to honour the deadline).
                    timer = loop.call_later(min(left, self.admission_poll) if head else left,
                                            waiter.event.set)
                    try:
                        await waiter.event.wait()
                    finally:
                        timer.cancel()
                waiter.event.clear()
                if not (self._queue and self._queue[0] is waiter):
                    continue
                result = await self._try(hold)
                if result.ok:
                    return self._accept(hold)
                if self._final(result, hold.amount, checks):
                    raise self._refuse(result, hold.amount, checks)
            if result is None:
                result = await self._try(hold)
                if result.ok:
                    return self._accept(hold)
            raise self._refuse(result, hold.amount, checks,
                               f" after waiting {self.admission_timeout:g} s for calls in "
                               f"flight to settle")
        finally:
            with self._lock:
                was_head = bool(self._queue) and self._queue[0] is waiter
                with contextlib.suppress(ValueError):
                    self._queue.remove(waiter)
                nxt = self._queue[0] if self._queue else None
            if was_head and nxt is not None:
                nxt.wake()

    def _settled(self, reservation: Reservation) -> None:
        with self._lock:
            self._live.pop(reservation.id, None)
            head = self._queue[0] if self._queue else None
        if head is not None:
            head.wake()

    def release(self, reservation: Reservation | None) -> None:
        """Give a reservation back: its attempt was never sent."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        try:
            invoke(self.backend.release, reservation.id)
        finally:
            self._settled(reservation)
        with self._lock:
            self._stats["released"] += 1

    async def arelease(self, reservation: Reservation | None) -> None:
        """:meth:`release`, shielded from cancellation."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        try:
            await self._call_shielded(self.backend.release, reservation.id)
        finally:
            self._settled(reservation)
        with self._lock:
            self._stats["released"] += 1

    # -- leases --------------------------------------------------------------------------

    def _ensure_renewer(self) -> None:
        """Start the lease renewer if it is not running (called with the lock held)."""
        if self._renewer is None or not self._renewer.is_alive():
            renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                       name="llm_async-cost-leases")
            try:
                renewer.start()
            except RuntimeError:  # the interpreter is shutting down: no lease outlives it
                logger.debug("not renewing budget leases: the interpreter is exiting")
                return
            self._renewer = renewer

    def _renew_loop(self) -> None:
        while not self._closed.wait(self.lease / 3):
            with self._lock:
                ids = list(self._live)
                if not ids:
                    self._renewer = None
                    return
            self.renew_leases(ids)

    def renew_leases(self, ids: Sequence[str] | None = None) -> list[str]:
        """Extend the leases of the reservations in flight (all of this manager's by default);
        returns the ids whose lease had already expired (they were charged)."""
        if ids is None:
            with self._lock:
                ids = list(self._live)
        if not ids:
            return []
        now = self.clock()
        try:
            gone = invoke(self.backend.renew, list(ids), now + self.lease, now)
        except LLMError:
            logger.exception("could not renew %d budget leases", len(ids))
            return []
        if gone:
            with self._lock:
                self._stats["leases_expired"] += len(gone)
                for rid in gone:
                    found = self._live.get(rid)
                    if found is not None:
                        found.expired = True
            logger.warning("%d budget reservations outlived their lease and were charged at "
                           "their reserved amount", len(gone))
        return gone


def invoke(fn: Callable[..., T], *args: Any) -> T:
    """Call a ledger method, mapping a backend failure (disk, network) to :class:`LLMError`."""
    try:
        return fn(*args)
    except LLMError:
        raise
    except Exception as exc:
        name = getattr(fn, "__name__", "operation")
        raise LLMError(f"cost ledger {name} failed: {exc!r}", retryable=False) from exc


def log_task_error(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("cost ledger operation failed: %r", exc)
