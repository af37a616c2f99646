"""One timer for all the timeouts of one attempt.

A timer per wait (``asyncio.timeout`` around every read) costs a scheduled callback made and
cancelled each time. :class:`Watch` keeps one: moving the deadline later is a plain attribute
write, and the timer, when it fires early, sleeps again until the deadline it finds. It only
interrupts the task while that task is inside one of the attempt's own waits (between
:meth:`Watch.enter` and :meth:`Watch.leave`); a deadline that passes while the caller is busy
elsewhere is raised when the attempt next waits.
"""

from __future__ import annotations

import asyncio

from ...types import Timeout

__all__ = ["Watch"]


def _earliest(phase_deadline: float | None, deadline: float | None) -> float | None:
    """The earlier of a phase deadline and the total deadline (``None`` for neither)."""
    if deadline is None:
        return phase_deadline
    return deadline if phase_deadline is None or deadline < phase_deadline else phase_deadline


class Watch:
    """The deadline of one attempt's current phase, enforced by one timer.

    ``at`` is the loop time the current wait must end by (``None``: no limit). A wait is
    bracketed by :meth:`enter` (which raises :class:`asyncio.TimeoutError` at once when ``at`` has
    passed) and :meth:`leave`. When the deadline passes inside a wait, the task is cancelled and
    :attr:`expired` set; :meth:`timed_out` tells that cancellation apart from one by the
    caller.
    """

    __slots__ = ("_handle", "_loop", "_task", "_waiting", "at", "deadline", "expired", "idle")

    def __init__(self, loop: asyncio.AbstractEventLoop, at: float | None = None, *,
                 idle: float | None = None, deadline: float | None = None) -> None:
        self._loop = loop
        #: Seconds a wait may last after data arrived (:meth:`progressed`), and the loop time
        #: no wait may outlast.
        self.idle = idle
        self.deadline = deadline
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._waiting = False
        self.at = at
        self.expired = False

    @classmethod
    def for_attempt(cls, loop: asyncio.AbstractEventLoop, timeout: Timeout) -> Watch:
        """The watch of an attempt sent now: ``first_chunk`` and ``total`` run from now, and
        ``idle`` after each piece of data."""
        now = loop.time()
        deadline = None if timeout.total is None else now + timeout.total
        first = None if timeout.first_chunk is None else now + timeout.first_chunk
        return cls(loop, _earliest(first, deadline), idle=timeout.idle, deadline=deadline)

    def enter(self) -> None:
        """Start a wait; the deadline must not have passed."""
        at = self.at
        if at is None:
            return
        handle = self._handle
        if handle is None or handle.when() > at:
            if at <= self._loop.time():
                raise asyncio.TimeoutError
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(at, self._fire)
        self._task = asyncio.current_task(self._loop)
        self._waiting = True

    def leave(self) -> None:
        """End a wait."""
        self._waiting = False

    def progressed(self, now: float | None = None) -> None:
        """Data arrived (at loop time ``now``, read if not given): the next wait may last
        :attr:`idle` seconds, never past :attr:`deadline`."""
        idle = self.idle
        if idle is None:
            self.at = self.deadline
        else:
            self.at = _earliest((self._loop.time() if now is None else now) + idle,
                                self.deadline)

    def _fire(self) -> None:
        self._handle = None
        at = self.at
        if at is None:
            return
        if self._loop.time() < at:  # the deadline moved later: sleep until then
            self._handle = self._loop.call_at(at, self._fire)
        elif self._waiting and self._task is not None and not self.expired:
            self.expired = True
            self._task.cancel()

    def timed_out(self) -> bool:
        """Whether the cancellation being handled is this watch's own (and, if so, withdraw
        it): ``False`` when the caller cancelled too, so its cancellation goes on."""
        if not self.expired:
            return False
        self.expired = False
        uncancel = getattr(self._task, "uncancel", None)
        return uncancel is None or uncancel() == 0

    def close(self) -> None:
        """Drop the timer (the attempt is over)."""
        self.at = None
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
