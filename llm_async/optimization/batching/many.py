"""``chat_many``: many requests through the client with bounded concurrency (or as provider
batch jobs), every outcome kept in order, with optional progress."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ..._clock import Clock, system_clock
from ...errors import InvalidRequestError, LLMError
from ...infrastructure.transports.batch_api import batch_api_for
from ...types import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from ...options import ClientView

__all__ = ["BatchProgress", "BatchResults", "TextProgress", "chat_many"]


class BatchResults(list[ChatResponse | LLMError]):
    """The outcome of :func:`chat_many`: one :class:`ChatResponse` or :class:`LLMError` per
    request, in the order given. A failed request never discards the others' answers."""

    @property
    def responses(self) -> list[ChatResponse | None]:
        """Answers in order, ``None`` where the request failed."""
        return [r if isinstance(r, ChatResponse) else None for r in self]

    @property
    def errors(self) -> list[tuple[int, LLMError]]:
        """``(index, error)`` of every failed request."""
        return [(i, r) for i, r in enumerate(self) if isinstance(r, LLMError)]

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self if isinstance(r, ChatResponse))

    @property
    def failed(self) -> int:
        return sum(1 for r in self if isinstance(r, LLMError))

    def raise_for_errors(self) -> None:
        """Raise the first request's error, if any failed."""
        for item in self:
            if isinstance(item, LLMError):
                raise item

    def __repr__(self) -> str:
        return f"BatchResults(succeeded={self.succeeded}, failed={self.failed})"


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Progress of a :func:`chat_many` run, passed to a progress callback after each item."""

    done: int
    total: int
    succeeded: int
    failed: int
    elapsed: float
    index: int | None = None
    result: ChatResponse | LLMError | None = None

    @property
    def rate(self) -> float:
        """Items per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


class TextProgress:
    """A plain-text progress line (on stderr by default), redrawn in place."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width

    def __call__(self, p: BatchProgress) -> None:
        filled = self.width * p.done // p.total if p.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        end = "\n" if p.done >= p.total else ""
        self.stream.write(f"\r[{bar}] {p.done}/{p.total} ok={p.succeeded} failed={p.failed} "
                          f"{p.rate:.1f}/s{end}")
        self.stream.flush()


ProgressOption = bool | Callable[[BatchProgress], None] | None


def _progress_callback(progress: ProgressOption) -> Callable[[BatchProgress], None] | None:
    if progress is None or progress is False:
        return None
    if progress is True:
        return TextProgress()
    if callable(progress):
        return progress
    raise InvalidRequestError("progress must be True, False, None or a callable",
                              field="progress")


# -- chat_many --------------------------------------------------------------------------------


def _build(client: ClientView, item: Any) -> ChatRequest:
    if isinstance(item, ChatRequest):
        return item if not item.stream else item.model_copy(update={"stream": False})
    if isinstance(item, Mapping):
        params = dict(item)
        return client.build_request(params.pop("model", None), params.pop("messages", None),
                                    params, stream=False)
    raise InvalidRequestError(
        f"chat_many takes ChatRequest objects or dicts of chat() arguments, got "
        f"{type(item).__name__}")


async def chat_many(client: ClientView, requests: Iterable[ChatRequest | Mapping[str, Any]],
                    *, concurrency: int = 8, progress: ProgressOption = None,
                    batch_api: bool = False, poll_interval: float = 10.0,
                    timeout: float | None = None, clock: Clock = system_clock) -> BatchResults:
    """Run many chat requests and return every outcome, in order.

    ``requests`` are :class:`ChatRequest` objects or dicts of ``client.chat`` keyword arguments
    (``{"model": ..., "messages": [...], "temperature": 0}``). At most ``concurrency`` run at
    once, each through the client's whole pipeline (cache, dedup, retries, limits, cost). A
    request that fails — invalid input included — leaves an :class:`LLMError` in its slot;
    the others go on. ``progress=True`` draws a progress line on stderr; a callable receives a
    :class:`BatchProgress` after each request.

    ``batch_api=True`` sends the requests as provider batch jobs instead (OpenAI Batch API,
    Anthropic Message Batches: about half price, results within 24 hours), one job per provider,
    polling every ``poll_interval`` seconds for at most ``timeout`` seconds. Batch jobs go
    straight to the provider's batch endpoint: the client's layers (cache, cost, retries) do not
    see them.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError("concurrency must be an integer >= 1", field="concurrency")
    callback = _progress_callback(progress)
    items = list(requests)
    total = len(items)
    results: list[ChatResponse | LLMError | None] = [None] * total
    built: list[ChatRequest | None] = [None] * total
    for index, item in enumerate(items):
        try:
            built[index] = _build(client, item)
        except LLMError as exc:
            results[index] = exc
    started = time.perf_counter()
    counts = [0, 0]  # succeeded, failed

    def report(index: int, outcome: ChatResponse | LLMError) -> None:
        results[index] = outcome
        counts[0 if isinstance(outcome, ChatResponse) else 1] += 1
        if callback is not None:
            callback(BatchProgress(sum(counts), total, counts[0], counts[1],
                                   time.perf_counter() - started, index, outcome))

    for index, outcome in enumerate(results):
        if outcome is not None:
            report(index, outcome)

    if batch_api:
        await _run_batch_jobs(client, built, report, poll_interval=poll_interval,
                              timeout=timeout, clock=clock)
    else:
        todo = iter([(i, r) for i, r in enumerate(built) if r is not None])

        async def worker() -> None:
            for index, request in todo:
                try:
                    outcome: ChatResponse | LLMError = await client.chat(request=request)
                except LLMError as exc:
                    outcome = exc
                report(index, outcome)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, total))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    if callback is not None and total == 0:
        callback(BatchProgress(0, 0, 0, 0, time.perf_counter() - started))
    return BatchResults(r for r in results if r is not None)


async def _run_batch_jobs(client: ClientView, built: list[ChatRequest | None],
                          report: Callable[[int, ChatResponse | LLMError], None], *,
                          poll_interval: float, timeout: float | None, clock: Clock) -> None:
    groups: dict[str, list[int]] = {}
    for index, request in enumerate(built):
        if request is not None:
            groups.setdefault(request.provider or client.provider, []).append(index)
    for provider, indexes in groups.items():
        transport = client.transports.get(provider)
        if transport is None:
            for index in indexes:
                report(index, InvalidRequestError(f"no transport for provider {provider!r}"))
            continue
        requests = [built[i] for i in indexes]
        outcomes: Sequence[ChatResponse | LLMError]
        try:
            api = batch_api_for(transport, clock=clock, poll_interval=poll_interval)
            outcomes = await api.run([r for r in requests if r is not None], timeout=timeout)
        except LLMError as exc:  # the job as a whole failed: every request of it did
            outcomes = [exc] * len(indexes)
        for index, outcome in zip(indexes, outcomes, strict=True):
            report(index, outcome)
