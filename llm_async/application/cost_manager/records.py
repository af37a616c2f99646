"""What the ledger stores and reports: usage records (one per billed attempt), spend counters,
metrics, budget statuses and events, and the values passed to and from a ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...types import Usage
from ...types._base import trusted_instance
from .money import ZERO, new_id, quantize, to_nano, utcnow
from .periods import BudgetPeriod

__all__ = [
    "COUNTER_FIELDS",
    "OUTCOMES",
    "BudgetCheck",
    "BudgetEvent",
    "BudgetStatus",
    "CostMetrics",
    "Counter",
    "CounterKey",
    "Hold",
    "Outcome",
    "Recommendation",
    "RecordRow",
    "Reservation",
    "ReserveResult",
    "UsageRecord",
    "record_from_row",
    "trusted_record",
]

#: How a billed attempt ended. ``complete``: the provider answered and reported usage (or the
#: answer was complete without usage: then ``estimated``); ``cut``: a stream broke off after
#: its first chunk; ``cancelled``: the caller cancelled after the body was sent; ``timed_out``:
#: a timeout fired after the body was sent; ``failed``: the connection failed after the body was
#: sent; ``provider_error``: the provider answered with an HTTP error (it bills nothing);
#: ``lease_expired``: the worker holding the reservation stopped renewing it (charged at the
#: reserved amount).
Outcome = Literal["complete", "cut", "cancelled", "timed_out", "failed", "provider_error",
                  "lease_expired"]
OUTCOMES: tuple[str, ...] = ("complete", "cut", "cancelled", "timed_out", "failed",
                             "provider_error", "lease_expired")


class _Mapping(BaseModel):
    """Models that also read like dicts (``status["percentage"]``), as the public examples
    use them."""

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
    """One billed attempt in the ledger.

    ``cost`` is what the attempt is billed: the provider's own figure when it reports one
    (OpenRouter), else ``computed_cost`` from the catalogue; ``None`` when neither is known.
    ``reserved`` is what the budget reserved for it. ``estimated`` says the tokens were not
    reported by the provider (the attempt was cut, cancelled or timed out after sending, or
    its lease expired): such an attempt is billed at its reserved upper bound. ``call_id``
    links every attempt (retries, fallbacks) to its logical call; ``attempt`` is its number;
    ``counts_call`` is true on the first record of a call. ``outcome`` says how the attempt
    ended (see :data:`OUTCOMES`); ``flags`` name anything odd in the usage the provider sent
    (the record is kept, with the usage made consistent).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    id: str = Field(default_factory=new_id)
    timestamp: datetime = Field(default_factory=utcnow)
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
    call_id: str | None = None
    attempt: int = 1
    counts_call: bool = True
    outcome: Outcome = "complete"
    flags: tuple[str, ...] = ()

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


def trusted_record(**values: Any) -> UsageRecord:
    """A :class:`UsageRecord` from values that already have their fields' types (every field
    given), without re-validating them (what ``model_construct`` does, minus its defaults
    handling)."""
    # The fields set is shared: the record is frozen, and pydantic copies the set before
    # changing it (``model_copy``), never in place.
    return trusted_instance(UsageRecord, values, _ALL_SET)


_ALL_SET = set(_RECORD_FIELDS)

#: One complete, exactly priced attempt as the in-process ledger keeps it until it is read:
#: ``(timestamp, provider, model, user_id, project_id, input_tokens, output_tokens, cost,
#: prompt_hash, request_id, call_id, attempt, counts_call)``. It has no cached, cache-write
#: or reasoning tokens, no images, no reservation, no provider figure and no prefix; its
#: :class:`UsageRecord` (and its ``id``) is made by :func:`record_from_row` when first read.
RecordRow = tuple[datetime, str | None, str, str | None, str | None, int, int, Decimal,
                  str | None, str | None, str | None, int, bool]


