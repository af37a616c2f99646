"""The per-call context: what the layers of one logical call share, as typed fields.

The client creates a fresh :class:`CallContext` for every logical call (``chat``, ``stream``,
each request of ``chat_many``) and passes it down the stack next to the request::

    response = await handler.chat(request, ctx)

A request is plain data and may be reused for any number of calls; nothing about a call is ever
stored on it. Each field below has exactly one owner, the layer that writes it; every other
layer only reads it. A layer that needs to share something new adds a typed field here with its
owner named, never a string key.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import Usage

__all__ = ["Attempt", "CallContext", "EventListener", "new_id"]

#: Receives ``(name, attributes)`` for every :meth:`CallContext.event`.
EventListener = Callable[[str, dict[str, Any]], None]


# Ids (of calls, usage records, reservations) without a system call each: 64 random bits drawn
# once per process (again in a forked child) and a per-process counter, as 32 hex digits (the
# shape of ``uuid4().hex``), unique across the processes and machines that share a ledger.
_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count(1)


def _reseed_ids() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(8).hex()
    _id_counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_ids)


def new_id() -> str:
    """A unique 32-hex-digit id (cheap: no system call)."""
    return f"{_id_prefix}{next(_id_counter):016x}"


@dataclass(slots=True)
class Attempt:
    """One upstream attempt of a call, appended by the transport that makes it.

    ``sent`` turns true once the request body may have reached the provider: from then on the
    attempt is billable, whatever happens next (cancel, timeout, cut stream). ``usage`` is what
    the provider reported for it, if anything; ``error`` the error it ended with, if any;
    ``cost`` what the cost layer billed for it (its only writer).
    """

    number: int
    provider: str
    model: str
    sent: bool = False
    usage: Usage | None = None
    error: BaseException | None = None
    request_id: str | None = None
    #: What the cost layer billed for this attempt (``None``: not billed, or unpriced).
    cost: Decimal | None = None


@dataclass(slots=True, eq=False)
class CallContext:
    """Typed state of one logical call, shared by every layer of the stack.

    ==================================  ==========================================================
    field                               owner (the only writer) and meaning
    ==================================  ==========================================================
    ``call_id``                         client: unique id of the logical call
    ``claimed``                         client: the context has served a call (one per call)
    ``started``                         client: ``time.perf_counter()`` when the call began
    ``listeners``                       tracing layer: receive every :meth:`event`
    ``attempt``                         retry layer: number of the current attempt (1-based)
    ``attempts``                        transport: one :class:`Attempt` per upstream attempt
    ``response_headers``                transport: headers of the latest HTTP response
    ``cache_hit``                       cache layer: the answer came from the cache
    ``dedup_follower``                  dedup layer: the answer was shared by another call
    ``answered_provider``               fallback layer: provider that answered, if not the first
    ``answered_model``                  fallback layer: model that answered, if not the first
    ``queue_wait``                      concurrency and rate-limit layers: seconds spent queued
    ``circuit_recheck``                 breaker layer: re-checks the breaker after queueing
    ``cost`` / ``cost_estimated``       cost layer: what the call cost so far (every billed
                                        attempt), and whether part of it was estimated
    ``billed_attempts``                 cost layer: attempts of this call written to the ledger
    ==================================  ==========================================================
    """

    _call_id: str | None = None
    claimed: bool = False
    started: float = field(default_factory=time.perf_counter)
    listeners: list[EventListener] = field(default_factory=list)
    attempt: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    response_headers: Mapping[str, str] | None = None
    cache_hit: bool = False
    dedup_follower: bool = False
    answered_provider: str | None = None
    answered_model: str | None = None
    queue_wait: float = 0.0
    circuit_recheck: Callable[[], None] | None = None
    cost: Decimal | None = None
    cost_estimated: bool = False
    billed_attempts: int = 0

    @property
    def call_id(self) -> str:
        """Unique id of the logical call (made when first read)."""
        call_id = self._call_id
        if call_id is None:
            call_id = self._call_id = new_id()
        return call_id

    def event(self, name: str, **attributes: Any) -> None:
        """Report ``name`` (``retry``, ``cache_hit``, ``fallback``, ...) to every listener."""
        for listener in self.listeners:
            listener(name, attributes)

    def begin_attempt(self, provider: str, model: str) -> Attempt:
        """Record a new upstream attempt (called by the transport before it sends anything)."""
        attempt = Attempt(number=len(self.attempts) + 1, provider=provider, model=model)
        self.attempts.append(attempt)
        return attempt

    @property
    def sent_attempts(self) -> list[Attempt]:
        """The attempts whose body may have reached the provider (the billable ones)."""
        return [a for a in self.attempts if a.sent]

    def __repr__(self) -> str:
        return (f"CallContext(call_id={self.call_id[:8]}…, attempts={len(self.attempts)}, "
                f"cache_hit={self.cache_hit}, cost={self.cost})")
