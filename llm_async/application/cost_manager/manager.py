"""The cost manager: prices attempts, writes them to a ledger, and keeps the budgets.

Reservations are the heart of the hard budget. Before an attempt is sent, its worst-case cost
is reserved on every hard budget it falls under (:meth:`CostManager.areserve`):

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
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ...errors import BudgetExceededError, InvalidRequestError, LLMError
from ...types import Usage
from .ledger import Ledger, MemoryLedger
from .money import ZERO, from_nano, new_id, quantize, to_decimal, to_nano, utcnow
from .periods import BudgetConfig, BudgetPeriod, period_window, windows_of
from .pricing import ModelPrice, PricingCatalog, get_pricing_catalog
from .records import (
    BudgetCheck,
    BudgetEvent,
    BudgetStatus,
    Counter,
    CounterKey,
    CostMetrics,
    Hold,
    Outcome,
    Recommendation,
    Reservation,
    ReserveResult,
    UsageRecord,
    trusted_record,
)
from .tokens import TokenEstimator, get_token_estimator

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["BudgetListener", "CostManager", "sanitize_usage"]

logger = logging.getLogger("llm_async.cost")
T = TypeVar("T")
BudgetListener = Callable[[BudgetEvent], None]

_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                 "reasoning_tokens")


def sanitize_usage(usage: Usage) -> tuple[Usage, tuple[str, ...]]:
    """``usage`` made consistent, and what was odd about it (nothing is ever raised).

    A negative count is taken as 0; cache reads and writes above the input are taken as the
    input (``input_tokens`` counts every prompt token); reasoning above the output is taken as
    the output.
    """
    values = {name: getattr(usage, name) for name in _USAGE_FIELDS}
    flags: list[str] = []
    for name, value in values.items():
        if value < 0:
            flags.append(f"negative {name} ({value})")
            values[name] = 0
    cached = values["cache_read_tokens"] + values["cache_write_tokens"]
    if cached > values["input_tokens"]:
        flags.append(f"cache_read_tokens + cache_write_tokens ({cached}) > input_tokens "
                     f"({values['input_tokens']})")
        values["input_tokens"] = cached
    if values["reasoning_tokens"] > values["output_tokens"]:
        flags.append(f"reasoning_tokens ({values['reasoning_tokens']}) > output_tokens "
                     f"({values['output_tokens']})")
        values["output_tokens"] = values["reasoning_tokens"]
    if not flags:
        return usage, ()
    return Usage(**values), tuple(flags)


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.event.set)
        except RuntimeError:  # its loop is closed: nobody waits any more
            pass


class CostManager:
    """Prices attempts, records them in a ledger, and keeps the budgets.

    ``backend`` is the :class:`~.ledger.Ledger` (in memory by default). ``pricing`` defaults to
    the process-wide catalogue, ``estimator`` to the process-wide token estimator. ``now``
    returns the current UTC time (budget periods; inject a fixed clock in tests). ``lease`` is
    how long a reservation holds budget without being renewed (seconds: a killed worker's hold
    ends within it); ``clock`` gives the epoch seconds leases are measured in.
    ``admission_timeout`` bounds how long a call waits for in-flight reservations to settle
    (``0``: never wait); ``admission_poll`` is how often a waiting call re-checks a ledger
    shared with other processes.
    """

    def __init__(
        self,
        *,
        backend: Ledger | None = None,
        pricing: PricingCatalog | None = None,
        estimator: TokenEstimator | None = None,
        now: Callable[[], datetime] = utcnow,
        lease: float = 15.0,
        clock: Callable[[], float] = time.time,
        admission_timeout: float = 30.0,
        admission_poll: float = 0.05,
    ) -> None:
        if lease <= 0:
            raise InvalidRequestError("lease must be > 0 seconds", field="lease")
        if admission_timeout < 0:
            raise InvalidRequestError("admission_timeout must be >= 0",
                                      field="admission_timeout")
        self.backend: Ledger = backend if backend is not None else MemoryLedger()  # type: ignore[assignment]
        self._pricing = pricing
        self.estimator = estimator if estimator is not None else get_token_estimator()
        self.now = now
        self.lease = lease
        self.clock = clock
        self.admission_timeout = admission_timeout
        self.admission_poll = admission_poll
        self._budgets: dict[str, BudgetConfig] = {}
        self._hard: list[tuple[str, BudgetConfig]] = []
        self._listeners: list[BudgetListener] = []
        self._lock = threading.Lock()
        self._stats = {"soft_limit_crossings": 0, "limit_reached": 0, "rejections": 0,
                       "reservations": 0, "released": 0, "admission_waits": 0,
                       "leases_expired": 0}
        self._queue: deque[_Waiter] = deque()
        self._live: dict[str, Reservation] = {}
        self._renewer: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def pricing(self) -> PricingCatalog:
        """The pricing catalogue (the process-wide one, loaded on first use, unless one was
        passed)."""
        pricing = self._pricing
        if pricing is None:
            pricing = self._pricing = get_pricing_catalog()
        return pricing

    @pricing.setter
    def pricing(self, value: PricingCatalog) -> None:
        self._pricing = value

    # -- configuration -------------------------------------------------------------------

    def set_budget(self, name: str, config: BudgetConfig) -> None:
        """Create or replace the budget ``name``."""
        if not name:
            raise InvalidRequestError("a budget needs a name", field="name")
        if not isinstance(config, BudgetConfig):
            raise InvalidRequestError("config must be a BudgetConfig", field="config")
        with self._lock:
            self._budgets[name] = config
            self._hard = [(n, b) for n, b in self._budgets.items() if b.hard_limit]

    def remove_budget(self, name: str) -> bool:
        """Delete a budget; returns whether it existed."""
        with self._lock:
            found = self._budgets.pop(name, None) is not None
            self._hard = [(n, b) for n, b in self._budgets.items() if b.hard_limit]
            return found

    @property
    def budgets(self) -> dict[str, BudgetConfig]:
        """A copy of the budgets by name."""
        with self._lock:
            return dict(self._budgets)

    def apply_settings(self, settings: Settings) -> None:
        """Create the ``daily`` and ``monthly`` budgets from ``LLM_DAILY_BUDGET`` and
        ``LLM_MONTHLY_BUDGET`` (a budget of that name set in code is kept)."""
        for name, value, period in (("daily", settings.daily_budget, BudgetPeriod.DAILY),
                                    ("monthly", settings.monthly_budget, BudgetPeriod.MONTHLY)):
            if value is not None and name not in self._budgets:
                self.set_budget(name, BudgetConfig(limit=to_decimal(value), period=period))

    def subscribe(self, listener: BudgetListener) -> Callable[[], None]:
        """Call ``listener(event)`` on every :class:`BudgetEvent`; returns an unsubscribe
        function. A listener that raises is logged and skipped."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # -- pricing -------------------------------------------------------------------------

    def price_of(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The catalogue entry of ``model`` (``None`` when unknown)."""
        return self.pricing.lookup(model, provider)

    def cost_of(self, model: str, usage: Usage, *, provider: str | None = None,
                images: int = 0) -> Decimal | None:
        """The bill of ``usage`` on ``model`` (``None``, with one warning, when unpriced)."""
        price = self.pricing.lookup(model, provider)
        if price is None:
            self.pricing.warn_unknown(model, provider)
            return None
        return from_nano(price.cost_nano(usage, images=images))

    # -- budgets in force ----------------------------------------------------------------

    def applicable(self, user_id: str | None, project_id: str | None,
                   model: str) -> list[tuple[str, BudgetConfig]]:
        """The budgets (name, config) a call for this user, project and model counts against."""
        if not self._budgets:
            return []
        with self._lock:
            return [(n, b) for n, b in self._budgets.items()
                    if b.applies(user_id, project_id, model)]

    def hard_budgets(self, user_id: str | None, project_id: str | None,
                     model: str) -> list[tuple[str, BudgetConfig]]:
        """The hard budgets a call for this user, project and model must fit."""
        hard = self._hard
        if not hard:
            return []
        return [(n, b) for n, b in hard if b.applies(user_id, project_id, model)]

    @staticmethod
    def _key(config: BudgetConfig, now: datetime) -> CounterKey:
        window, _, _ = period_window(config.period, now)
        dim, value = config.scope
        return config.period.value, window, dim, value

    @staticmethod
    def record_keys(model: str, user_id: str | None, project_id: str | None,
                    when: datetime) -> list[CounterKey]:
        """Every counter a record of this model, user and project at ``when`` adds to."""
        dims = [("all", ""), ("model", model)]
        if user_id is not None:
            dims.append(("user", user_id))
        if project_id is not None:
            dims.append(("project", project_id))
        return [(name, window, d, v) for name, window in windows_of(when) for d, v in dims]

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self.backend.blocking:
            return await asyncio.to_thread(_invoke, fn, *args)
        return _invoke(fn, *args)

    async def _call_shielded(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` to completion even if the caller is cancelled meanwhile."""
        if not self.backend.blocking:
            return _invoke(fn, *args)
        task = asyncio.ensure_future(asyncio.to_thread(_invoke, fn, *args))
        task.add_done_callback(_log_task_error)
        return await asyncio.shield(task)

    # -- reservations --------------------------------------------------------------------

    def _hold(self, amount: int, model: str, user_id: str | None, project_id: str | None,
              charge: UsageRecord | None) -> tuple[Hold, list[BudgetCheck]] | None:
        hard = self.hard_budgets(user_id, project_id, model)
        if not hard:
            return None
        now = self.now()
        checks = [BudgetCheck(name, self._key(config, now), to_nano(config.limit))
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
        result = _invoke(self.backend.reserve, hold, self.clock())
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
            return _invoke(self.backend.reserve, hold, self.clock())
        task = asyncio.ensure_future(asyncio.to_thread(
            _invoke, self.backend.reserve, hold, self.clock()))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller is gone: undo the reservation once the ledger has made it.
            task.add_done_callback(lambda t: self._undo(hold.id, t))
            raise

    def _undo(self, rid: str, task: asyncio.Future[ReserveResult]) -> None:
        if task.cancelled() or task.exception() is not None or not task.result().ok:
            return
        undo = asyncio.ensure_future(asyncio.to_thread(_invoke, self.backend.release, rid))
        undo.add_done_callback(_log_task_error)

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
                try:
                    self._queue.remove(waiter)
                except ValueError:
                    pass
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
            _invoke(self.backend.release, reservation.id)
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
            self._renewer = threading.Thread(target=self._renew_loop, daemon=True,
                                             name="llm_async-cost-leases")
            self._renewer.start()

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
            gone = _invoke(self.backend.renew, list(ids), now + self.lease, now)
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

    # -- recording -----------------------------------------------------------------------

    def build_record(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        *,
        provider: str | None = None,
        user_id: str | None = None,
        project_id: str | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        usage: Usage | None = None,
        images: int = 0,
        provider_cost: Any = None,
        estimated: bool = False,
        cache_hit: bool = False,
        reserved: Decimal | None = None,
        prompt_hash: str | None = None,
        prefix_hash: str | None = None,
        prefix_tokens: int = 0,
        request_id: str | None = None,
        call_id: str | None = None,
        attempt: int = 1,
        counts_call: bool = True,
        outcome: Outcome = "complete",
        flags: tuple[str, ...] = (),
        cost: Decimal | None = None,
    ) -> UsageRecord:
        """Price one attempt and build its :class:`UsageRecord` (nothing is written).

        Counts given here by a caller must be consistent (``InvalidRequestError`` otherwise);
        usage reported by a provider goes through :func:`sanitize_usage` first. ``cost``
        bills a given amount instead of pricing the usage (an attempt billed at its bound).
        """
        if usage is None:
            usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                          cache_read_tokens=cache_read_tokens,
                          cache_write_tokens=cache_write_tokens,
                          reasoning_tokens=reasoning_tokens)
        if not flags:
            _validate(usage)
        pcost = quantize(to_decimal(provider_cost)) if provider_cost is not None else None
        computed: Decimal | None
        if cache_hit:
            computed = billed = ZERO
            pcost = None
        elif cost is not None:
            computed = billed = cost
        else:
            computed = self.cost_of(model, usage, provider=provider, images=images)
            billed = pcost if pcost is not None else computed
        timestamp = self.now()
        return trusted_record(
            id=new_id(), timestamp=timestamp, provider=provider, model=model,
            user_id=user_id, project_id=project_id, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens, images=images, cost=billed,
            computed_cost=computed, provider_cost=pcost, reserved=reserved,
            estimated=estimated, cache_hit=cache_hit, prompt_hash=prompt_hash,
            prefix_hash=prefix_hash, prefix_tokens=prefix_tokens, request_id=request_id,
            call_id=call_id, attempt=attempt, counts_call=counts_call, outcome=outcome,
            flags=tuple(flags)) if _typed(timestamp, model, provider, user_id, project_id,
                                          prompt_hash, prefix_hash, request_id, call_id,
                                          reserved) else UsageRecord(
            timestamp=timestamp, provider=provider, model=model, user_id=user_id,
            project_id=project_id, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens, reasoning_tokens=usage.reasoning_tokens,
            images=images, cost=billed, computed_cost=computed, provider_cost=pcost,
            reserved=reserved, estimated=estimated, cache_hit=cache_hit,
            prompt_hash=prompt_hash, prefix_hash=prefix_hash, prefix_tokens=prefix_tokens,
            request_id=request_id, call_id=call_id, attempt=attempt, counts_call=counts_call,
            outcome=outcome, flags=tuple(flags),
        )

    def _commit_args(self, record: UsageRecord) -> tuple[list[CounterKey],
                                                          list[tuple[str, BudgetConfig]],
                                                          list[CounterKey]]:
        budgets = self.applicable(record.user_id, record.project_id, record.model)
        watch = [self._key(config, record.timestamp) for _, config in budgets]
        keys = self.record_keys(record.model, record.user_id, record.project_id,
                                record.timestamp)
        return keys, budgets, watch

    def _after_commit(self, record: UsageRecord, budgets: list[tuple[str, BudgetConfig]],
                      watch: list[CounterKey], totals: list[int]) -> None:
        cost = to_nano(record.cost) if record.cost is not None else 0
        if cost <= 0:
            return
        for (name, config), key, after in zip(budgets, watch, totals, strict=True):
            before = after - cost
            limit = to_nano(config.limit)
            if config.soft_limit is not None:
                threshold = to_nano(config.limit * to_decimal(config.soft_limit))
                if before < threshold <= after:
                    with self._lock:
                        self._stats["soft_limit_crossings"] += 1
                    logger.warning(
                        "budget %r crossed its soft limit: spent $%s of $%s (%.0f%%) in %s",
                        name, from_nano(after), config.limit, 100.0 * after / limit, key[1])
                    self._emit(BudgetEvent("soft_limit", name, config.limit, from_nano(after),
                                           threshold=from_nano(threshold), window=key[1]))
            if before < limit <= after:
                with self._lock:
                    self._stats["limit_reached"] += 1
                logger.warning("budget %r reached its limit: spent $%s of $%s in %s",
                               name, from_nano(after), config.limit, key[1])
                self._emit(BudgetEvent("limit_reached", name, config.limit, from_nano(after),
                                       threshold=config.limit, window=key[1]))

    def record(self, record: UsageRecord, reservation: Reservation | None = None) -> UsageRecord:
        """Write ``record`` to the ledger, settling ``reservation`` in the same step."""
        keys, budgets, watch = self._commit_args(record)
        rid = None
        if reservation is not None and not reservation.settled:
            reservation.settled = True
            rid = reservation.id
        try:
            totals = _invoke(self.backend.commit, record, keys, rid, watch)
        finally:
            if reservation is not None:
                self._settled(reservation)
        self._after_commit(record, budgets, watch, totals)
        return record

    async def arecord(self, record: UsageRecord,
                      reservation: Reservation | None = None) -> UsageRecord:
        """:meth:`record` without blocking the loop, shielded from cancellation."""
        keys, budgets, watch = self._commit_args(record)
        rid = None
        if reservation is not None and not reservation.settled:
            reservation.settled = True
            rid = reservation.id
        try:
            totals = await self._call_shielded(self.backend.commit, record, keys, rid, watch)
        finally:
            if reservation is not None:
                self._settled(reservation)
        self._after_commit(record, budgets, watch, totals)
        return record

    def track_usage(self, model: str, input_tokens: int = 0, output_tokens: int = 0,
                    **fields: Any) -> UsageRecord:
        """Record one call's usage and return its priced :class:`UsageRecord`.

        ``input_tokens`` counts every prompt token, cached ones included. Keywords:
        ``user_id``, ``project_id``, ``provider``, ``cache_read_tokens``,
        ``cache_write_tokens``, ``reasoning_tokens``, ``usage`` (a
        :class:`~llm_async.types.Usage` instead of the counts), ``images``, ``provider_cost``,
        ``estimated``, ``cache_hit``, ``request_id``.
        """
        return self.record(self.build_record(model, input_tokens, output_tokens, **fields))

    async def atrack_usage(self, model: str, input_tokens: int = 0, output_tokens: int = 0,
                           **fields: Any) -> UsageRecord:
        """:meth:`track_usage` without blocking the event loop."""
        return await self.arecord(self.build_record(model, input_tokens, output_tokens,
                                                    **fields))

    # -- events --------------------------------------------------------------------------

    def _emit(self, event: BudgetEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("budget event listener %r failed", listener)

    # -- reading -------------------------------------------------------------------------

    def get_metrics(self) -> CostMetrics:
        """Totals over the whole ledger: cost, by model, user and project, calls, attempts,
        tokens."""
        total = self.backend.dimension("all").get("", Counter())
        by_model = self.backend.dimension("model")
        by_user = self.backend.dimension("user")
        by_project = self.backend.dimension("project")
        with self._lock:
            names = list(self._budgets)
        held = self.backend.reserved(names, self.clock()) if names else []
        return CostMetrics(
            total_cost=from_nano(total.cost),
            by_model={k: from_nano(v.cost) for k, v in sorted(by_model.items())},
            by_user={k: from_nano(v.cost) for k, v in sorted(by_user.items())},
            by_project={k: from_nano(v.cost) for k, v in sorted(by_project.items())},
            requests=total.requests,
            calls=total.calls,
            input_tokens=total.input_tokens,
            output_tokens=total.output_tokens,
            cache_read_tokens=total.cache_read_tokens,
            cache_write_tokens=total.cache_write_tokens,
            reasoning_tokens=total.reasoning_tokens,
            cache_hits=total.cache_hits,
            estimated_requests=total.estimated,
            unpriced_requests=total.unpriced,
            lease_expired=total.lease_expired,
            flagged_requests=total.flagged,
            reserved={n: from_nano(h) for n, h in zip(names, held, strict=True) if h},
        )

    def metrics(self) -> dict[str, Any]:
        """The public metric names (``cost.total``, ``cost.by_model``, ``cost.by_user``,
        ``cost.requests``) and more, for the observability layer. ``cost.calls`` counts
        logical calls, ``cost.attempts`` (and ``cost.requests``) billed attempts."""
        m = self.get_metrics()
        with self._lock:
            stats = dict(self._stats)
        return {
            "cost.total": m.total_cost,
            "cost.by_model": dict(m.by_model),
            "cost.by_user": dict(m.by_user),
            "cost.by_project": dict(m.by_project),
            "cost.requests": m.requests,
            "cost.calls": m.calls,
            "cost.attempts": m.requests,
            "cost.tokens.input": m.input_tokens,
            "cost.tokens.output": m.output_tokens,
            "cost.tokens.cache_read": m.cache_read_tokens,
            "cost.tokens.cache_write": m.cache_write_tokens,
            "cost.tokens.reasoning": m.reasoning_tokens,
            "cost.cache_hits": m.cache_hits,
            "cost.estimated_requests": m.estimated_requests,
            "cost.unpriced_requests": m.unpriced_requests,
            "cost.flagged_requests": m.flagged_requests,
            "cost.lease_expired": m.lease_expired,
            "cost.reserved": dict(m.reserved),
            "cost.budget.soft_limit_crossings": stats["soft_limit_crossings"],
            "cost.budget.limit_reached": stats["limit_reached"],
            "cost.budget.rejections": stats["rejections"],
            "cost.budget.admission_waits": stats["admission_waits"],
        }

    def get_budget_status(self, name: str) -> BudgetStatus:
        """Spend, limit, percentage, remaining, reset time and forecast of budget ``name``."""
        with self._lock:
            config = self._budgets.get(name)
        if config is None:
            raise InvalidRequestError(
                f"unknown budget {name!r}; set it with set_budget() (known: "
                f"{sorted(self._budgets)})", field="name")
        now = self.now()
        window, start, end = period_window(config.period, now)
        dim, value = config.scope
        key: CounterKey = (config.period.value, window, dim, value)
        held = from_nano(self.backend.reserved([name], self.clock())[0])
        spent = from_nano(self.backend.read([key])[0].cost)
        limit = config.limit
        forecast, exhaustion = self.forecast_spend(spent, limit, start, end, now)
        soft = quantize(limit * to_decimal(config.soft_limit)) if config.soft_limit else None
        return BudgetStatus(
            name=name, period=config.period, scope="global" if dim == "all" else f"{dim}:{value}",
            limit=limit, spent=spent, reserved=held, remaining=max(ZERO, limit - spent),
            percentage=round(float(spent / limit * 100), 2),
            soft_limit=soft, soft_limit_reached=soft is not None and spent >= soft,
            exceeded=spent >= limit, hard_limit=config.hard_limit, window=window,
            period_start=start, resets_at=end, forecast=forecast,
            forecast_percentage=round(float(forecast / limit * 100), 2)
            if forecast is not None else None,
            projected_exhaustion=exhaustion,
        )

    def get_all_budget_statuses(self) -> dict[str, BudgetStatus]:
        """:meth:`get_budget_status` of every budget."""
        return {name: self.get_budget_status(name) for name in self.budgets}

    #: Elapsed time below which the run rate is measured over this minimum instead (so a few
    #: cents spent in the first seconds of a day do not project to millions).
    min_forecast_elapsed: ClassVar[timedelta] = timedelta(minutes=15)

    def forecast_spend(self, spent: Decimal, limit: Decimal, start: datetime | None,
                       end: datetime | None, now: datetime) -> tuple[Decimal | None,
                                                                       datetime | None]:
        """``(projected spend at end, when the limit is reached)`` by linear run rate.

        The rate is ``spent / elapsed`` with ``elapsed = now - start`` (at least
        :attr:`min_forecast_elapsed`); the projection is ``spent + rate × (end - now)``. A
        ``total`` budget has no end, so no forecast.
        """
        if start is None or end is None:
            return None, None
        elapsed = max((now - start).total_seconds(), self.min_forecast_elapsed.total_seconds())
        remaining = max(0.0, (end - now).total_seconds())
        if spent <= 0:
            return ZERO, None
        rate = spent / Decimal(repr(elapsed))
        projected = quantize(spent + rate * Decimal(repr(remaining)))
        exhaustion = None
        if spent < limit:
            seconds = float((limit - spent) / rate)
            if seconds <= remaining:
                exhaustion = now + timedelta(seconds=seconds)
        else:
            exhaustion = now
        return projected, exhaustion

    def get_optimization_recommendations(self, **options: Any) -> list[Recommendation]:
        """Advice computed from the ledger, dearest saving first (see
        :func:`~llm_async.application.cost_manager.advice.recommend` for the options)."""
        from .advice import recommend

        return recommend(self, **options)

    # -- housekeeping --------------------------------------------------------------------

    def recent_records(self, limit: int = 100) -> list[UsageRecord]:
        """The last ``limit`` usage records, oldest first."""
        return self.backend.recent(limit)

    def reset(self) -> None:
        """Forget all usage (budgets and listeners stay)."""
        self.backend.clear()
        with self._lock:
            for key in self._stats:
                self._stats[key] = 0

    def close(self) -> None:
        """Stop renewing leases and close the ledger backend."""
        self._closed.set()
        self.backend.close()

    def __repr__(self) -> str:
        return (f"CostManager(backend={type(self.backend).__name__}, "
                f"budgets={sorted(self._budgets)}, in_flight={len(self._live)}, "
                f"waiting={len(self._queue)})")


def _typed(timestamp: Any, model: Any, *optional: Any) -> bool:
    """Whether record values already have their fields' types (skip re-validation)."""
    if not isinstance(timestamp, datetime) or type(model) is not str:
        return False
    reserved = optional[-1]
    if reserved is not None and type(reserved) is not Decimal:
        return False
    return all(v is None or type(v) is str for v in optional[:-1])


def _validate(usage: Usage) -> None:
    for name in _USAGE_FIELDS:
        if getattr(usage, name) < 0:
            raise InvalidRequestError(f"{name} must be >= 0", field=name)
    if usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
        raise InvalidRequestError(
            "cache_read_tokens + cache_write_tokens cannot exceed input_tokens "
            "(input_tokens counts every prompt token, cached ones included)",
            field="input_tokens")


def _invoke(fn: Callable[..., T], *args: Any) -> T:
    """Call a ledger method, mapping a backend failure (disk, network) to :class:`LLMError`."""
    try:
        return fn(*args)
    except LLMError:
        raise
    except Exception as exc:
        name = getattr(fn, "__name__", "operation")
        raise LLMError(f"cost ledger {name} failed: {exc!r}", retryable=False) from exc


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("cost ledger operation failed: %r", exc)