def record_from_row(row: RecordRow) -> UsageRecord:
    """The :class:`UsageRecord` of a :data:`RecordRow`."""
    (timestamp, provider, model, user_id, project_id, input_tokens, output_tokens, cost,
     prompt_hash, request_id, call_id, attempt, counts_call) = row
    return trusted_instance(UsageRecord, {
        "id": new_id(), "timestamp": timestamp, "provider": provider, "model": model,
        "user_id": user_id, "project_id": project_id, "input_tokens": input_tokens,
        "output_tokens": output_tokens, "cache_read_tokens": 0, "cache_write_tokens": 0,
        "reasoning_tokens": 0, "images": 0, "cost": cost, "computed_cost": cost,
        "provider_cost": None, "reserved": None, "estimated": False, "cache_hit": False,
        "prompt_hash": prompt_hash, "prefix_hash": None, "prefix_tokens": 0,
        "request_id": request_id, "call_id": call_id, "attempt": attempt,
        "counts_call": counts_call, "outcome": "complete", "flags": ()}, _ALL_SET)


class CostMetrics(_Mapping):
    """Totals over the whole ledger (``total_cost`` formats with ``:.2f``).

    ``calls`` counts logical calls, ``requests`` (also ``attempts``) the billed attempts:
    a call retried twice after sending is one call and three attempts.
    """

    model_config = ConfigDict(frozen=True)

    total_cost: Decimal = ZERO
    by_model: dict[str, Decimal] = Field(default_factory=dict)
    by_user: dict[str, Decimal] = Field(default_factory=dict)
    by_project: dict[str, Decimal] = Field(default_factory=dict)
    requests: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_hits: int = 0
    estimated_requests: int = 0
    unpriced_requests: int = 0
    lease_expired: int = 0
    flagged_requests: int = 0
    reserved: dict[str, Decimal] = Field(default_factory=dict)

    @property
    def attempts(self) -> int:
        """Billed attempts (the same as ``requests``)."""
        return self.requests

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def average_cost(self) -> Decimal:
        """Mean billed cost per attempt."""
        priced = self.requests - self.unpriced_requests
        return quantize(self.total_cost / priced) if priced > 0 else ZERO


class BudgetStatus(_Mapping):
    """Where a budget stands in its current period, with the forecast for the period's end.

    ``percentage`` is ``spent / limit × 100``. ``forecast`` is the projected spend at
    ``resets_at`` (linear run rate, see :meth:`CostManager.forecast_spend`);
    ``projected_exhaustion`` is when that rate reaches the limit, if it does before the reset.
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
    at: datetime = field(default_factory=utcnow)


class Recommendation(_Mapping):
    """A piece of advice computed from the ledger, with the saving it would have brought."""

    model_config = ConfigDict(frozen=True)

    kind: str
    message: str
    estimated_saving: Decimal
    details: dict[str, Any] = Field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.message} (estimated saving ${self.estimated_saving:.4f})"


#: ``(period, window, dimension, value)``: one spend counter.
CounterKey = tuple[str, str, str, str]
#: What every counter counts (``requests`` counts billed attempts, ``calls`` logical calls).
COUNTER_FIELDS: tuple[str, ...] = (
    "cost", "requests", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "cache_hits", "estimated", "unpriced",
    "calls", "lease_expired", "flagged",
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
    calls: int = 0
    lease_expired: int = 0
    flagged: int = 0

    def add(self, other: Counter, sign: int = 1) -> None:
        """Add (``sign=-1``: subtract) ``other`` field by field."""
        for name in COUNTER_FIELDS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))

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
            calls=int(record.counts_call),
            lease_expired=int(record.outcome == "lease_expired"),
            flagged=int(bool(record.flags)),
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


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation as a ledger stores it: ``amount`` (nano-dollars) held on every budget of
    ``checks`` until ``expires_at`` (epoch seconds; the lease, renewed by the running call).

    ``charge`` is the record the ledger writes, into ``counters``, if the lease expires: the
    reserved amount, marked ``lease_expired`` and ``estimated``. An expired hold is charged,
    never dropped.
    """

    id: str
    amount: int
    checks: tuple[BudgetCheck, ...]
    expires_at: float
    charge: UsageRecord | None = None
    counters: tuple[CounterKey, ...] = ()


@dataclass(slots=True)
class Reservation:
    """A budget reservation held by a call in flight (see :meth:`CostManager.areserve`)."""

    id: str
    amount: Decimal
    budgets: tuple[str, ...]
    settled: bool = False
    nano: int = 0
    #: Whether the ledger charged it at its reserved amount because its lease expired.
    expired: bool = False
