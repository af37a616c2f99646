"""Cost tracking and budgets that cannot be overspent.

::

    from llm_async.application.cost_manager import get_cost_manager, BudgetConfig, BudgetPeriod

    manager = get_cost_manager()
    manager.set_budget("daily_budget", BudgetConfig(limit=100.0, period=BudgetPeriod.DAILY))
    record = manager.track_usage(model="gpt-4", input_tokens=1000, output_tokens=500,
                                 user_id="user123")
    print(f"Total cost: ${manager.get_metrics().total_cost:.2f}")

The pieces:

* :class:`CostManager` prices usage with the pricing catalogue (``pricing.py``), writes one
  :class:`UsageRecord` per call to a **ledger** and keeps the budgets. Money is
  :class:`~decimal.Decimal`; the ledger counts integer nano-dollars (10⁻⁹ USD), so totals are
  exact sums of the per-call bills.
* **Budgets** (:class:`BudgetConfig`): a limit per period (daily, weekly, monthly, total, in UTC)
  for everything or for one user, project or model. Crossing the soft limit (80% by default)
  emits a :class:`BudgetEvent` (subscribe with :meth:`CostManager.subscribe`), a WARNING on the
  ``llm_async.cost`` logger and a metric. The hard limit is enforced **before** a call: the
  :class:`CostLayer` reserves the call's worst-case cost atomically and settles it to the real
  cost when the call ends (or releases it when the call fails or is cancelled); a call that
  would cross a hard limit raises :class:`~llm_async.errors.BudgetExceededError` and nothing is
  sent.
* **Ledgers**: :class:`MemoryLedger` (the default), ``SQLiteLedger`` (durable,
  :mod:`llm_async.infrastructure.ledger_sqlite`) and ``RedisLedger`` (shared by processes and
  machines, :mod:`llm_async.infrastructure.ledger_redis`). They implement :class:`Ledger`,
  whose ``reserve`` is one atomic check-and-reserve over every budget a call falls under.
* :meth:`CostManager.get_budget_status` forecasts the spend at the end of the period (linear
  run rate), and :meth:`CostManager.get_optimization_recommendations` computes advice with its
  estimated saving from the ledger.
"""

from __future__ import annotations

import asyncio
import calendar
import enum
import hashlib
import itertools
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..context import CallContext
from ..domain.ports import Handler, Layer
from ..errors import BudgetExceededError, InvalidRequestError, LLMError
from ..types import ChatChunk, ChatRequest, ChatResponse, ImagePart, Message, Usage
from .pricing import ModelPrice, PricingCatalog, get_pricing_catalog, plain, to_decimal
from .tokens import TokenEstimator, get_token_estimator

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "COUNTER_FIELDS",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "BudgetCheck",
    "BudgetConfig",
    "BudgetEvent",
    "BudgetPeriod",
    "BudgetStatus",
    "CostLayer",
    "CostManager",
    "CostMetrics",
    "Counter",
    "CounterKey",
    "Ledger",
    "MemoryLedger",
    "Recommendation",
    "Reservation",
    "ReserveResult",
    "UsageRecord",
    "from_nano",
    "get_cost_manager",
    "period_window",
    "set_cost_manager",
    "to_nano",
]

logger = logging.getLogger("llm_async.cost")
UTC = timezone.utc

T = TypeVar("T")

#: Output tokens assumed for the worst case of a call that sets no ``max_tokens``.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
NANO = Decimal("1e-9")
_NANO_PER_USD = 10**9
ZERO = Decimal(0)


