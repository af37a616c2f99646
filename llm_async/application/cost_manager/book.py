"""The budget book: the budgets a manager keeps, which of them a call falls under, the
counters a record adds to, and the events budgets emit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ...errors import InvalidRequestError
from .ledger import Ledger
from .money import to_decimal
from .periods import BudgetConfig, BudgetPeriod, period_window, windows_of
from .records import BudgetEvent, CounterKey

if TYPE_CHECKING:
    from ...config import Settings

__all__ = ["BudgetBook", "BudgetListener"]

logger = logging.getLogger("llm_async.cost")
BudgetListener = Callable[[BudgetEvent], None]


class BudgetBook:
    """Budgets by name, their listeners, and the ledger and clocks they are read with (the base
    of :class:`~.manager.CostManager`)."""

    backend: Ledger
    now: Callable[[], datetime]
    clock: Callable[[], float]

    def __init__(self) -> None:
        self._budgets: dict[str, BudgetConfig] = {}
        self._hard: list[tuple[str, BudgetConfig]] = []
        self._listeners: list[BudgetListener] = []
        self._lock = threading.Lock()
        self._stats = {"soft_limit_crossings": 0, "limit_reached": 0, "rejections": 0,
                       "reservations": 0, "released": 0, "admission_waits": 0,
                       "leases_expired": 0}

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

    def _emit(self, event: BudgetEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("budget event listener %r failed", listener)

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
                    when: datetime) -> tuple[CounterKey, ...]:
        """Every counter a record of this model, user and project at ``when`` adds to."""
        windows = windows_of(when)
        memo = (model, user_id, project_id, windows)
        found = _RECORD_KEYS.get(memo)
        if found is not None:
            return found
        dims = [("all", ""), ("model", model)]
        if user_id is not None:
            dims.append(("user", user_id))
        if project_id is not None:
            dims.append(("project", project_id))
        keys = tuple((name, window, d, v) for name, window in windows for d, v in dims)
        if len(_RECORD_KEYS) >= 4096:
            _RECORD_KEYS.clear()
        _RECORD_KEYS[memo] = keys
        return keys


# The counters of recent (model, user, project, period windows), so most records reuse them.
_RECORD_KEYS: dict[tuple[str, str | None, str | None, tuple[tuple[str, str], ...]],
                   tuple[CounterKey, ...]] = {}
