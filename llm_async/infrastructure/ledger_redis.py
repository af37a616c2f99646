"""The Redis cost ledger (a re-export of :mod:`llm_async.infrastructure.state.redis_ledger`)."""

from __future__ import annotations

from .state.redis_ledger import RedisLedger

__all__ = ["RedisLedger"]
