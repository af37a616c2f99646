"""Budgets and their periods: what a limit covers and when it starts again (UTC)."""

from __future__ import annotations

import calendar
import enum
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .money import UTC, to_decimal, to_nano

__all__ = ["BudgetConfig", "BudgetPeriod", "limits_nano", "period_window", "windows_of"]


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


def windows_of(when: datetime) -> tuple[tuple[str, str], ...]:
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



# (config, limit, soft-limit threshold) in nano-dollars, by id: worked out once per budget.
_LIMITS: dict[int, tuple[BudgetConfig, int, int | None]] = {}


def limits_nano(config: BudgetConfig) -> tuple[int, int | None]:
    """``(limit, soft-limit threshold or None)`` of ``config`` in nano-dollars."""
    found = _LIMITS.get(id(config))
    if found is not None and found[0] is config:
        return found[1], found[2]
    limit = to_nano(config.limit)
    soft = (to_nano(config.limit * to_decimal(config.soft_limit))
            if config.soft_limit is not None else None)
    if len(_LIMITS) >= 4096:
        _LIMITS.clear()
    _LIMITS[id(config)] = (config, limit, soft)
    return limit, soft
