"""The SQLite cost ledger (a re-export of :mod:`llm_async.infrastructure.state.sqlite_ledger`)."""

from __future__ import annotations

from .state.sqlite_ledger import SQLiteLedger

__all__ = ["SQLiteLedger"]
