"""Batching: a bounded batching queue, ``chat_many`` for batch jobs, and provider batch APIs.

* :class:`BatchQueue` collects items for a short window (``max_wait``) or up to
  ``max_batch_size``, then hands each batch to a dispatch function, with at most
  ``max_concurrency`` batches in flight. Every submitter gets its own result or error. The queue
  is bounded (``max_pending``): ``submit`` waits for room, so a producer faster than the
  provider slows down instead of growing memory.
* :class:`BatchingLayer` puts a pipeline behind such a queue: ``mode="concurrent"`` sends each
  batch's requests through the inner handler concurrently; ``mode="provider"`` submits each batch
  as one provider batch job (OpenAI Batch API, Anthropic Message Batches — about half price, with
  results within hours) and polls for the results.
* :func:`chat_many` (also ``AsyncLLMClient.chat_many``) runs a list of requests with bounded
  concurrency, optional progress, and keeps partial results: it returns a :class:`BatchResults`,
  a list holding a :class:`~llm_async.types.ChatResponse` or an
  :class:`~llm_async.errors.LLMError` per request, in order.
* :class:`OpenAIBatchAPI` and :class:`AnthropicBatchAPI` submit, poll, cancel and collect provider
  batch jobs through a transport's own session, payload builder and response parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TextIO, TypeVar

import aiohttp

from .. import _json
from .._clock import Clock, system_clock
from ..context import CallContext
from ..domain.ports import Handler, Layer, iter_stack
from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    LLMError,
    ProtocolError,
    RateLimiterError,
)
from ..types import ChatChunk, ChatRequest, ChatResponse, build_request

if TYPE_CHECKING:
    from ..client import AsyncLLMClient
    from ..infrastructure.transports.base import HTTPTransport

__all__ = [
    "AnthropicBatchAPI",
    "BatchJob",
    "BatchProgress",
    "BatchQueue",
    "BatchQueueStats",
    "BatchResults",
    "BatchingLayer",
    "OpenAIBatchAPI",
    "ProviderBatchAPI",
    "TextProgress",
    "batch_api_for",
    "chat_many",
]

#: What the batching queue holds per call: the request, its call context, its ContextVars.
_Item = tuple[ChatRequest, CallContext, contextvars.Context]

I = TypeVar("I")  # noqa: E741 - the conventional name of an item type
R = TypeVar("R")


# -- the queue --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchQueueStats:
    """Items waiting, batches in flight, and totals since creation."""

    pending: int
    in_flight: int
    submitted: int
    batches: int
    largest_batch: int


class _Slot(Generic[I, R]):
    __slots__ = ("future", "item")

    def __init__(self, item: I, future: asyncio.Future[R]) -> None:
        self.item = item
        self.future = future


class BatchQueue(Generic[I, R]):
    """Collect items into batches and dispatch them with bounded concurrency.

    ``dispatch(items)`` returns one result per item, in order; an item's result may be an
    exception instance, which is raised to that item's submitter only. If ``dispatch`` itself
    raises, every item of the batch gets that error.

    A batch is dispatched when it holds ``max_batch_size`` items, or ``max_wait`` seconds after
    its first item arrived (measured with ``clock``). At most ``max_concurrency`` batches run at
    once; at most ``max_pending`` items wait, beyond which :meth:`submit` waits for room (and
    :meth:`submit_nowait` raises :class:`~llm_async.errors.RateLimiterError`). A submitter
    cancelled before its batch is dispatched is dropped from the batch.
    """

    def __init__(self, dispatch: Callable[[list[I]], Awaitable[Sequence[R | BaseException]]],
                 *, max_batch_size: int = 16, max_wait: float = 0.005, max_concurrency: int = 4,
                 max_pending: int = 1024, clock: Clock = system_clock) -> None:
        if max_batch_size < 1 or max_concurrency < 1 or max_pending < 1:
            raise ConfigurationError("max_batch_size, max_concurrency and max_pending must be >= 1")
        if max_wait < 0:
            raise ConfigurationError("max_wait must be >= 0")
        self.dispatch = dispatch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_concurrency = max_concurrency
        self.max_pending = max_pending
        self.clock = clock
        self._pending: deque[_Slot[I, R]] = deque()
        self._used = 0
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._runners: asyncio.Semaphore | None = None
        self._arrived: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._closed = False
        self.submitted = 0
        self.batches = 0
        self.largest_batch = 0

    def _start(self) -> None:
        if self._closed:
            raise InvalidRequestError("the batch queue is closed")
        if self._worker is None:
            self._runners = asyncio.Semaphore(self.max_concurrency)
            self._arrived = asyncio.Event()
            self._full = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _enqueue(self, item: I) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Slot(item, future))
        self.submitted += 1
        assert self._arrived is not None and self._full is not None
        self._arrived.set()
        if len(self._pending) >= self.max_batch_size:
            self._full.set()
        return future

    async def _acquire_room(self) -> None:
        while self._used >= self.max_pending or self._room_waiters:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room_waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._room_waiters:
                    self._room_waiters.remove(waiter)
                elif self._used < self.max_pending:
                    self._wake_one()  # pass our wake-up on
                raise
            if self._used < self.max_pending:
                break
        self._used += 1

    def _wake_one(self) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release_room(self) -> None:
        self._used -= 1
        self._wake_one()

    async def submit(self, item: I) -> R:
        """Queue ``item`` (waiting for room when the queue is full) and return its result."""
        self._start()
        await self._acquire_room()
        future = self._enqueue(item)
        return await future

    def submit_nowait(self, item: I) -> asyncio.Future[R]:
        """Queue ``item`` now, or raise :class:`RateLimiterError` when the queue is full."""
        self._start()
        if self._used >= self.max_pending or self._room_waiters:
            raise RateLimiterError(f"batch queue is full ({self.max_pending} items pending)")
        self._used += 1
        return self._enqueue(item)

    async def _wait_full(self, seconds: float) -> None:
        assert self._full is not None
        full = asyncio.ensure_future(self._full.wait())
        timer = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({full, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            full.cancel()
            timer.cancel()

    def _take(self) -> list[_Slot[I, R]]:
        assert self._arrived is not None and self._full is not None
        batch: list[_Slot[I, R]] = []
        while self._pending and len(batch) < self.max_batch_size:
            slot = self._pending.popleft()
            self._release_room()
            if not slot.future.done():  # a cancelled submitter is dropped
                batch.append(slot)
        if not self._pending:
            self._arrived.clear()
        if len(self._pending) < self.max_batch_size:
            self._full.clear()
        return batch

    async def _run(self) -> None:
        assert self._arrived is not None and self._runners is not None
        while True:
            await self._arrived.wait()
            if len(self._pending) < self.max_batch_size and self.max_wait > 0:
                await self._wait_full(self.max_wait)
            await self._runners.acquire()
            batch = self._take()
            if not batch:
                self._runners.release()
                continue
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _dispatch(self, batch: list[_Slot[I, R]]) -> None:
        assert self._runners is not None
        try:
            try:
                results = await self.dispatch([slot.item for slot in batch])
                if len(results) != len(batch):
                    raise ProtocolError(f"dispatch returned {len(results)} results "
                                        f"for {len(batch)} items")
            except asyncio.CancelledError:
                for slot in batch:
                    if not slot.future.done():
                        slot.future.cancel()
                raise
            except BaseException as exc:
                results = [exc] * len(batch)
            for slot, result in zip(batch, results, strict=True):
                if slot.future.done():
                    continue
                if isinstance(result, BaseException):
                    slot.future.set_exception(result)
                else:
                    slot.future.set_result(result)
        finally:
            self._runners.release()

    def statistics(self) -> BatchQueueStats:
        """Live counters."""
        return BatchQueueStats(len(self._pending), len(self._batches), self.submitted,
                               self.batches, self.largest_batch)

    async def aclose(self) -> None:
        """Stop: waiting submitters get :class:`InvalidRequestError`, batches in flight are
        cancelled."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
        for slot in self._pending:
            if not slot.future.done():
                slot.future.set_exception(InvalidRequestError("the batch queue was closed"))
        self._pending.clear()
        for waiter in self._room_waiters:
            waiter.cancel()
        self._room_waiters.clear()
        tasks = list(self._batches)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*([worker] if worker else []), *tasks, return_exceptions=True)

    async def __aenter__(self) -> BatchQueue[I, R]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"BatchQueue(pending={s.pending}, in_flight={s.in_flight}, "
                f"batches={s.batches}, max_batch_size={self.max_batch_size})")


