"""The process-wide cost manager (the one the default pipeline and the public examples use)."""

from __future__ import annotations

import threading

from .manager import CostManager

__all__ = ["get_cost_manager", "set_cost_manager"]

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