def to_nano(amount: Decimal) -> int:
    """USD → integer nano-dollars (half-even)."""
    return int((amount * _NANO_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_nano(amount: int) -> Decimal:
    """Integer nano-dollars → USD as an exact :class:`Decimal`."""
    if amount == 0:
        return ZERO
    return plain(Decimal(amount) * NANO)


def _quantize(amount: Decimal) -> Decimal:
    sign, digits, exponent = amount.as_tuple()
    if not sign and isinstance(exponent, int) and (
            exponent == 0 or (-9 <= exponent < 0 and digits[-1])):
        # Already a whole number of nano-dollars in plain form: rounding changes nothing.
        return amount
    return from_nano(to_nano(amount))


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Unique ids for records and reservations without a system call per call: 64 random bits drawn
# once per process (again in a forked child) followed by a per-process counter, as 32 hex digits
# (the shape of ``uuid4().hex``). Unique across processes and machines sharing a ledger.
_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count(1)


def _reseed_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def new_id() -> str:
    """A unique 32-hex-digit id (cheap: no system call)."""
    return f"{_id_prefix}{next(_id_counter):016x}"


# --------------------------------------------------------------------------------------------
# Budgets and periods
# --------------------------------------------------------------------------------------------


class BudgetPeriod(str, enum.Enum):
    """How often a budget starts again (at midnight UTC; weeks start on Monday)."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    TOTAL = "total"


def period_window(period: BudgetPeriod, now: datetime) -> tuple[str, datetime | None,
                                                                   datetime | None]:
    """``(key, start, end)`` of the window of ``period`` that contains ``now`` (UTC).

    Keys: ``2026-11-24`` (daily), ``2026-W48`` (ISO week), ``2026-11`` (monthly), ``all``.
    """
    if period is BudgetPeriod.TOTAL:
        return "all", None, None
    if now.tzinfo is not None:
        cached = _windows.get(period)
        if cached is not None and cached[1] <= now < cached[2]:
            return cached
    return _compute_window(period, now)


# The current window of each period, recomputed only when the clock leaves it.
_windows: dict[BudgetPeriod, tuple[str, datetime, datetime]] = {}


def _compute_window(period: BudgetPeriod, now: datetime) -> tuple[str, datetime | None,
                                                                   datetime | None]:
    key, start, end = _window(period, now)
    if start is not None and end is not None:
        _windows[period] = (key, start, end)
    return key, start, end


def _window(period: BudgetPeriod, now: datetime) -> tuple[str, datetime | None,
                                                           datetime | None]:
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is BudgetPeriod.DAILY:
        return day.strftime("%Y-%m-%d"), day, day + timedelta(days=1)
    if period is BudgetPeriod.WEEKLY:
        start = day - timedelta(days=day.weekday())
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}", start, start + timedelta(days=7)
    if period is BudgetPeriod.MONTHLY:
        start = day.replace(day=1)
        days = calendar.monthrange(start.year, start.month)[1]
        return start.strftime("%Y-%m"), start, start + timedelta(days=days)
    return "all", None, None


_PERIODS: tuple[BudgetPeriod, ...] = tuple(BudgetPeriod)
# ``(day start, day end, ((period, window key), ...))`` of the current UTC day: weeks and months
# start at midnight too, so every period's window key is fixed within one day.
_day_keys: tuple[datetime, datetime, tuple[tuple[str, str], ...]] | None = None


def _windows_of(when: datetime) -> tuple[tuple[str, str], ...]:
    """``((period, window key), ...)`` of every period at ``when``."""
    global _day_keys
    cached = _day_keys
    if cached is not None and when.tzinfo is not None and cached[0] <= when < cached[1]:
        return cached[2]
    keys = tuple((p.value, period_window(p, when)[0]) for p in _PERIODS)
    if when.tzinfo is not None:
        _, start, end = _window(BudgetPeriod.DAILY, when)
        if start is not None and end is not None:
            _day_keys = (start, end, keys)
    return keys


class BudgetConfig(BaseModel):
    """A spending limit in USD for one period.

    ``period`` defaults to daily. ``soft_limit`` is the fraction of ``limit`` at which a warning
    is raised (``None`` for none). ``hard_limit=True`` rejects, before sending, any call whose
    worst-case cost would cross ``limit``; ``False`` only warns. At most one of ``user_id``,
    ``project_id`` and ``model`` scopes the budget; none means every call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    limit: Decimal = Field(gt=0)
    period: BudgetPeriod = BudgetPeriod.DAILY
    soft_limit: float | None = Field(default=0.8, gt=0, le=1)
    hard_limit: bool = True
    user_id: str | None = None
    project_id: str | None = None
    model: str | None = None

    @field_validator("limit", mode="before")
    @classmethod
    def _exact(cls, value: Any) -> Any:
        return to_decimal(value) if isinstance(value, float | int | str) else value

    @model_validator(mode="after")
    def _one_scope(self) -> BudgetConfig:
        if sum(x is not None for x in (self.user_id, self.project_id, self.model)) > 1:
            raise ValueError("a budget is scoped to at most one of user_id, project_id, model")
        return self

    @property
    def scope(self) -> tuple[str, str]:
        """``(dimension, value)``: ``("all", "")``, ``("user", id)``, ``("project", id)`` or
        ``("model", name)``."""
        if self.user_id is not None:
            return "user", self.user_id
        if self.project_id is not None:
            return "project", self.project_id
        if self.model is not None:
            return "model", self.model
        return "all", ""

    def applies(self, user_id: str | None, project_id: str | None, model: str) -> bool:
        """Whether a call for this user, project and model counts against the budget."""
        dim, value = self.scope
        if dim == "user":
            return user_id == value
        if dim == "project":
            return project_id == value
        if dim == "model":
            return model == value
        return True


# --------------------------------------------------------------------------------------------
# Records, metrics, statuses
# --------------------------------------------------------------------------------------------


class _Mapping(BaseModel):
    """Models that also read like dicts (``status["percentage"]``), as the seed uses them."""

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get``."""
        return getattr(self, key) if key in type(self).model_fields else default

    def keys(self) -> list[str]:
        """The field names."""
        return list(type(self).model_fields)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in type(self).model_fields

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (money stays :class:`Decimal`)."""
        return self.model_dump()


class UsageRecord(_Mapping):
    """One call in the ledger.

    ``cost`` is what the call is billed: the provider's own figure when it reports one
    (OpenRouter), else ``computed_cost`` from the catalogue; ``None`` when neither is known.
    ``reserved`` is what the budget reserved for it; ``estimated`` says the tokens were
    estimated (a stream that ended without usage).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    id: str = Field(default_factory=new_id)
    timestamp: datetime = Field(default_factory=_utcnow)
    provider: str | None = None
    model: str
    user_id: str | None = None
    project_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0
    cost: Decimal | None = None
    computed_cost: Decimal | None = None
    provider_cost: Decimal | None = None
    reserved: Decimal | None = None
    estimated: bool = False
    cache_hit: bool = False
    prompt_hash: str | None = None
    prefix_hash: str | None = None
    prefix_tokens: int = 0
    request_id: str | None = None

    @property
    def uncached_input_tokens(self) -> int:
        """Input tokens billed at the full input price."""
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def usage(self) -> Usage:
        """The token buckets as a :class:`~llm_async.types.Usage`."""
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                     cache_read_tokens=self.cache_read_tokens,
                     cache_write_tokens=self.cache_write_tokens,
                     reasoning_tokens=self.reasoning_tokens)


_RECORD_FIELDS = frozenset(UsageRecord.model_fields)


def _trusted_record(**values: Any) -> UsageRecord:
    """A :class:`UsageRecord` from values that already have their fields' types (every field
    given), without re-validating them (what ``model_construct`` does, minus its defaults
    handling)."""
    record = UsageRecord.__new__(UsageRecord)
    object.__setattr__(record, "__dict__", values)
    object.__setattr__(record, "__pydantic_fields_set__", set(_RECORD_FIELDS))
    object.__setattr__(record, "__pydantic_extra__", None)
    object.__setattr__(record, "__pydantic_private__", None)
    return record


class CostMetrics(_Mapping):
    """Totals over the whole ledger (``total_cost`` formats with ``:.2f``)."""

    model_config = ConfigDict(frozen=True)

    total_cost: Decimal = ZERO
    by_model: dict[str, Decimal] = Field(default_factory=dict)
    by_user: dict[str, Decimal] = Field(default_factory=dict)
    by_project: dict[str, Decimal] = Field(default_factory=dict)
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hits: int = 0
    estimated_requests: int = 0
    unpriced_requests: int = 0
    reserved: dict[str, Decimal] = Field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def average_cost(self) -> Decimal:
        """Mean billed cost per request."""
        priced = self.requests - self.unpriced_requests
        return _quantize(self.total_cost / priced) if priced > 0 else ZERO


class BudgetStatus(_Mapping):
    """Where a budget stands in its current period, with the forecast for the period's end.

    ``percentage`` is ``spent / limit × 100``. ``forecast`` is the projected spend at
    ``resets_at`` (linear run rate, see :meth:`CostManager.forecast`); ``projected_exhaustion``
    is when that rate reaches the limit, if it does before the reset.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    period: BudgetPeriod
    scope: str
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    remaining: Decimal
    percentage: float
    soft_limit: Decimal | None
    soft_limit_reached: bool
    exceeded: bool
    hard_limit: bool
    window: str
    period_start: datetime | None
    resets_at: datetime | None
    forecast: Decimal | None
    forecast_percentage: float | None
    projected_exhaustion: datetime | None
    forecast_method: str = "linear run rate since the start of the period"


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """A budget event: ``kind`` is ``soft_limit`` (the warning threshold was crossed),
    ``limit_reached`` (spend reached the limit) or ``rejected`` (a call was refused)."""

    kind: Literal["soft_limit", "limit_reached", "rejected"]
    budget: str
    limit: Decimal
    spent: Decimal
    threshold: Decimal | None = None
    requested: Decimal | None = None
    window: str = ""
    at: datetime = field(default_factory=_utcnow)


class Recommendation(_Mapping):
    """A piece of advice computed from the ledger, with the saving it would have brought."""

    model_config = ConfigDict(frozen=True)

    kind: str
    message: str
    estimated_saving: Decimal
    details: dict[str, Any] = Field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.message} (estimated saving ${self.estimated_saving:.4f})"


