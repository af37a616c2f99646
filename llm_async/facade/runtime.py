"""One event loop in a daemon thread, driven through an anyio blocking portal, and the calls
handed to it from other threads; after a fork, the child marks every runtime as left behind."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal

from ..errors import InvalidRequestError

if TYPE_CHECKING:
    from ..client import AsyncLLMClient



T = TypeVar("T")

_SHUTDOWN_JOIN_SECONDS = 10.0
#: Every live runtime of this process (so a fork hook can find them).
_runtimes: weakref.WeakSet[_Runtime] = weakref.WeakSet()
#: Runtimes a fork left behind in this (child) process: kept, never finalised here.
_left_behind: list[_Runtime] = []


def _closed_error() -> InvalidRequestError:
    return InvalidRequestError("the LLM client service is closed")


class _Call:
    """One call handed to the loop, cancellable from the calling thread at any moment: also
    while it is still being spawned (a Ctrl-C that lands before the portal returned its
    future must cancel it too)."""

    __slots__ = ("cancelled", "func", "scope")

    def __init__(self, func: Callable[[], Any]) -> None:
        self.func = func
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False

    async def run(self) -> Any:
        with anyio.CancelScope() as scope:
            self.scope = scope
            if self.cancelled:
                scope.cancel()
            result = self.func()
            if inspect.isawaitable(result):
                result = await result
            return result
        raise anyio.get_cancelled_exc_class()()  # cancelled: the caller is gone

    def cancel(self) -> None:
        """Run on the loop's thread (ordered with :meth:`run`, so it cannot be missed)."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class _Runtime:
    """One event loop in a daemon thread, driven through an anyio blocking portal.

    Holds no reference to the service, so a :func:`weakref.finalize` of the service may call
    :meth:`shutdown`.
    """

    def __init__(self, name: str) -> None:
        ready: concurrent.futures.Future[tuple[BlockingPortal, asyncio.AbstractEventLoop]] = (
            concurrent.futures.Future())
        self.client: AsyncLLMClient | None = None
        self.stopped = False
        #: Set in a forked child: the loop and its thread stayed in the parent.
        self.forked = False
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self.thread.start()
        self.portal, self.loop = ready.result()
        _runtimes.add(self)

    @staticmethod
    def _run(ready: concurrent.futures.Future[tuple[BlockingPortal,
                                                    asyncio.AbstractEventLoop]]) -> None:
        async def main() -> None:
            async with BlockingPortal() as portal:
                ready.set_result((portal, asyncio.get_running_loop()))
                await portal.sleep_until_stopped()

        try:
            anyio.run(main)
        except BaseException as exc:  # pragma: no cover - the loop itself failed to start
            if not ready.done():
                ready.set_exception(exc)

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on this runtime's own event loop thread."""
        return threading.get_ident() == self.thread.ident

    def _check(self) -> None:
        if self.stopped:
            raise _closed_error()
        if self.in_loop_thread():
            raise InvalidRequestError(
                "a sync LLMClientService method was called from the service's own event loop; "
                "await ainvoke_chat() (or use the AsyncLLMClient) there instead")

    @overload
    def call(self, func: Callable[[], Awaitable[T]]) -> T: ...

    @overload
    def call(self, func: Callable[[], T]) -> T: ...

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` (a coroutine function or a plain one) on the loop; block for its result."""
        call = _Call(func)
        future: concurrent.futures.Future[Any] | None = None
        try:
            future = self.submit(call.run)
            return future.result()
        except concurrent.futures.CancelledError:
            raise _closed_error() from None
        except BaseException:
            # The waiting thread was interrupted (KeyboardInterrupt), possibly before the portal
            # handed back the future: cancel the call on the loop too, so nothing keeps running
            # for a caller who is gone. (When ``func`` itself raised, this does nothing.)
            if future is None or not future.done():
                self.cancel_soon(call.cancel)
            raise

    def cancel_soon(self, cancel: Callable[[], None]) -> None:
        """Run ``cancel`` on the loop's thread, from any thread, without waiting."""
        if self.stopped and self.forked:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already stopped
            self.loop.call_soon_threadsafe(cancel)

    def submit(self, func: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Start ``func`` on the loop; a future of its result (cancelling it cancels the task)."""
        self._check()
        try:
            return self.portal.start_task_soon(func)
        except RuntimeError:
            if self.stopped:
                raise _closed_error() from None
            raise

    def start_task(self, func: Callable[..., Awaitable[Any]]) -> concurrent.futures.Future[Any]:
        """Start ``func`` (which takes ``task_status``) and wait until it reports started."""
        self._check()
        future, _ = self.portal.start_task(func)
        return future

    def abandon(self) -> None:
        """In a forked child: this runtime's loop and thread stayed in the parent. Mark it
        stopped without touching anything it owns (its sockets and selector are the parent's
        too) and keep it alive, so that no finaliser of its objects ever runs here."""
        self.stopped = self.forked = True
        self._lock = threading.Lock()
        _left_behind.append(self)

    def shutdown(self) -> None:
        """Close the client on its loop, stop the loop and join the thread (idempotent)."""
        if self.forked or self.pid != os.getpid():
            return  # the loop is in another process: nothing here to wait for
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
        if self.in_loop_thread():
            # Finalised by the garbage collector on the loop itself: the loop cannot wait for
            # its own shutdown, so a helper thread does it.
            threading.Thread(target=self._shutdown, name=f"{self.thread.name}-stop",
                             daemon=True).start()
            return
        self._shutdown()

    def _shutdown(self) -> None:
        try:
            client = self.client
            if client is not None and self.thread.is_alive():
                self.portal.call(client.aclose)
        finally:
            with contextlib.suppress(RuntimeError):  # the portal had already stopped
                self.portal.call(self.portal.stop, True)
            self.thread.join(_SHUTDOWN_JOIN_SECONDS)


def _after_fork_in_child() -> None:
    for runtime in list(_runtimes):
        if runtime.pid != os.getpid():
            runtime.abandon()
    _runtimes.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