# -- results and progress ---------------------------------------------------------------------


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


def _build(client: AsyncLLMClient, item: Any) -> ChatRequest:
    if isinstance(item, ChatRequest):
        return item if not item.stream else item.model_copy(update={"stream": False})
    if isinstance(item, Mapping):
        params = dict(item)
        return client.build_request(params.pop("model", None), params.pop("messages", None),
                                    params, stream=False)
    raise InvalidRequestError(
        f"chat_many takes ChatRequest objects or dicts of chat() arguments, got "
        f"{type(item).__name__}")


async def chat_many(client: AsyncLLMClient, requests: Iterable[ChatRequest | Mapping[str, Any]],
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


async def _run_batch_jobs(client: AsyncLLMClient, built: list[ChatRequest | None],
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


# -- provider batch APIs ----------------------------------------------------------------------


@dataclass
class BatchJob:
    """A provider batch job: its ``id``, normalised ``status`` (``in_progress``, ``completed``,
    ``failed``, ``expired``, ``cancelled``) and the provider's last answer in ``raw``."""

    id: str
    provider: str
    status: str
    raw: dict[str, Any] = field(default_factory=dict)
    custom_ids: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


class ProviderBatchAPI:
    """Submit, poll, cancel and collect a provider batch job through ``transport``.

    The transport supplies the session, the credentials, the JSON payload of each request
    (``build_payload``) and the parse of each answer (``parse_response``), so a batch line is
    exactly what a direct call would have sent. Polling sleeps on ``clock``.
    """

    provider: ClassVar[str] = ""

    def __init__(self, transport: HTTPTransport, *, clock: Clock = system_clock,
                 poll_interval: float = 10.0) -> None:
        if not poll_interval > 0:
            raise ConfigurationError("poll_interval must be > 0", variable="poll_interval")
        self.transport = transport
        self.clock = clock
        self.poll_interval = poll_interval

    # -- HTTP -----------------------------------------------------------------------------

    def _headers(self, content_type: str | None = "application/json") -> dict[str, str]:
        headers = {**self.transport.auth_headers(), **self.transport.headers}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _call(self, method: str, url: str, *, json_body: Any = None,
                    data: Any = None, raw: bool = False) -> Any:
        transport = self.transport
        body = _json.dumps(json_body) if json_body is not None else data
        headers = self._headers("application/json" if json_body is not None else None)
        timeout = aiohttp.ClientTimeout(total=transport.timeout.total,
                                        sock_connect=transport.timeout.connect)
        try:
            async with transport.session.request(method, url, data=body, headers=headers,
                                                  timeout=timeout) as resp:
                content = await resp.read()
                if resp.status >= 400:
                    try:
                        err_body: Any = _json.loads(content) if content else None
                    except ValueError:
                        err_body = content.decode("utf-8", "replace")
                    raise transport.map_error(resp.status, err_body, resp.headers)
        except LLMError:
            raise
        except asyncio.TimeoutError as exc:
            raise APITimeoutError(f"batch API call timed out: {method} {url}",
                                  provider=self.provider) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(f"batch API call failed: {type(exc).__name__}: {exc}",
                                     provider=self.provider) from exc
        if raw:
            return content
        try:
            return _json.loads(content)
        except ValueError as exc:
            raise ProtocolError(f"batch API answer is not JSON: {content[:80]!r}",
                                provider=self.provider) from exc

    @staticmethod
    def _jsonl(content: bytes) -> list[dict[str, Any]]:
        lines = []
        for line in content.splitlines():
            if line.strip():
                obj = _json.loads(line)
                if isinstance(obj, dict):
                    lines.append(obj)
        return lines

    # -- the job ------------------------------------------------------------------------

    async def submit(self, requests: Sequence[ChatRequest],
                     custom_ids: Sequence[str] | None = None) -> BatchJob:
        """Create a batch job for ``requests``; ``custom_ids`` name them (default ``"0"``,
        ``"1"``, ...). Raises :class:`InvalidRequestError` if one cannot be sent."""
        raise NotImplementedError

    @staticmethod
    def _ids(requests: Sequence[ChatRequest], custom_ids: Sequence[str] | None) -> list[str]:
        ids = [str(i) for i in range(len(requests))] if custom_ids is None else list(custom_ids)
        if len(ids) != len(requests) or len(set(ids)) != len(ids):
            raise InvalidRequestError("custom_ids must be unique, one per request")
        return ids

    def _id_of(self, job: BatchJob, index: int) -> str:
        return job.custom_ids[index] if index < len(job.custom_ids) else str(index)

    async def retrieve(self, job: BatchJob) -> BatchJob:
        """The job's current status."""
        raise NotImplementedError

    async def cancel(self, job: BatchJob) -> BatchJob:
        """Ask the provider to cancel the job; unfinished requests end as cancelled."""
        raise NotImplementedError

    async def results(self, job: BatchJob,
                      requests: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        """One answer or error per request of a finished job, in order."""
        raise NotImplementedError

    async def wait(self, job: BatchJob, *, timeout: float | None = None) -> BatchJob:
        """Poll until the job has finished (or raise :class:`APITimeoutError` after
        ``timeout`` seconds of the clock)."""
        deadline = None if timeout is None else self.clock.now() + timeout
        while True:
            job = await self.retrieve(job)
            if job.done:
                return job
            if deadline is not None and self.clock.now() + self.poll_interval > deadline:
                raise APITimeoutError(f"batch {job.id} did not finish within {timeout}s",
                                      provider=self.provider)
            await self.clock.sleep(self.poll_interval)

    async def run(self, requests: Sequence[ChatRequest], *,
                  timeout: float | None = None) -> list[ChatResponse | LLMError]:
        """Submit, wait and collect; one answer or error per request, in order. A request the
        provider cannot take (say, a parameter out of its range) gets its typed error and the
        others go on. An unfinished job is cancelled if this fails or is cancelled."""
        out: list[ChatResponse | LLMError | None] = [None] * len(requests)
        valid: list[int] = []
        for index, request in enumerate(requests):
            try:
                self.transport.build_payload(request, stream=False)
            except LLMError as exc:
                out[index] = exc
            else:
                valid.append(index)
        if valid:
            chosen = [requests[i] for i in valid]
            job = await self.submit(chosen, [str(i) for i in valid])
            try:
                job = await self.wait(job, timeout=timeout)
            except BaseException:
                await asyncio.shield(self._cancel_quietly(job))
                raise
            for index, outcome in zip(valid, await self.results(job, chosen), strict=True):
                out[index] = outcome
        return [r for r in out if r is not None]

    async def _cancel_quietly(self, job: BatchJob) -> None:
        with contextlib.suppress(LLMError):
            await self.cancel(job)

    def _missing(self, job: BatchJob) -> LLMError:
        reason = {"expired": "expired", "cancelled": "was cancelled",
                  "failed": "failed"}.get(job.status, "returned no result")
        return APIStatusError(f"batch {job.id} {reason} before this request was answered",
                              provider=self.provider, error_type=f"batch_{job.status}")

    def _answer(self, request: ChatRequest, body: Any, request_id: str | None) -> ChatResponse:
        response = self.transport.parse_response(body, request)
        response.provider = self.transport.provider
        response.requested_model = request.model
        response.request_id = request_id
        return response

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport!r})"


_OPENAI_STATUS = {"validating": "in_progress", "in_progress": "in_progress",
                  "finalizing": "in_progress", "cancelling": "in_progress",
                  "completed": "completed", "failed": "failed", "expired": "expired",
                  "cancelled": "cancelled"}


class OpenAIBatchAPI(ProviderBatchAPI):
    """The OpenAI Batch API: upload a JSONL file (``POST /files``, purpose ``batch``), create the
    batch (``POST /batches``), poll ``GET /batches/{id}``, download the output and error files
    (``GET /files/{id}/content``)."""

    provider: ClassVar[str] = "openai"
    endpoint: ClassVar[str] = "/v1/chat/completions"

    async def submit(self, requests: Sequence[ChatRequest],
                     custom_ids: Sequence[str] | None = None) -> BatchJob:
        ids = self._ids(requests, custom_ids)
        lines = []
        for custom_id, request in zip(ids, requests, strict=True):
            lines.append(_json.dumps({
                "custom_id": custom_id, "method": "POST", "url": self.endpoint,
                "body": self.transport.build_payload(request, stream=False),
            }))
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", b"\n".join(lines) + b"\n", filename="batch.jsonl",
                       content_type="application/jsonl")
        base = self.transport.base_url
        uploaded = await self._call("POST", f"{base}/files", data=form)
        created = await self._call("POST", f"{base}/batches", json_body={
            "input_file_id": uploaded["id"], "endpoint": self.endpoint,
            "completion_window": "24h",
        })
        return self._job(created, ids)

    def _job(self, data: dict[str, Any], custom_ids: list[str] | None = None) -> BatchJob:
        status = _OPENAI_STATUS.get(str(data.get("status")), "in_progress")
        return BatchJob(str(data["id"]), self.provider, status, data, custom_ids or [])

    async def retrieve(self, job: BatchJob) -> BatchJob:
        data = await self._call("GET", f"{self.transport.base_url}/batches/{job.id}")
        return self._job(data, job.custom_ids)

    async def cancel(self, job: BatchJob) -> BatchJob:
        data = await self._call("POST", f"{self.transport.base_url}/batches/{job.id}/cancel")
        return self._job(data, job.custom_ids)

    async def results(self, job: BatchJob,
                      requests: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        lines: list[dict[str, Any]] = []
        for key in ("output_file_id", "error_file_id"):
            file_id = job.raw.get(key)
            if file_id:
                content = await self._call(
                    "GET", f"{self.transport.base_url}/files/{file_id}/content", raw=True)
                lines.extend(self._jsonl(content))
        by_id = {str(line.get("custom_id")): line for line in lines}
        failure = self._job_failure(job)
        out: list[ChatResponse | LLMError] = []
        for index, request in enumerate(requests):
            line = by_id.get(self._id_of(job, index))
            if line is None:
                out.append(failure or self._missing(job))
                continue
            out.append(self._line(request, line))
        return out

    def _job_failure(self, job: BatchJob) -> LLMError | None:
        errors = job.raw.get("errors")
        if job.status != "failed" or not isinstance(errors, Mapping):
            return None
        data = errors.get("data") or [{}]
        first = data[0] if isinstance(data[0], Mapping) else {}
        return APIStatusError(f"batch {job.id} failed: {first.get('message', 'unknown error')}",
                              provider=self.provider, code=first.get("code"),
                              error_type="batch_failed")

    def _line(self, request: ChatRequest, line: Mapping[str, Any]) -> ChatResponse | LLMError:
        response = line.get("response")
        try:
            if isinstance(response, Mapping):
                status = int(response.get("status_code") or 0)
                body = response.get("body")
                request_id = response.get("request_id")
                if 200 <= status < 300:
                    return self._answer(request, body, request_id)
                return self.transport.map_error(status or 500, body, {})
            error = line.get("error") or {}
            return APIStatusError(str(error.get("message") or "batch request failed"),
                                  provider=self.provider, code=error.get("code"),
                                  error_type="batch_error")
        except LLMError as exc:
            return exc


_ANTHROPIC_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                     403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                     429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_ANTHROPIC_ERROR_STATUS = {v: k for k, v in _ANTHROPIC_STATUS.items()}


class AnthropicBatchAPI(ProviderBatchAPI):
    """Anthropic Message Batches: ``POST {messages_url}/batches`` with ``requests:
    [{custom_id, params}]``, poll ``GET .../batches/{id}`` until ``processing_status`` is
    ``ended``, then read the JSONL at ``results_url``."""

    provider: ClassVar[str] = "anthropic"

    def _batches_url(self, request: ChatRequest | None = None) -> str:
        probe = request or build_request(model="x", messages=[{"role": "user", "content": "x"}])
        return str(self.transport.url(probe)).rstrip("/") + "/batches"

    async def submit(self, requests: Sequence[ChatRequest],
                     custom_ids: Sequence[str] | None = None) -> BatchJob:
        ids = self._ids(requests, custom_ids)
        body = {"requests": [
            {"custom_id": custom_id,
             "params": self.transport.build_payload(request, stream=False)}
            for custom_id, request in zip(ids, requests, strict=True)
        ]}
        if not ids:
            raise InvalidRequestError("a batch needs at least one request")
        data = await self._call("POST", self._batches_url(requests[0]), json_body=body)
        return self._job(data, ids)

    def _job(self, data: dict[str, Any], custom_ids: list[str] | None = None) -> BatchJob:
        status = "in_progress"
        if data.get("processing_status") == "ended":
            counts = data.get("request_counts") or {}
            status = "cancelled" if data.get("cancel_initiated_at") else (
                "expired" if counts.get("expired") else "completed")
        return BatchJob(str(data["id"]), self.provider, status, data, custom_ids or [])

    async def retrieve(self, job: BatchJob) -> BatchJob:
        data = await self._call("GET", f"{self._batches_url()}/{job.id}")
        return self._job(data, job.custom_ids)

    async def cancel(self, job: BatchJob) -> BatchJob:
        data = await self._call("POST", f"{self._batches_url()}/{job.id}/cancel")
        return self._job(data, job.custom_ids)

    async def results(self, job: BatchJob,
                      requests: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        url = job.raw.get("results_url") or f"{self._batches_url()}/{job.id}/results"
        by_id = {str(line.get("custom_id")): line
                 for line in self._jsonl(await self._call("GET", str(url), raw=True))}
        out: list[ChatResponse | LLMError] = []
        for index, request in enumerate(requests):
            line = by_id.get(self._id_of(job, index))
            out.append(self._missing(job) if line is None else self._line(request, line))
        return out

    def _line(self, request: ChatRequest, line: Mapping[str, Any]) -> ChatResponse | LLMError:
        result = line.get("result") or {}
        kind = result.get("type")
        try:
            if kind == "succeeded":
                message = result.get("message") or {}
                return self._answer(request, message, message.get("id"))
            if kind == "errored":
                body = result.get("error") or {}
                nested = body.get("error")
                inner = nested if isinstance(nested, Mapping) else body
                status = _ANTHROPIC_ERROR_STATUS.get(str(inner.get("type")), 500)
                return self.transport.map_error(status, body, {})
            return APIStatusError(f"batch request {kind or 'failed'}", provider=self.provider,
                                  error_type=f"batch_{kind or 'failed'}")
        except LLMError as exc:
            return exc


def batch_api_for(transport: Any, *, clock: Clock = system_clock,
                  poll_interval: float = 10.0) -> ProviderBatchAPI:
    """The batch API of ``transport``'s provider (OpenAI or Anthropic)."""
    kinds: dict[str, type[ProviderBatchAPI]] = {"openai": OpenAIBatchAPI,
                                               "anthropic": AnthropicBatchAPI}
    kind = kinds.get(str(getattr(transport, "provider", "")))
    if kind is None or not hasattr(transport, "build_payload"):
        raise ConfigurationError(
            f"{type(transport).__name__} has no batch API (OpenAI and Anthropic have one)")
    return kind(transport, clock=clock, poll_interval=poll_interval)


# -- the layer --------------------------------------------------------------------------------


class BatchingLayer(Layer):
    """Send unary calls through a :class:`BatchQueue`.

    ``mode="concurrent"``: each batch's requests go through the inner handler concurrently (in
    the submitting caller's context). ``mode="provider"``: each batch becomes one provider batch
    job (half price, results within hours: for offline pipelines only); requests of different
    providers in one batch become one job per provider.

    Streams pass through unbatched: a stream wants its first token now, which is the opposite of
    waiting for a batch window, and batch endpoints do not stream.
    """

    def __init__(self, inner: Handler, *, mode: str = "concurrent", max_batch_size: int = 16,
                 max_wait: float = 0.005, max_concurrency: int = 4, max_pending: int = 1024,
                 poll_interval: float = 10.0, timeout: float | None = None,
                 clock: Clock = system_clock) -> None:
        super().__init__(inner)
        if mode not in ("concurrent", "provider"):
            raise ConfigurationError("mode must be 'concurrent' or 'provider'", variable="mode")
        self.mode = mode
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.clock = clock
        self.queue: BatchQueue[_Item, ChatResponse] = \
            BatchQueue(self._dispatch, max_batch_size=max_batch_size, max_wait=max_wait,
                       max_concurrency=max_concurrency, max_pending=max_pending, clock=clock)

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        return await self.queue.submit((request, ctx, contextvars.copy_context()))

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        return self.inner.stream(request, ctx)

    async def _dispatch(self, items: list[_Item]) -> list[ChatResponse | BaseException]:
        if self.mode == "provider":
            return await self._dispatch_provider([request for request, _, _ in items])
        loop = asyncio.get_running_loop()
        tasks = [context.run(loop.create_task, self.inner.chat(request, ctx))
                 for request, ctx, context in items]
        try:
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            for task in tasks:
                task.cancel()

    def _transport(self, provider: str | None) -> Any:
        for handler in iter_stack(self.inner):
            transports = getattr(handler, "transports", None)
            if isinstance(transports, Mapping):
                name = provider or getattr(handler, "default", None)
                if name in transports:
                    return transports[name]
            if hasattr(handler, "build_payload") and (
                    provider is None or getattr(handler, "provider", None) == provider):
                return handler
        raise ConfigurationError(f"no transport for provider {provider!r} behind this layer")

    async def _dispatch_provider(self, requests: list[ChatRequest]
                                 ) -> list[ChatResponse | BaseException]:
        out: list[ChatResponse | BaseException] = [
            InvalidRequestError("not dispatched")] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: requests[i].provider or "")
        for provider, group in itertools.groupby(order, key=lambda i: requests[i].provider or ""):
            indexes = list(group)
            try:
                api = batch_api_for(self._transport(provider or None), clock=self.clock,
                                    poll_interval=self.poll_interval)
                outcomes: Sequence[ChatResponse | BaseException] = await api.run(
                    [requests[i] for i in indexes], timeout=self.timeout)
            except LLMError as exc:
                outcomes = [exc] * len(indexes)
            for index, outcome in zip(indexes, outcomes, strict=True):
                out[index] = outcome
        return out

    def statistics(self) -> BatchQueueStats:
        """The queue's counters."""
        return self.queue.statistics()

    async def aclose(self) -> None:
        try:
            await self.queue.aclose()
        finally:
            await self.inner.aclose()

    def __repr__(self) -> str:
        return f"BatchingLayer(mode={self.mode!r}, queue={self.queue!r})"