# --------------------------------------------------------------------------------------------
# The ledger port and the in-memory ledger
# --------------------------------------------------------------------------------------------

#: ``(period, window, dimension, value)``: one spend counter.
CounterKey = tuple[str, str, str, str]
#: What every counter counts.
COUNTER_FIELDS: tuple[str, ...] = (
    "cost", "requests", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cache_hits", "estimated", "unpriced",
)


@dataclass(slots=True)
class Counter:
    """Sums over the records of one counter (``cost`` in nano-dollars)."""

    cost: int = 0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hits: int = 0
    estimated: int = 0
    unpriced: int = 0

    def add(self, other: Counter) -> None:
        self.cost += other.cost
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cache_hits += other.cache_hits
        self.estimated += other.estimated
        self.unpriced += other.unpriced

    @classmethod
    def of(cls, record: UsageRecord) -> Counter:
        """The increments one record adds to every counter it falls under."""
        return cls(
            cost=to_nano(record.cost) if record.cost is not None else 0,
            requests=1,
            input_tokens=record.input_tokens,
            output_tokens=record.output_tokens,
            cache_read_tokens=record.cache_read_tokens,
            cache_write_tokens=record.cache_write_tokens,
            reasoning_tokens=record.reasoning_tokens,
            cache_hits=int(record.cache_hit),
            estimated=int(record.estimated),
            unpriced=int(record.cost is None),
        )

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in COUNTER_FIELDS)


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """One hard budget a reservation must fit: its name, counter and limit (nano-dollars)."""

    name: str
    key: CounterKey
    limit: int


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """The outcome of :meth:`Ledger.reserve`: ``ok``, or the first budget that would be crossed
    with its ``spent`` and ``reserved`` amounts (nano-dollars)."""

    ok: bool
    budget: str | None = None
    spent: int = 0
    reserved: int = 0


@runtime_checkable
class Ledger(Protocol):
    """Where usage records, spend counters and budget reservations live.

    Amounts are integer nano-dollars. ``blocking`` says whether the methods do I/O (then the
    async paths of :class:`CostManager` run them in a worker thread). ``reserve`` must be
    atomic: it checks every budget and reserves on all of them, or on none.
    """

    blocking: bool

    def reserve(self, reservation_id: str, amount: int, checks: Sequence[BudgetCheck],
                expires_at: float, now: float) -> ReserveResult:
        """Reserve ``amount`` on every budget of ``checks`` if each one's spend plus its
        reservations plus ``amount`` stays within its limit."""
        ...

    def release(self, reservation_id: str) -> None:
        """Drop a reservation (unknown ids are ignored)."""
        ...

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        """Atomically append ``record``, add it to ``counters``, drop the reservation, and
        return the ``cost`` of each ``watch`` counter afterwards."""
        ...

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        """The counters of ``keys`` (zero when absent)."""
        ...

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
        """The amount currently reserved on each budget (expired reservations excluded)."""
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


