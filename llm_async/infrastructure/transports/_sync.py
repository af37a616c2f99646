"""Blocking calls on transports, for synchronous code (``transport.chat_completion(...)``).

A blocking call runs its coroutine on an event loop in another thread and waits for it:

* on the loop of the ``aiohttp.ClientSession`` the transport was given, when that loop is running
  in another thread (an application that owns its loop and session);
* otherwise on one process-wide loop, run in a daemon thread started on first use, so that a
  transport's own pooled session lives on from one call to the next.

Like any blocking call, one made from a thread whose event loop is running stalls that loop until
it returns (async code should await the awaitable twin). When the call would need that very loop
— the transport's session belongs to it — it could never finish, so it raises ``RuntimeError``
naming the awaitable method instead. Interrupting the waiting thread (``KeyboardInterrupt``)
cancels the call on its loop, which releases its connection.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_blocking", "session_loop"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="llm-async-blocking-calls",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def usable(self) -> bool:
        # After a fork only the forking thread exists in the child: start a new loop there.
        return self.pid == os.getpid() and self.thread.is_alive() and not self.loop.is_closed()


_lock = threading.Lock()
_shared: _LoopThread | None = None


def _shared_loop() -> asyncio.AbstractEventLoop:
    global _shared
    with _lock:
        if _shared is None or not _shared.usable:
            _shared = _LoopThread()
        return _shared.loop


def session_loop(session: Any) -> asyncio.AbstractEventLoop | None:
    """The event loop an ``aiohttp.ClientSession`` belongs to (``None`` when unknown)."""
    loop = getattr(session, "_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


def run_blocking(coro: Coroutine[Any, Any, T], *, loop: asyncio.AbstractEventLoop | None = None,
                 awaitable: str) -> T:
    """Run ``coro`` to completion on ``loop`` (default: the process-wide one) and return its
    result, blocking the calling thread. ``awaitable`` names the method async code should await
    instead; it is named in the error raised when the call would need the caller's own loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    target = loop if loop is not None else _shared_loop()
    if target is running:
        coro.close()
        raise RuntimeError(
            f"a blocking call cannot run on the event loop it would block (the transport's "
            f"session belongs to it); use 'await {awaitable}(...)' there")
    if target.is_closed() or not target.is_running():
        coro.close()
        raise RuntimeError(
            "the event loop of the transport's aiohttp session is not running: run it in "
            f"another thread, or use 'await {awaitable}(...)' on that loop")
    future = asyncio.run_coroutine_threadsafe(coro, target)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # interrupted while waiting: the call is cancelled on its loop
        raise
