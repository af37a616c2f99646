"""The one timer behind an attempt's timeouts: it interrupts only the attempt's own waits, a
deadline moved later holds, and a caller's own cancellation is never taken for a timeout."""

from __future__ import annotations

import asyncio

import pytest

from llm_async.infrastructure.transports._watch import Watch


async def _wait(watch: Watch, future: asyncio.Future[None]) -> None:
    watch.enter()
    try:
        await future
    finally:
        watch.leave()


async def test_a_wait_past_the_deadline_is_interrupted_and_told_apart() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch(loop, loop.time() + 0.01)
    never: asyncio.Future[None] = loop.create_future()
    with pytest.raises(asyncio.CancelledError):
        await _wait(watch, never)
    assert watch.timed_out()
    assert not watch.timed_out()  # withdrawn once
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    watch.close()


async def test_a_deadline_moved_later_holds_for_the_wait() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch(loop, loop.time() + 0.01)
    done: asyncio.Future[None] = loop.create_future()
    watch.at = loop.time() + 3600  # data arrived: a much later deadline
    loop.call_later(0.1, done.set_result, None)
    await _wait(watch, done)  # the first timer fires, finds the later deadline and sleeps on
    assert not watch.expired
    watch.close()


async def test_a_deadline_that_passes_outside_a_wait_interrupts_nothing() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch(loop, loop.time() + 3600)
    done: asyncio.Future[None] = loop.create_future()
    loop.call_later(0.05, done.set_result, None)
    await _wait(watch, done)  # arms the timer
    watch.at = loop.time() + 0.01
    await asyncio.sleep(0.1)  # the caller's own await: past the deadline, not interrupted
    assert not watch.expired
    with pytest.raises(asyncio.TimeoutError):
        watch.enter()  # the next wait of the attempt reports it at once
    watch.close()


async def test_the_callers_own_cancellation_is_not_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch(loop, loop.time() + 3600)

    async def attempt() -> str:
        try:
            await _wait(watch, loop.create_future())
        except asyncio.CancelledError:
            return "timeout" if watch.timed_out() else "cancelled"
        return "done"

    alone = asyncio.ensure_future(attempt())
    await asyncio.sleep(0)  # inside its wait
    alone.cancel()  # the caller cancels before the deadline
    assert await alone == "cancelled"

    both = asyncio.ensure_future(attempt())
    await asyncio.sleep(0)
    watch.at = loop.time() - 1
    watch._fire()  # the timer's callback: the deadline passed, the wait is interrupted ...
    assert watch.expired
    both.cancel()  # ... and the caller cancels in the same moment: its cancellation wins
    assert await both == "cancelled"
    watch.close()


async def test_close_drops_the_timer() -> None:
    loop = asyncio.get_running_loop()
    watch = Watch(loop, loop.time() + 0.01)
    done: asyncio.Future[None] = loop.create_future()
    loop.call_soon(done.set_result, None)
    await _wait(watch, done)
    watch.close()
    assert watch._handle is None and watch.at is None