class MemoryLedger:
    """The in-process ledger (the default). Thread-safe; keeps the last ``max_records`` records
    (counters are never truncated)."""

    blocking: ClassVar[bool] = False

    def __init__(self, max_records: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._counters: dict[CounterKey, Counter] = {}
        self._records: deque[UsageRecord] = deque(maxlen=max_records)
        self._reservations: dict[str, tuple[int, tuple[str, ...], float]] = {}
        self._reserved: dict[str, int] = {}

    def _purge(self, now: float) -> None:
        expired = [rid for rid, (_, _, exp) in self._reservations.items() if exp <= now]
        for rid in expired:
            self._drop(rid)

    def _drop(self, reservation_id: str) -> None:
        found = self._reservations.pop(reservation_id, None)
        if found is None:
            return
        amount, names, _ = found
        for name in names:
            left = self._reserved.get(name, 0) - amount
            if left > 0:
                self._reserved[name] = left
            else:
                self._reserved.pop(name, None)

    def reserve(self, reservation_id: str, amount: int, checks: Sequence[BudgetCheck],
                expires_at: float, now: float) -> ReserveResult:
        with self._lock:
            self._purge(now)
            for check in checks:
                counter = self._counters.get(check.key)
                spent = counter.cost if counter else 0
                held = self._reserved.get(check.name, 0)
                if spent + held + amount > check.limit:
                    return ReserveResult(False, check.name, spent, held)
            names = tuple(c.name for c in checks)
            self._reservations[reservation_id] = (amount, names, expires_at)
            for name in names:
                self._reserved[name] = self._reserved.get(name, 0) + amount
            return ReserveResult(True)

    def release(self, reservation_id: str) -> None:
        with self._lock:
            self._drop(reservation_id)

    def commit(self, record: UsageRecord, counters: Sequence[CounterKey],
               reservation_id: str | None, watch: Sequence[CounterKey]) -> list[int]:
        cost = to_nano(record.cost) if record.cost is not None else 0
        inp, out = record.input_tokens, record.output_tokens
        cread, cwrite = record.cache_read_tokens, record.cache_write_tokens
        reasoning, hit = record.reasoning_tokens, int(record.cache_hit)
        estimated, unpriced = int(record.estimated), int(record.cost is None)
        with self._lock:
            if reservation_id is not None:
                self._drop(reservation_id)
            table = self._counters
            for key in counters:
                counter = table.get(key)
                if counter is None:
                    counter = table[key] = Counter()
                # Counter.of(record) added field by field (the hot path of every call).
                counter.cost += cost
                counter.requests += 1
                counter.input_tokens += inp
                counter.output_tokens += out
                counter.cache_read_tokens += cread
                counter.cache_write_tokens += cwrite
                counter.reasoning_tokens += reasoning
                counter.cache_hits += hit
                counter.estimated += estimated
                counter.unpriced += unpriced
            self._records.append(record)
            return [self._counters[k].cost if k in self._counters else 0 for k in watch]

    def read(self, keys: Sequence[CounterKey]) -> list[Counter]:
        with self._lock:
            out = []
            for key in keys:
                counter = self._counters.get(key)
                copy = Counter()
                if counter is not None:
                    copy.add(counter)
                out.append(copy)
            return out

    def reserved(self, budgets: Sequence[str], now: float) -> list[int]:
        with self._lock:
            self._purge(now)
            return [self._reserved.get(name, 0) for name in budgets]

    def dimension(self, dim: str) -> dict[str, Counter]:
        with self._lock:
            out: dict[str, Counter] = {}
            for (period, _window, d, value), counter in self._counters.items():
                if period == "total" and d == dim:
                    copy = Counter()
                    copy.add(counter)
                    out[value] = copy
            return out

    def recent(self, limit: int) -> list[UsageRecord]:
        with self._lock:
            records = list(self._records)
        return records[-limit:] if limit < len(records) else records

    def clear(self) -> None:
        with self._lock:
            self._counters.clear()
            self._records.clear()
            self._reservations.clear()
            self._reserved.clear()

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return (f"MemoryLedger(records={len(self._records)}, "
                f"reservations={len(self._reservations)})")


# --------------------------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reservation:
    """A budget reservation held by a call in flight (see :meth:`CostManager.reserve`)."""

    id: str
    amount: Decimal
    budgets: tuple[str, ...]
    settled: bool = False


BudgetListener = Callable[[BudgetEvent], None]


class CostManager:
    """Prices calls, records them in a ledger, and keeps the budgets.

    ``backend`` is the :class:`Ledger` (in memory by default). ``pricing`` defaults to the
    process-wide catalogue, ``estimator`` to the process-wide token estimator. ``now`` returns
    the current UTC time (inject a fixed clock in tests). ``reservation_ttl`` bounds how long a
    reservation of a crashed worker can hold budget (seconds).
    """

    def __init__(
        self,
        *,
        backend: Ledger | None = None,
        pricing: PricingCatalog | None = None,
        estimator: TokenEstimator | None = None,
        now: Callable[[], datetime] = _utcnow,
        reservation_ttl: float = 3600.0,
    ) -> None:
        self.backend: Ledger = backend if backend is not None else MemoryLedger()  # type: ignore[assignment]
        self._pricing = pricing
        self.estimator = estimator if estimator is not None else get_token_estimator()
        self.now = now
        self.reservation_ttl = reservation_ttl
        self._budgets: dict[str, BudgetConfig] = {}
        self._listeners: list[BudgetListener] = []
        self._lock = threading.Lock()
        self._stats = {"soft_limit_crossings": 0, "limit_reached": 0, "rejections": 0,
                       "reservations": 0, "released": 0}

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

    def remove_budget(self, name: str) -> bool:
        """Delete a budget; returns whether it existed."""
        with self._lock:
            return self._budgets.pop(name, None) is not None

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
        cost = self.pricing.cost(model, usage, provider=provider, images=images)
        return _quantize(cost) if cost is not None else None

    # -- budgets in force ----------------------------------------------------------------

    def _applicable(self, user_id: str | None, project_id: str | None,
                    model: str) -> list[tuple[str, BudgetConfig]]:
        if not self._budgets:
            return []
        with self._lock:
            return [(n, b) for n, b in self._budgets.items()
                    if b.applies(user_id, project_id, model)]

    @staticmethod
    def _key(config: BudgetConfig, now: datetime) -> CounterKey:
        window, _, _ = period_window(config.period, now)
        dim, value = config.scope
        return config.period.value, window, dim, value

    @staticmethod
    def _record_keys(record: UsageRecord) -> list[CounterKey]:
        dims = [("all", ""), ("model", record.model)]
        if record.user_id is not None:
            dims.append(("user", record.user_id))
        if record.project_id is not None:
            dims.append(("project", record.project_id))
        keys: list[CounterKey] = []
        for name, window in _windows_of(record.timestamp):
            for d, v in dims:
                keys.append((name, window, d, v))
        return keys

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

    def _plan_reservation(self, amount: Decimal, user_id: str | None, project_id: str | None,
                          model: str) -> tuple[list[BudgetCheck], str]:
        hard = [(name, config) for name, config in self._applicable(user_id, project_id, model)
                if config.hard_limit]
        if not hard:
            return [], ""
        now = self.now()
        checks = [BudgetCheck(name, self._key(config, now), to_nano(config.limit))
                  for name, config in hard]
        return checks, new_id()

    def _reserve_result(self, result: ReserveResult, amount: Decimal, rid: str,
                        checks: list[BudgetCheck]) -> Reservation:
        if not result.ok:
            with self._lock:
                self._stats["rejections"] += 1
            name = result.budget or ""
            limit = from_nano(next(c.limit for c in checks if c.name == name))
            spent, held = from_nano(result.spent), from_nano(result.reserved)
            logger.info("budget %r would be exceeded: spent $%s + reserved $%s + this call "
                           "up to $%s > limit $%s; the call was not sent",
                           name, spent, held, amount, limit)
            self._emit(BudgetEvent("rejected", name, limit, spent, requested=amount,
                                   window=next(c.key[1] for c in checks if c.name == name)))
            raise BudgetExceededError(
                f"budget {name!r} would be exceeded: spent ${spent} + reserved ${held} + "
                f"requested ${amount} > limit ${limit}",
                budget=name, limit=limit, spent=spent, reserved=held, requested=amount,
            )
        with self._lock:
            self._stats["reservations"] += 1
        return Reservation(rid, amount, tuple(c.name for c in checks))

    def reserve(self, amount: Decimal, *, model: str, user_id: str | None = None,
                project_id: str | None = None) -> Reservation | None:
        """Reserve ``amount`` (USD) on every hard budget the call falls under.

        Returns ``None`` when no hard budget applies; raises
        :class:`~llm_async.errors.BudgetExceededError` when one would be crossed.
        """
        amount = _quantize(amount)
        checks, rid = self._plan_reservation(amount, user_id, project_id, model)
        if not checks:
            return None
        expires = time.time() + self.reservation_ttl
        result = _invoke(self.backend.reserve, rid, to_nano(amount), checks, expires,
                         time.time())
        return self._reserve_result(result, amount, rid, checks)

    async def areserve(self, amount: Decimal, *, model: str, user_id: str | None = None,
                       project_id: str | None = None) -> Reservation | None:
        """:meth:`reserve` without blocking the event loop."""
        amount = _quantize(amount)
        checks, rid = self._plan_reservation(amount, user_id, project_id, model)
        if not checks:
            return None
        expires = time.time() + self.reservation_ttl
        if not self.backend.blocking:
            result = _invoke(self.backend.reserve, rid, to_nano(amount), checks, expires,
                             time.time())
        else:
            task = asyncio.ensure_future(asyncio.to_thread(
                _invoke, self.backend.reserve, rid, to_nano(amount), checks, expires,
                time.time()))
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                # The caller is gone: undo the reservation once the ledger has made it.
                task.add_done_callback(partial(self._undo_reservation, rid))
                raise
        return self._reserve_result(result, amount, rid, checks)

    def _undo_reservation(self, rid: str, task: asyncio.Future[ReserveResult]) -> None:
        if task.cancelled() or task.exception() is not None or not task.result().ok:
            return
        undo = asyncio.ensure_future(asyncio.to_thread(_invoke, self.backend.release, rid))
        undo.add_done_callback(_log_task_error)

    def release(self, reservation: Reservation | None) -> None:
        """Give a reservation back (the call failed or was cancelled)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        _invoke(self.backend.release, reservation.id)
        with self._lock:
            self._stats["released"] += 1

    async def arelease(self, reservation: Reservation | None) -> None:
        """:meth:`release`, shielded from cancellation."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        await self._call_shielded(self.backend.release, reservation.id)
        with self._lock:
            self._stats["released"] += 1

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
    ) -> UsageRecord:
        """Price one call and build its :class:`UsageRecord` (nothing is written)."""
        if usage is None:
            usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                          cache_read_tokens=cache_read_tokens,
                          cache_write_tokens=cache_write_tokens,
                          reasoning_tokens=reasoning_tokens)
        if min(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
               usage.cache_write_tokens, usage.reasoning_tokens) < 0:
            for name in ("input_tokens", "output_tokens", "cache_read_tokens",
                         "cache_write_tokens", "reasoning_tokens"):
                if getattr(usage, name) < 0:
                    raise InvalidRequestError(f"{name} must be >= 0", field=name)
        if usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
            raise InvalidRequestError(
                "cache_read_tokens + cache_write_tokens cannot exceed input_tokens "
                "(input_tokens counts every prompt token, cached ones included)",
                field="input_tokens")
        pcost = _quantize(to_decimal(provider_cost)) if provider_cost is not None else None
        if cache_hit:
            computed: Decimal | None = ZERO
            pcost = None
        else:
            computed = self.cost_of(model, usage, provider=provider, images=images)
        billed = pcost if pcost is not None else computed
        timestamp = self.now()
        if (isinstance(timestamp, datetime) and type(model) is str and type(images) is int
                and type(prefix_tokens) is int and type(estimated) is bool
                and type(cache_hit) is bool and (reserved is None or type(reserved) is Decimal)
                and all(v is None or type(v) is str for v in (
                    provider, user_id, project_id, prompt_hash, prefix_hash, request_id))):
            # Every value already has its field's type (the usual case, and the cost layer's):
            # skip re-validating them.
            return _trusted_record(
                id=new_id(), timestamp=timestamp, provider=provider, model=model,
                user_id=user_id, project_id=project_id, input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens, cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                reasoning_tokens=usage.reasoning_tokens, images=images, cost=billed,
                computed_cost=computed, provider_cost=pcost, reserved=reserved,
                estimated=estimated, cache_hit=cache_hit, prompt_hash=prompt_hash,
                prefix_hash=prefix_hash, prefix_tokens=prefix_tokens, request_id=request_id)
        return UsageRecord(
            timestamp=timestamp, provider=provider, model=model, user_id=user_id,
            project_id=project_id, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens, reasoning_tokens=usage.reasoning_tokens,
            images=images, cost=billed, computed_cost=computed, provider_cost=pcost,
            reserved=reserved, estimated=estimated, cache_hit=cache_hit,
            prompt_hash=prompt_hash, prefix_hash=prefix_hash, prefix_tokens=prefix_tokens,
            request_id=request_id,
        )

    def _commit_args(self, record: UsageRecord) -> tuple[list[CounterKey],
                                                          list[tuple[str, BudgetConfig]],
                                                          list[CounterKey]]:
        budgets = self._applicable(record.user_id, record.project_id, record.model)
        watch = [self._key(config, record.timestamp) for _, config in budgets]
        return self._record_keys(record), budgets, watch

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
        totals = _invoke(self.backend.commit, record, keys, rid, watch)
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
        totals = await self._call_shielded(self.backend.commit, record, keys, rid, watch)
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
        """Totals over the whole ledger: cost, by model, user and project, requests, tokens."""
        total = self.backend.dimension("all").get("", Counter())
        by_model = self.backend.dimension("model")
        by_user = self.backend.dimension("user")
        by_project = self.backend.dimension("project")
        with self._lock:
            names = list(self._budgets)
        held = self.backend.reserved(names, time.time()) if names else []
        return CostMetrics(
            total_cost=from_nano(total.cost),
            by_model={k: from_nano(v.cost) for k, v in sorted(by_model.items())},
            by_user={k: from_nano(v.cost) for k, v in sorted(by_user.items())},
            by_project={k: from_nano(v.cost) for k, v in sorted(by_project.items())},
            requests=total.requests,
            input_tokens=total.input_tokens,
            output_tokens=total.output_tokens,
            cache_read_tokens=total.cache_read_tokens,
            cache_write_tokens=total.cache_write_tokens,
            reasoning_tokens=total.reasoning_tokens,
            cache_hits=total.cache_hits,
            estimated_requests=total.estimated,
            unpriced_requests=total.unpriced,
            reserved={n: from_nano(h) for n, h in zip(names, held, strict=True) if h},
        )

    def metrics(self) -> dict[str, Any]:
        """The seed's metric names (``cost.total``, ``cost.by_model``, ``cost.by_user``,
        ``cost.requests``) and a few more, for the observability layer."""
        m = self.get_metrics()
        with self._lock:
            stats = dict(self._stats)
        return {
            "cost.total": m.total_cost,
            "cost.by_model": dict(m.by_model),
            "cost.by_user": dict(m.by_user),
            "cost.by_project": dict(m.by_project),
            "cost.requests": m.requests,
            "cost.tokens.input": m.input_tokens,
            "cost.tokens.output": m.output_tokens,
            "cost.tokens.cache_read": m.cache_read_tokens,
            "cost.tokens.cache_write": m.cache_write_tokens,
            "cost.tokens.reasoning": m.reasoning_tokens,
            "cost.cache_hits": m.cache_hits,
            "cost.estimated_requests": m.estimated_requests,
            "cost.unpriced_requests": m.unpriced_requests,
            "cost.reserved": dict(m.reserved),
            "cost.budget.soft_limit_crossings": stats["soft_limit_crossings"],
            "cost.budget.limit_reached": stats["limit_reached"],
            "cost.budget.rejections": stats["rejections"],
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
        spent = from_nano(self.backend.read([key])[0].cost)
        held = from_nano(self.backend.reserved([name], time.time())[0])
        limit = config.limit
        forecast, exhaustion = self.forecast_spend(spent, limit, start, end, now)
        soft = _quantize(limit * to_decimal(config.soft_limit)) if config.soft_limit else None
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
        projected = _quantize(spent + rate * Decimal(repr(remaining)))
        exhaustion = None
        if spent < limit:
            seconds = float((limit - spent) / rate)
            if seconds <= remaining:
                exhaustion = now + timedelta(seconds=seconds)
        else:
            exhaustion = now
        return projected, exhaustion

    # -- recommendations -----------------------------------------------------------------

    def get_optimization_recommendations(
        self,
        *,
        min_share: float = 0.3,
        min_prefix_tokens: int = 1024,
        input_output_ratio: float = 20.0,
        min_input_tokens: int = 2000,
        sample: int = 10_000,
    ) -> list[Recommendation]:
        """Advice computed from the ledger, dearest saving first.

        * ``cheaper_model``: a model with at least ``min_share`` of the spend, and what the
          same tokens would have cost on the cheaper ``alternative`` the catalogue names;
        * ``response_cache``: identical prompts paid for more than once (the repeats' cost);
        * ``prompt_caching``: repeated prompt prefixes of at least ``min_prefix_tokens`` that
          were billed uncached (those tokens at the cache-read instead of the input price);
        * ``trim_prompts``: calls whose input is ``input_output_ratio`` times their output
          and at least ``min_input_tokens`` (half of their uncached input cost);
        * ``unpriced_models``: calls whose cost is unknown (no saving; add their prices).

        The per-call kinds look at the last ``sample`` records.
        """
        recs: list[Recommendation] = []
        total = self.backend.dimension("all").get("", Counter())
        spend = from_nano(total.cost)
        if spend > 0:
            for model, counter in sorted(self.backend.dimension("model").items()):
                cost = from_nano(counter.cost)
                share = float(cost / spend)
                if share < min_share or cost <= 0:
                    continue
                price = self.pricing.lookup(model)
                if price is None or not price.alternative:
                    continue
                alt = (self.pricing.lookup(price.alternative, price.provider)
                       or self.pricing.lookup(price.alternative))
                if alt is None:
                    continue
                usage = Usage(input_tokens=counter.input_tokens,
                              output_tokens=counter.output_tokens,
                              cache_read_tokens=counter.cache_read_tokens,
                              cache_write_tokens=counter.cache_write_tokens,
                              reasoning_tokens=counter.reasoning_tokens)
                alt_cost = _quantize(alt.cost(usage))
                saving = cost - alt_cost
                if saving > 0:
                    recs.append(Recommendation(
                        kind="cheaper_model",
                        message=(f"{model} takes {share:.0%} of the spend (${cost} over "
                                 f"{_calls(counter.requests)}); the same tokens on "
                                 f"{alt.model} would cost ${alt_cost}"),
                        estimated_saving=saving,
                        details={"model": model, "alternative": alt.model, "cost": cost,
                                 "alternative_cost": alt_cost, "share": round(share, 4),
                                 "requests": counter.requests},
                    ))
        records = [r for r in self.backend.recent(sample) if not r.cache_hit]
        recs.extend(self._repeat_recommendations(records, min_prefix_tokens))
        heavy = [r for r in records if r.input_tokens >= min_input_tokens
                 and r.input_tokens >= input_output_ratio * max(1, r.output_tokens)]
        if heavy:
            saving = ZERO
            for r in heavy:
                price = self.pricing.lookup(r.model, r.provider)
                if price is not None:
                    saving += price.cost(Usage(input_tokens=r.uncached_input_tokens)) / 2
            saving = _quantize(saving)
            if saving > 0:
                recs.append(Recommendation(
                    kind="trim_prompts",
                    message=(f"{len(heavy)} calls sent at least {input_output_ratio:g}× more "
                             f"input than they got output; cutting those prompts by half "
                             f"(trim history, retrieve fewer passages) saves about ${saving}"),
                    estimated_saving=saving,
                    details={"calls": len(heavy), "assumed_reduction": 0.5},
                ))
        if total.unpriced:
            models = sorted({r.model for r in records if r.cost is None})
            recs.append(Recommendation(
                kind="unpriced_models",
                message=(f"{total.unpriced} calls have no known cost (models: "
                         f"{', '.join(models) or 'unknown'}); add their prices to the "
                         f"catalogue so budgets can count them"),
                estimated_saving=ZERO,
                details={"calls": total.unpriced, "models": models},
            ))
        recs.sort(key=lambda r: r.estimated_saving, reverse=True)
        return recs

    def _repeat_recommendations(self, records: Sequence[UsageRecord],
                                min_prefix_tokens: int) -> list[Recommendation]:
        recs: list[Recommendation] = []
        by_prompt: dict[str, list[UsageRecord]] = {}
        by_prefix: dict[str, list[UsageRecord]] = {}
        for r in records:
            if r.prompt_hash:
                by_prompt.setdefault(r.prompt_hash, []).append(r)
            if r.prefix_hash and r.prefix_tokens >= min_prefix_tokens:
                by_prefix.setdefault(r.prefix_hash, []).append(r)
        repeats = 0
        saving = ZERO
        prompts = 0
        for group in by_prompt.values():
            if len(group) > 1:
                prompts += 1
                repeats += len(group) - 1
                saving += sum((r.cost or ZERO for r in group[1:]), ZERO)
        if saving > 0:
            recs.append(Recommendation(
                kind="response_cache",
                message=(f"identical prompts were paid for again {_times(repeats)} "
                         f"({prompts} distinct prompt{'s' if prompts != 1 else ''}); a response "
                         f"cache (cache_enabled=True) would have saved ${saving}"),
                estimated_saving=saving,
                details={"prompts": prompts, "repeats": repeats},
            ))
        saving = ZERO
        potential = observed = 0
        for group in by_prefix.values():
            if len(group) < 2:
                continue
            for r in group[1:]:
                price = self.pricing.lookup(r.model, r.provider)
                cacheable = r.prefix_tokens
                potential += cacheable
                observed += min(r.cache_read_tokens, cacheable)
                missed = max(0, cacheable - r.cache_read_tokens)
                if price is not None and missed:
                    full = price.cost(Usage(input_tokens=missed))
                    cached = price.cost(Usage(input_tokens=missed, cache_read_tokens=missed))
                    saving += full - cached
        saving = _quantize(saving)
        if saving > 0 and potential and observed / potential < 0.5:
            recs.append(Recommendation(
                kind="prompt_caching",
                message=(f"repeated prompt prefixes were served from the provider's prompt cache "
                         f"for only {observed / potential:.0%} of their tokens; keeping the "
                         f"shared prefix first and unchanged (and marking it with "
                         f"cache_control on Anthropic) would save about ${saving}"),
                estimated_saving=saving,
                details={"cacheable_tokens": potential, "cached_tokens": observed},
            ))
        return recs

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
        """Close the ledger backend."""
        self.backend.close()

    def __repr__(self) -> str:
        return (f"CostManager(backend={type(self.backend).__name__}, "
                f"budgets={sorted(self._budgets)})")


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


# --------------------------------------------------------------------------------------------
# The pipeline layer
# --------------------------------------------------------------------------------------------


def _message_key(message: Message) -> str:
    """A canonical text of one message: ``role`` and text for a plain text message (the usual
    case, no encoding needed), its sorted JSON otherwise."""
    if (type(message.content) is str and message.name is None and message.tool_calls is None
            and message.tool_call_id is None):
        return f"{message.role}\x1f{message.content}"
    return json.dumps(message.model_dump(exclude_none=True), sort_keys=True, default=str)


def _prompt_hashes(request: ChatRequest) -> tuple[str, str | None]:
    """``(prompt_hash, prefix_hash)``: fingerprints of the model with the whole conversation
    (and tools), and with every message but the last (``None`` for a single message)."""
    keys = [_message_key(m) for m in request.messages]
    head = hashlib.sha256(f"{request.model}\x1e".encode())
    for key in keys[:-1]:
        head.update(key.encode())
        head.update(b"\x1e")
    prefix_hash = head.hexdigest()[:32] if len(keys) > 1 else None
    whole = head.copy()
    if keys:
        whole.update(keys[-1].encode())
    whole.update(b"\x1d")
    if request.tools:
        whole.update(json.dumps([t.model_dump() for t in request.tools], sort_keys=True,
                                default=str).encode())
    return whole.hexdigest()[:32], prefix_hash


@dataclass(slots=True)
class _Plan:
    model: str
    provider: str | None
    input_tokens: int
    prefix_tokens: int
    images: int
    prompt_hash: str
    prefix_hash: str | None
    worst_case: Decimal | None


class CostLayer(Layer):
    """Reserves a call's worst-case cost, sends it, and bills its real cost.

    Before sending: the input tokens are counted offline (by the calibrated heuristic; exactly
    when the manager's estimator opted in with ``TokenEstimator(use_exact=True)`` and a local
    tokenizer knows the model), the worst case is that input (times ``input_margin`` when
    estimated) plus ``max_tokens`` of output (``default_max_tokens`` when the request sets
    none) at the dearest price among the model and its fallbacks; it is reserved on every hard
    budget the call falls under, or :class:`~llm_async.errors.BudgetExceededError` is raised
    and nothing is sent.
    With ``cap_output=True`` a request without ``max_tokens`` is sent with
    ``max_tokens=default_max_tokens``, which makes the worst case a true bound.

    After: the reservation is settled to the bill from the response's usage (the final chunk of
    a stream). A stream cut, broken off or cancelled after its first chunk is billed from an
    estimate of the text seen plus the input, marked ``cost_estimated``; a call that fails
    before any output releases its reservation. ``response.cost``, ``response.cost_estimated``
    and ``ctx.cost`` / ``ctx.cost_estimated`` carry the result. Cache
    hits cost nothing. ``unknown_price="reject"`` refuses calls to unpriced models while a
    hard budget applies (the default, ``"allow"``, sends them and logs a warning).
    """

    def __init__(
        self,
        inner: Handler,
        manager: CostManager | None = None,
        *,
        default_max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        cap_output: bool = False,
        input_margin: Decimal = Decimal("1.25"),
        fallback_models: Sequence[str] | None = None,
        unknown_price: Literal["allow", "reject"] = "allow",
    ) -> None:
        super().__init__(inner)
        self.manager = manager if manager is not None else get_cost_manager()
        if default_max_tokens <= 0:
            raise InvalidRequestError("default_max_tokens must be > 0",
                                      field="default_max_tokens")
        self.default_max_tokens = default_max_tokens
        self.cap_output = cap_output
        self.input_margin = to_decimal(input_margin)
        self.fallback_models = tuple(fallback_models or ())
        self.unknown_price = unknown_price

    # -- planning ------------------------------------------------------------------------

    def _candidates(self, request: ChatRequest) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = [(request.model, request.provider)]
        extra = request.options.get("fallback_models")
        for name in (extra if isinstance(extra, list | tuple) else self.fallback_models):
            if isinstance(name, str) and name:
                prefix, sep, rest = name.partition("/")
                if sep and prefix in ("openai", "anthropic") and request.provider != "openrouter":
                    out.append((rest, prefix))
                else:
                    out.append((name, request.provider))
        return out

    def plan(self, request: ChatRequest) -> _Plan:
        """Token counts, prompt fingerprints and the worst-case cost of ``request``."""
        estimator = self.manager.estimator
        input_tokens = estimator.count_request(request, wait=False)
        prefix_tokens = (estimator.prefix_tokens(request, wait=False)
                         if len(request.messages) > 1 else 0)
        images = sum(isinstance(p, ImagePart) for m in request.messages
                     if isinstance(m.content, list) for p in m.content)
        prompt_hash, prefix_hash = _prompt_hashes(request)
        margin = (Decimal(1) if estimator.is_exact(request.model, wait=False)
                  else self.input_margin)
        reserved_in = int((Decimal(input_tokens) * margin).to_integral_value()) + 16
        out_tokens = request.max_tokens or self.default_max_tokens
        worst: Decimal | None = None
        for model, provider in self._candidates(request):
            price = self.manager.pricing.lookup(model, provider)
            if price is None:
                continue
            cost = price.worst_case(reserved_in, out_tokens, images=images)
            worst = cost if worst is None else max(worst, cost)
        return _Plan(request.model, request.provider, input_tokens, prefix_tokens, images,
                     prompt_hash, prefix_hash, worst)

    async def _reserve(self, request: ChatRequest, plan: _Plan) -> Reservation | None:
        if plan.worst_case is None:
            if self.unknown_price == "reject" and any(
                    c.hard_limit for _, c in self.manager._applicable(
                        request.user_id, request.project_id, request.model)):
                raise BudgetExceededError(
                    f"model {request.model!r} has no price, so its cost cannot be checked "
                    f"against the hard budgets; nothing was sent", requested=None)
            self.manager.pricing.warn_unknown(request.model, request.provider)
            return None
        return await self.manager.areserve(plan.worst_case, model=request.model,
                                           user_id=request.user_id,
                                           project_id=request.project_id)

    def _outgoing(self, request: ChatRequest) -> ChatRequest:
        if self.cap_output and request.max_tokens is None:
            return request.model_copy(update={"max_tokens": self.default_max_tokens})
        return request

    # -- settling ------------------------------------------------------------------------

    async def _settle(self, request: ChatRequest, ctx: CallContext, plan: _Plan,
                      reservation: Reservation | None, *, usage: Usage | None,
                      provider_cost: float | None, cache_hit: bool, model: str | None,
                      text: str, request_id: str | None) -> UsageRecord:
        estimated = False
        if cache_hit:
            usage = usage or Usage()
        elif usage is None or usage.total_tokens == 0:
            estimated = True
            usage = Usage(input_tokens=plan.input_tokens,
                          output_tokens=self.manager.estimator.count(text, request.model,
                                                                     wait=False))
        billed_model = model or request.model
        record = self.manager.build_record(
            billed_model, usage=usage, provider=request.provider, user_id=request.user_id,
            project_id=request.project_id, images=plan.images, provider_cost=provider_cost,
            estimated=estimated, cache_hit=cache_hit,
            reserved=reservation.amount if reservation is not None else None,
            prompt_hash=plan.prompt_hash, prefix_hash=plan.prefix_hash,
            prefix_tokens=plan.prefix_tokens, request_id=request_id,
        )
        try:
            await self.manager.arecord(record, reservation)
        except LLMError:
            # The provider answered and was paid: keep the answer, report the lost record.
            logger.exception("could not record the cost of call %s (%s, $%s)", ctx.call_id,
                             billed_model, record.cost)
        ctx.cost = record.cost
        ctx.cost_estimated = record.estimated
        ctx.event("cost", cost=record.cost, estimated=record.estimated,
                  reserved=record.reserved, cache_hit=cache_hit)
        return record

    async def _release(self, reservation: Reservation | None) -> None:
        """Release on the failure path without hiding the call's own error."""
        try:
            await self.manager.arelease(reservation)
        except LLMError:
            logger.exception("could not release budget reservation %s",
                             reservation.id if reservation else "")

    @staticmethod
    def _billed_model(ctx: CallContext) -> str | None:
        return ctx.answered_model or None

    # -- handler -------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        plan = self.plan(request)
        reservation = await self._reserve(request, plan)
        try:
            response = await self.inner.chat(self._outgoing(request), ctx)
        except BaseException:
            await self._release(reservation)
            raise
        cache_hit = response.cache_hit or ctx.cache_hit
        usage = response.usage
        # The reply's text is only needed to estimate output tokens the provider did not report.
        text = (response.text + "".join(t.function.arguments for t in response.tool_calls)
                if not cache_hit and (usage is None or usage.total_tokens == 0) else "")
        record = await self._settle(
            request, ctx, plan, reservation, usage=usage, provider_cost=response.provider_cost,
            cache_hit=cache_hit, model=self._billed_model(ctx), text=text,
            request_id=response.request_id or response.id or None)
        return response.model_copy(update={"cost": record.cost,
                                           "cost_estimated": record.estimated})

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        plan = self.plan(request)
        reservation = await self._reserve(request, plan)
        parts: list[str] = []
        usage: Usage | None = None
        provider_cost: float | None = None
        response_id: str | None = None
        seen = 0
        done = False
        try:
            async with aclosing(self.inner.stream(self._outgoing(request), ctx)) as chunks:
                async for chunk in chunks:
                    seen += 1
                    if chunk.delta:
                        parts.append(chunk.delta)
                    for call in chunk.tool_calls:
                        if call.arguments:
                            parts.append(call.arguments)
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.provider_cost is not None:
                        provider_cost = chunk.provider_cost
                    if chunk.id and response_id is None:
                        response_id = chunk.id
                    yield chunk
            done = True
            await self._settle(request, ctx, plan, reservation, usage=usage,
                               provider_cost=provider_cost, cache_hit=ctx.cache_hit,
                               model=self._billed_model(ctx), text="".join(parts),
                               request_id=response_id)
        finally:
            if not done:
                if seen == 0:
                    await self._release(reservation)
                else:
                    # Cut, broken off or cancelled mid-stream: bill what was seen (the final
                    # usage chunk, if it came, else an estimate).
                    await self._settle(
                        request, ctx, plan, reservation, usage=usage,
                        provider_cost=provider_cost, cache_hit=False,
                        model=self._billed_model(ctx),
                        text="".join(parts), request_id=response_id)

    def __repr__(self) -> str:
        return f"CostLayer(manager={self.manager!r}, inner={type(self.inner).__name__})"


# --------------------------------------------------------------------------------------------
# The process-wide manager
# --------------------------------------------------------------------------------------------

_manager_lock = threading.Lock()
_manager: CostManager | None = None


def get_cost_manager() -> CostManager:
    """The process-wide :class:`CostManager` (in memory), created on first use with the
    ``daily`` / ``monthly`` budgets of ``LLM_DAILY_BUDGET`` / ``LLM_MONTHLY_BUDGET``."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                from ..config import Settings

                manager = CostManager()
                manager.apply_settings(Settings.from_env())
                _manager = manager
    return _manager


def set_cost_manager(manager: CostManager | None) -> CostManager | None:
    """Replace the process-wide manager (``None`` makes the next :func:`get_cost_manager`
    build a fresh one from the environment); returns the previous one."""
    global _manager
    with _manager_lock:
        previous, _manager = _manager, manager
    return previous


def cost_layer_factory(manager: CostManager, **options: Any) -> Callable[[Handler], CostLayer]:
    """A layer factory for :class:`CostLayer` bound to ``manager``."""
    return partial(CostLayer, manager=manager, **options)

