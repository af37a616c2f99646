"""Reading the ledger back: metrics, budget statuses and the end-of-period forecast."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from ...errors import InvalidRequestError
from .book import BudgetBook
from .money import ZERO, from_nano, quantize, to_decimal
from .periods import period_window
from .records import BudgetStatus, CostMetrics, Counter, CounterKey

__all__ = ["Reports"]


class Reports(BudgetBook):
    """Metrics, statuses and forecasts (a base of :class:`~.manager.CostManager`)."""

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
