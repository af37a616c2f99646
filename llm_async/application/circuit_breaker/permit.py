"""Permits and the protocols a breaker offers the pipeline: one :class:`CircuitPermit` for
the in-memory and the shared (Redis) breakers."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "AsyncBreaker",
    "BreakerPermit",
    "CircuitPermit",
    "PermitOwner",
]


class PermitOwner(Protocol):
    """What a :class:`CircuitPermit` reports to: an in-memory :class:`CircuitBreaker` (sync)
    or a shared one such as the Redis breaker (async, ``local = False``)."""

    local: bool

    def _finish(self, permit: CircuitPermit, error: BaseException | None,
                duration: float | None, *, forced: bool | None) -> None: ...

    def _release(self, permit: CircuitPermit) -> None: ...

    async def _finish_async(self, permit: CircuitPermit, error: BaseException | None,
                            duration: float | None, *, forced: bool | None) -> None: ...

    async def _release_async(self, permit: CircuitPermit) -> None: ...


class CircuitPermit:
    """Permission for one call through a breaker; end it exactly once with :meth:`record`
    (or :meth:`success` / :meth:`failure`) or :meth:`release` (no outcome) — or their
    ``*_async`` forms, which every breaker accepts and a shared (Redis) breaker requires.

    ``probe``: a half-open probe; ``generation``: the breaker's state generation when it was
    given; ``seq``: its admission number; ``call``: the logical call it belongs to; ``token``:
    the lease of a shared probe slot. Also a context manager: ``with breaker.acquire(): ...``
    records the outcome of the block.
    """

    __slots__ = ("_breaker", "call", "done", "generation", "local", "probe", "seq", "started",
                 "token")

    def __init__(self, breaker: PermitOwner, probe: bool, generation: int,
                 started: float, seq: int = 0, call: str | None = None,
                 token: str | None = None) -> None:
        self._breaker = breaker
        self.local = breaker.local
        self.probe = probe
        self.generation = generation
        self.started = started
        self.seq = seq
        self.call = call
        self.token = token
        self.done = False

    def record(self, error: BaseException | None, duration: float | None = None) -> None:
        """Record the call's outcome: ``None`` is a success, an exception is classified."""
        self._breaker._finish(self, error, duration, forced=None)

    def success(self, duration: float | None = None) -> None:
        """Record a success."""
        self._breaker._finish(self, None, duration, forced=None)

    def failure(self, error: BaseException | None = None, duration: float | None = None) -> None:
        """Record a failure, whatever the error."""
        self._breaker._finish(self, error, duration, forced=True)

    def release(self) -> None:
        """End the permit without an outcome (the call was cancelled or abandoned)."""
        self._breaker._release(self)

    async def record_async(self, error: BaseException | None,
                           duration: float | None = None) -> None:
        """:meth:`record` for the async :class:`BreakerPermit` protocol."""
        await self._breaker._finish_async(self, error, duration, forced=None)

    async def release_async(self) -> None:
        """:meth:`release` for the async :class:`BreakerPermit` protocol."""
        await self._breaker._release_async(self)

    def __enter__(self) -> CircuitPermit:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.record(exc)


@runtime_checkable
class BreakerPermit(Protocol):
    """What :class:`CircuitBreakerLayer` needs from a permit (memory or Redis backed)."""

    async def record_async(self, error: BaseException | None,
                           duration: float | None = None) -> None:
        """Record the call's outcome (``None``: success)."""
        ...

    async def release_async(self) -> None:
        """End the permit without an outcome."""
        ...


@runtime_checkable
class AsyncBreaker(Protocol):
    """What :class:`CircuitBreakerLayer` needs from a breaker (memory or Redis backed)."""

    name: str

    async def acquire_async(self, call: str | None = None) -> BreakerPermit:
        """A permit, or :class:`~llm_async.errors.CircuitBreakerOpenError`. ``call`` names the
        logical call the attempt belongs to (its retries share it)."""
        ...

    def status(self) -> dict[str, Any]:
        """A snapshot with at least ``name`` and ``state``."""
        ...

    def metrics(self) -> dict[str, Any]:
        """The ``circuit.*`` metrics."""
        ...
