"""Sync streams: :class:`SyncChatStream`, an iterator of chunks for sync code, fed by one pump
task on the service's loop."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType

import anyio
from anyio.abc import TaskStatus

from ..client import ChatStream
from ..errors import InvalidRequestError
from ..types import ChatChunk, ChatRequest, ChatResponse
from .runtime import _Runtime

__all__ = ["SyncChatStream"]


class _Pump:
    """Iterates one :class:`ChatStream` in one task of the service's loop.

    Chunks cross to the consuming thread over a zero-buffer memory stream, so the provider is
    read only as fast as the caller consumes (back-pressure), and every layer's context managers
    enter and exit in the same task. ``stop()`` cancels the task; the stream is closed in
    ``finally`` under a shield, which releases its connection and whatever the layers hold.
    """

    def __init__(self, stream: ChatStream) -> None:
        self.stream = stream
        self.error: BaseException | None = None
        self.scope: anyio.CancelScope | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the pump; on the loop's thread, so it is ordered with :meth:`run`'s start."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, self.receive = anyio.create_memory_object_stream[ChatChunk](0)
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        if self.cancelled:
            self.scope.cancel()
        try:
            with self.scope:
                task_status.started()
                try:
                    async for chunk in self.stream:
                        await send.send(chunk)
                except anyio.BrokenResourceError:  # the consumer went away
                    pass
                except Exception as exc:
                    self.error = exc
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()
            send.close()  # wakes a waiting receiver with EndOfStream
            self.receive.close()
            self.done.set()

    async def next(self) -> ChatChunk | None:
        """The next chunk, ``None`` at the end; raises the stream's error."""
        try:
            return await self.receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        await self.done.wait()
        error, self.error = self.error, None
        if error is not None:
            raise error
        return None

    async def stop(self) -> None:
        self.cancel()
        await self.done.wait()


class SyncChatStream:
    """A streaming call for sync code: an iterator of :class:`~llm_async.ChatChunk`.

    Nothing is sent until the first ``next()``. Leaving early — ``break`` out of a ``for`` loop
    (the iterator is then dropped), ``close()``, or the end of a ``with`` block — cancels the
    stream on the service's loop and releases its connection. When the stream ends,
    ``final_response`` holds the assembled answer, usage included. Iterate from one thread at a
    time.
    """

    def __init__(self, runtime: _Runtime, stream: ChatStream) -> None:
        self._runtime = runtime
        self._stream = stream
        self._pump: _Pump | None = None
        self._finished = False
        self._closed = False

    @property
    def request(self) -> ChatRequest:
        """The validated :class:`~llm_async.ChatRequest`."""
        return self._stream.request

    @property
    def final_response(self) -> ChatResponse | None:
        """The assembled answer once the stream has ended (``None`` before)."""
        return self._stream.final_response

    @property
    def text(self) -> str:
        """The text received so far."""
        return self._stream.text

    @property
    def closed(self) -> bool:
        """Whether the stream has ended or been closed (its connection is released)."""
        return self._closed

    def __iter__(self) -> SyncChatStream:
        return self

    def __next__(self) -> ChatChunk:
        if self._finished:
            raise StopIteration
        pump = self._pump
        if pump is None:
            pump = _Pump(self._stream)
            try:
                self._runtime.start_task(pump.run)
            except BaseException:
                # Interrupted while the pump was being started: it may run anyway, so cancel
                # it on the loop (a scope cancelled before it is entered cancels on entry).
                self._finished = self._closed = True
                self._runtime.cancel_soon(pump.cancel)
                raise
            self._pump = pump
        try:
            chunk = self._runtime.call(pump.next)
        except BaseException:
            self.close()
            raise
        if chunk is None:
            self.close()
            raise StopIteration
        return chunk

    def text_stream(self) -> Iterator[str]:
        """Only the text deltas (of the first choice when ``n`` > 1 was asked for)."""
        for chunk in self:
            if chunk.delta and not chunk.index:
                yield chunk.delta

    def get_final_response(self) -> ChatResponse:
        """Consume whatever is left and return the assembled answer."""
        for _ in self:
            pass
        if self.final_response is None:
            raise InvalidRequestError("the stream was closed before it finished")
        return self.final_response

    def close(self) -> None:
        """Stop the stream and release its connection (idempotent; safe after the end)."""
        if self._closed:
            return
        self._closed = self._finished = True
        runtime, pump = self._runtime, self._pump
        if runtime.stopped:  # the service's shutdown cancelled every stream already
            return
        if runtime.in_loop_thread():  # garbage-collected on the loop: no waiting there
            if pump is not None:
                pump.cancel()
            return
        try:
            if pump is not None:
                runtime.call(pump.stop)
            else:  # never started: nothing was sent, nothing is held
                runtime.call(self._stream.aclose)
        except InvalidRequestError:  # closed concurrently
            pass

    def __enter__(self) -> SyncChatStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown anything may be gone
            self.close()

    def __repr__(self) -> str:
        state = "done" if self.final_response else ("closed" if self._closed else "open")
        return f"SyncChatStream(model={self._stream.request.model!r}, {state})"
