"""The cost manager: prices attempts, writes them to a ledger, and keeps the budgets.

:class:`CostManager` puts together the budget book (:mod:`.book`), admission with its leases
(:mod:`.admission`), the reports (:mod:`.reports`) and, here, the recording of usage: a
:class:`~.records.UsageRecord` per billed attempt, committed to the ledger in the same step that
settles its reservation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from ...errors import InvalidRequestError
from ...types import Usage
from .admission import Admission, invoke
from .book import BudgetListener
from .catalogue import PricingCatalog, get_pricing_catalog
from .ledger import Ledger, MemoryLedger
from .money import ZERO, from_nano, new_id, quantize, to_decimal, to_nano, utcnow
from .periods import BudgetConfig, limits_nano
from .pricing import ModelPrice
from .records import (
    BudgetEvent,
    CounterKey,
    Outcome,
    Recommendation,
    RecordRow,
    Reservation,
    UsageRecord,
    record_from_row,
    trusted_record,
)
from .reports import Reports
from .tokens import TokenEstimator, get_token_estimator

__all__ = ["BudgetListener", "CostManager", "sanitize_usage"]

logger = logging.getLogger("llm_async.cost")

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



class CostManager(Admission, Reports):
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
        super().__init__()
        self.backend: Ledger = backend if backend is not None else MemoryLedger()
        # The in-process ledger itself (not a subclass), whose commit the fast path calls.
        self._memory = self.backend if type(self.backend) is MemoryLedger else None
        self._pricing = pricing
        self.estimator = estimator if estimator is not None else get_token_estimator()
        self.now = now
        self.lease = lease
        self.clock = clock
        self.admission_timeout = admission_timeout
        self.admission_poll = admission_poll

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
        billed: Decimal | None
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

    def _commit_args(self, record: UsageRecord) -> tuple[tuple[CounterKey, ...],
                                                          list[tuple[str, BudgetConfig]],
                                                          list[CounterKey]]:
        budgets = self.applicable(record.user_id, record.project_id, record.model)
        watch = [self._key(config, record.timestamp) for _, config in budgets]
        keys = self.record_keys(record.model, record.user_id, record.project_id,
                                record.timestamp)
        return keys, budgets, watch

    def _after_commit(self, record: UsageRecord, budgets: list[tuple[str, BudgetConfig]],
                      watch: list[CounterKey], totals: list[int],
                      nano: int | None = None) -> None:
        if not budgets:
            return
        cost = nano if nano is not None else (
            to_nano(record.cost) if record.cost is not None else 0)
        if cost <= 0:
            return
        for (name, config), key, after in zip(budgets, watch, totals, strict=True):
            before = after - cost
            limit, threshold = limits_nano(config)
            if threshold is not None and before < threshold <= after:
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

    def commit_now(self, record: UsageRecord, nano: int, *, plain: bool = False,
                   reservation: Reservation | None = None) -> None:
        """Write a record whose cost is ``nano`` nano-dollars to a ledger that does not block,
        settling ``reservation`` in the same step (the cost layer's fast path; ``plain``: see
        :meth:`MemoryLedger.commit_nano`)."""
        keys = self.record_keys(record.model, record.user_id, record.project_id,
                                record.timestamp)
        backend = self.backend
        rid = None
        if reservation is not None and not reservation.settled:
            reservation.settled = True
            rid = reservation.id
        budgets = (self.applicable(record.user_id, record.project_id, record.model)
                   if self._budgets else [])
        watch = [self._key(config, record.timestamp) for _, config in budgets]
        try:
            memory = self._memory
            if memory is not None:
                totals = memory.commit_nano(record, keys, rid, watch, nano, plain)
            else:
                totals = invoke(backend.commit, record, keys, rid, watch)
        finally:
            if reservation is not None:
                self._settled(reservation)
        if budgets:
            self._after_commit(record, budgets, watch, totals, nano)

    def commit_row(self, row: RecordRow, nano: int) -> None:
        """:meth:`commit_now` of a usual attempt (a :data:`~.records.RecordRow`, no
        reservation) costing ``nano`` nano-dollars: the in-process ledger keeps the row and
        makes its record when it is read."""
        memory = self._memory
        if memory is None or self._budgets:
            self.commit_now(record_from_row(row), nano, plain=True)
            return
        memory.commit_row(row, self.record_keys(row[2], row[3], row[4], row[0]), nano)

    def record(self, record: UsageRecord, reservation: Reservation | None = None) -> UsageRecord:
        """Write ``record`` to the ledger, settling ``reservation`` in the same step."""
        keys, budgets, watch = self._commit_args(record)
        rid = None
        if reservation is not None and not reservation.settled:
            reservation.settled = True
            rid = reservation.id
        try:
            totals = invoke(self.backend.commit, record, keys, rid, watch)
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
