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
* :mod:`.pricing` — a model's price as integer rates, and the bill of an attempt;
  :mod:`.catalogue` — where prices are looked up (overrides, then :mod:`.genai`, the
  genai-prices data);
* :mod:`.bounds` — the input-token upper bound no text can beat; :mod:`.tokens` — estimates for
  display (and :mod:`.calibration`, their measured error);
* :mod:`.book` — budgets and events; :mod:`.admission` — reserve, wait, refuse, and leases;
  :mod:`.reports` — metrics, statuses, forecasts; :mod:`.manager` — :class:`CostManager`, which
  puts them together and records usage;
* :mod:`.advice` — recommendations computed from the ledger (:mod:`.fingerprints`: the prompt
  fingerprints records carry for it);
* :mod:`.layer` — :class:`CostLayer`, the pipeline layer that bills every attempt sent.

Names load lazily: importing one module (``.tokens``, say) does not import the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "BudgetCheck": ".records",
    "BudgetConfig": ".periods",
    "BudgetEvent": ".records",
    "BudgetListener": ".book",
    "BudgetPeriod": ".periods",
    "BudgetStatus": ".records",
    "COUNTER_FIELDS": ".records",
    "CostLayer": ".layer",
    "CostManager": ".manager",
    "CostMetrics": ".records",
    "Counter": ".records",
    "CounterKey": ".records",
    "DEFAULT_MAX_OUTPUT_TOKENS": ".layer",
    "Hold": ".records",
    "Ledger": ".ledger",
    "MemoryLedger": ".ledger",
    "OUTCOMES": ".records",
    "Outcome": ".records",
    "Recommendation": ".records",
    "Reservation": ".records",
    "ReserveResult": ".records",
    "UsageRecord": ".records",
    "cost_layer_factory": ".layer",
    "from_nano": ".money",
    "get_cost_manager": "._process",
    "new_id": ".money",
    "period_window": ".periods",
    "prompt_hashes": ".fingerprints",
    "sanitize_usage": ".manager",
    "set_cost_manager": "._process",
    "to_nano": ".money",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals(), __all__)


if TYPE_CHECKING:  # pragma: no cover
    from ._process import (
        get_cost_manager,
        set_cost_manager,
    )
    from .book import (
        BudgetListener,
    )
    from .fingerprints import (
        prompt_hashes,
    )
    from .layer import (
        DEFAULT_MAX_OUTPUT_TOKENS,
        CostLayer,
        cost_layer_factory,
    )
    from .ledger import (
        Ledger,
        MemoryLedger,
    )
    from .manager import (
        CostManager,
        sanitize_usage,
    )
    from .money import (
        from_nano,
        new_id,
        to_nano,
    )
    from .periods import (
        BudgetConfig,
        BudgetPeriod,
        period_window,
    )
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
