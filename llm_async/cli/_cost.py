"""``llm-async cost``: the cost ledger's report and budget status."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, TextIO

from ..config import Settings
from ._bench_command import _print_rows
from ._parser import EXIT_ERROR, EXIT_OK, UsageError


def _money(value: Any) -> str:
    return "-" if value is None else f"${float(value):,.6f}"


def _cost(args: argparse.Namespace, out: TextIO) -> int:
    from ..application.cost_manager import CostManager

    settings = Settings.from_env()
    backend: Any  # a Ledger (the SQLite and Redis ones are structurally so)
    if args.sqlite:
        from ..infrastructure.ledger_sqlite import SQLiteLedger

        if not os.path.exists(args.sqlite):
            raise UsageError(f"no ledger at {args.sqlite}")
        backend, where = SQLiteLedger(args.sqlite), f"SQLite ledger {args.sqlite}"
    elif args.redis_url:
        from ..infrastructure.ledger_redis import RedisLedger

        backend = RedisLedger(args.redis_url, prefix=args.redis_prefix)
        where = f"Redis ledger {args.redis_url}"
    else:
        backend, where = None, "in-memory ledger of this process (see --sqlite, --redis-url)"
    manager = CostManager(backend=backend)
    try:
        manager.apply_settings(settings)
        metrics = manager.get_metrics()
        budgets = manager.get_all_budget_statuses()
        recent = manager.recent_records(args.recent) if args.recent > 0 else []
    finally:
        manager.close()
    over = sorted(name for name, status in budgets.items() if status.exceeded)

    if args.json:
        report = {"ledger": where, "metrics": metrics.to_dict(),
                  "budgets": {name: status.to_dict() for name, status in budgets.items()},
                  "recent": [record.to_dict() for record in recent]}
        out.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        rows = [
            ("total cost", _money(metrics.total_cost)),
            ("requests", f"{metrics.requests} ({metrics.cache_hits} cache hits, "
                         f"{metrics.estimated_requests} estimated, "
                         f"{metrics.unpriced_requests} unpriced)"),
            ("input tokens", str(metrics.input_tokens)),
            ("output tokens", str(metrics.output_tokens)),
        ]
        rows += [(f"model {name}", _money(v)) for name, v in metrics.by_model.items()]
        rows += [(f"user {name}", _money(v)) for name, v in metrics.by_user.items()]
        rows += [(f"project {name}", _money(v)) for name, v in metrics.by_project.items()]
        for name, status in budgets.items():
            line = (f"{_money(status.spent)} of {_money(status.limit)} ({status.percentage}%), "
                    f"{status.period.value}, {status.scope}")
            if status.exceeded:
                line += ", EXCEEDED"
            elif status.soft_limit_reached:
                line += ", over the soft limit"
            if status.forecast is not None:
                line += f", forecast {_money(status.forecast)}"
            rows.append((f"budget {name}", line))
        if not budgets:
            rows.append(("budgets", "none (set LLM_DAILY_BUDGET / LLM_MONTHLY_BUDGET)"))
        for record in recent:
            rows.append((f"call {record.timestamp:%Y-%m-%d %H:%M:%S}",
                         f"{record.model} {_money(record.cost)} "
                         f"in={record.input_tokens} out={record.output_tokens}"
                         + (f" user={record.user_id}" if record.user_id else "")))
        _print_rows(rows, out, f"llm-async cost: {where}")
    out.flush()
    return EXIT_ERROR if over and args.fail_over_budget else EXIT_OK
