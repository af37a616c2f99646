"""The process-wide service: :func:`get_llm_client_service`, configured from the environment on
first use, and :func:`invoke_chat` / :func:`stream_chat` on it."""

from __future__ import annotations

import os
import threading
from typing import Any

from ..types import ChatResponse
from .service import LLMClientService
from .stream import SyncChatStream

__all__ = ["get_llm_client_service", "invoke_chat", "reset_llm_client_service", "stream_chat"]


_service_lock = threading.Lock()
_service: LLMClientService | None = None


def get_llm_client_service() -> LLMClientService:
    """The process-wide service, configured from the environment on first use (thread-safe).

    A closed service is replaced by a new one on the next call.
    """
    global _service
    service = _service
    if service is not None and not service.closed:
        return service
    with _service_lock:
        if _service is None or _service.closed:
            _service = LLMClientService()
        return _service


def reset_llm_client_service() -> None:
    """Close the process-wide service; the next :func:`get_llm_client_service` builds a new one
    from the environment as it is then."""
    global _service
    with _service_lock:
        service, _service = _service, None
    if service is not None:
        service.close()


def _after_fork_in_child() -> None:
    global _service_lock
    _service_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def invoke_chat(model: str | None = None, messages: Any = None, **params: Any) -> ChatResponse:
    """``invoke_chat(model=..., messages=[...])`` on the process-wide service."""
    return get_llm_client_service().invoke_chat(model, messages, **params)


def stream_chat(model: str | None = None, messages: Any = None,
                **params: Any) -> SyncChatStream:
    """``for chunk in stream_chat(model=..., messages=[...])`` on the process-wide service."""
    return get_llm_client_service().stream_chat(model, messages, **params)
