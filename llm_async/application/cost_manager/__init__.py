"""Cost tracking and budgets that cannot be overspent.

::

    from llm_async.application.cost_manager import get_cost_manager, BudgetConfig, BudgetPeriod

    manager = get_cost_manager()
    manager.set_budget("daily_budget", BudgetConfig(limit=100.0, period=BudgetPeriod.DAILY))
    record = manager.track_usage(model="gpt-4", input_tokens=1000, output_tokens=500,
                                 user_id="user123")
    print(f"Total cost: ${manager.get_metrics().total_cost:.2f}")

The package, one module per job:

* :mod:`.money` — exact amounts (``Decimal`` for people, integer nano-dollars for the ledger);
* :mod:`.periods` — budgets (:class:`BudgetConfig`) and their UTC periods;
* :mod:`.records` — usage records (one per billed attempt), counters, metrics, statuses;
* :mod:`.ledger` — the :class:`Ledger` port (reservations with leases) and
  :class:`MemoryLedger`; ``SQLiteLedger`` and ``RedisLedger`` live in
  :mod:`llm_async.infrastructure.state`;
* :mod:`.pricing` — prices from genai-prices plus the overrides file, as integer rates;
* :mod:`.tokens` — the input-token upper bound, and estimates for display;
* :mod:`.manager` — :class:`CostManager`: budgets, admission (reserve, wait, refuse),
  leases, records, metrics, forecasts;
* :mod:`.advice` — recommendations computed from the ledger;
* :mod:`.layer` — :class:`CostLayer`, the pipeline layer that bills every attempt sent.
"""

from __future__ import annotations

import threading

from .layer import DEFAULT_MAX_OUTPUT_TOKENS, CostLayer, cost_layer_factory, prompt_hashes
from .ledger import Ledger, MemoryLedger
from .manager import BudgetListener, CostManager, sanitize_usage
from .money import from_nano, new_id, to_nano
from .periods import BudgetConfig, BudgetPeriod, period_window
from .records import (
    COUNTER_FIELDS,
    OUTCOMES,
    BudgetCheck,
    BudgetEvent,
    BudgetStatus,
    CostMetrics,
    Counter,
    CounterKey,
    Hold,
    Outcome,
    Recommendation,
    Reservation,
    ReserveResult,
    UsageRecord,
)

__all__ = [
    "COUNTER_FIELDS",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "OUTCOMES",
    "BudgetCheck",
    "BudgetConfig",
    "BudgetEvent",
    "BudgetListener",
    "BudgetPeriod",
    "BudgetStatus",
    "CostLayer",
    "CostManager",
    "CostMetrics",
    "Counter",
    "CounterKey",
    "Hold",
    "Ledger",
    "MemoryLedger",
    "Outcome",
    "Recommendation",
    "Reservation",
    "ReserveResult",
    "UsageRecord",
    "cost_layer_factory",
    "from_nano",
    "get_cost_manager",
    "new_id",
    "period_window",
    "prompt_hashes",
    "sanitize_usage",
    "set_cost_manager",
    "to_nano",
]

_manager_lock = threading.Lock()
_manager: CostManager | None = None


def get_cost_manager() -> CostManager:
    """The process-wide :class:`CostManager` (in memory), created on first use with the
    ``daily`` / ``monthly`` budgets of ``LLM_DAILY_BUDGET`` / ``LLM_MONTHLY_BUDGET``."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                from ...config import Settings

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


