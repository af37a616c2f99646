"""Memory soak: many calls through the full default stack; memory must stay flat.

::

    python benchmarks/soak.py                      # 20,000 calls, a report every 2,000
    python benchmarks/soak.py --calls 4000 --every 1000 --no-tracemalloc

The embedded server runs in its own process (pinned to the other core) with faults on some
models, so the mix covers every path a long-running service sees: unary calls, streams read to
the end, streams broken off early (with and without ``async with``), calls and streams cancelled
mid-flight, calls that fail and are retried, calls that fail for good, and streams cut by the
server. Every ``--every`` calls it prints resident memory, tracemalloc's total and its top growth
since the warm-up checkpoint. At the end it checks that memory stayed flat after the warm-up and
that nothing leaked: no connection still checked out of the pool, no stray task, no extra file
descriptor once the client is closed. Exit status 1 when a check fails.

``tests/perf/test_soak_short.py`` runs the same driver with 2,000 calls in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if "_harness" not in sys.modules:  # run as a script (the perf test loads both by path)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

MODEL = "gpt-4o-mini"
PROMPTS = [f"Soak prompt number {i}: say something." for i in range(32)]

#: Faults of the soak: each applies to one model only.
FAULTS: list[dict[str, Any]] = [
    # half the attempts fail with a retryable 503 (hint: retry after 1 ms)
    {"status": 503, "retry_after_ms": 1, "probability": 0.5, "times": None,
     "model": "soak-flaky"},
    {"status": 400, "times": None, "model": "soak-bad"},            # fails for good
    {"cut_after": 5, "times": None, "model": "soak-cut", "stream": True},  # cut mid-stream
    {"latency": 0.05, "times": None, "model": "soak-slow"},          # cancelled while waiting
    {"token_delay": 0.002, "times": None, "model": "soak-drip", "stream": True},  # slow stream
]

#: The call mix, cycled: scenario per call index modulo its length.
SCENARIOS = (
    "chat", "stream", "chat", "break_with", "retry_chat", "chat", "stream", "cancel_chat",
    "bad_chat", "break_bare", "chat", "cut_stream", "retry_stream", "cancel_stream", "stream",
    "chat", "retry_chat", "stream", "chat", "break_with",
)


@dataclass
class Checkpoint:
    """Memory and counters after ``calls`` calls."""

    calls: int
    seconds: float
    rss_mib: float
    traced_kib: float | None
    top: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    fds: int = -1
    tasks: int = 0

    def line(self) -> str:
        traced = f"{self.traced_kib:9.1f} KiB traced" if self.traced_kib is not None else ""
        return (f"{self.calls:>7} calls {self.seconds:7.1f}s  RSS {self.rss_mib:7.1f} MiB "
                f"{traced}  fds {self.fds}  tasks {self.tasks}")


@dataclass
class SoakResult:
    checkpoints: list[Checkpoint]
    outcomes: Counter[str]
    leaks: list[str]
    rss_growth_mib: float
    traced_growth_kib: float | None
    stack: str

    def flat(self, rss_bound_mib: float, traced_bound_kib: float) -> list[str]:
        """What exceeded its bound after the warm-up (empty when memory stayed flat)."""
        problems = []
        if self.rss_growth_mib > rss_bound_mib:
            problems.append(f"RSS grew {self.rss_growth_mib:.1f} MiB after warm-up "
                            f"(bound {rss_bound_mib} MiB)")
        if self.traced_growth_kib is not None and self.traced_growth_kib > traced_bound_kib:
            problems.append(f"traced memory grew {self.traced_growth_kib:.0f} KiB after warm-up "
                            f"(bound {traced_bound_kib} KiB)")
        return problems


#: Records the cost ledger keeps (a ring buffer; the default keeps 10,000, about 8 MiB, which
#: would only fill after the warm-up of a short soak).
LEDGER_RECORDS = 200


def make_client(base_url: str) -> Any:
    """The full default stack, with short retry delays, a breaker that keeps retries busy and
    a smaller cost-ledger ring buffer (see :data:`LEDGER_RECORDS`)."""
    from llm_async import AsyncLLMClient, CircuitBreakerConfig, RetryConfig, Settings
    from llm_async.application.cost_manager import CostManager, MemoryLedger

    return AsyncLLMClient(
        provider="openai", api_key="sk-soak-0123456789", base_url=base_url,
        settings=Settings(),
        retry_config=RetryConfig(max_attempts=4, base_delay=0.001, max_delay=0.004),
        circuit_breaker_config=CircuitBreakerConfig(failure_threshold=1000, timeout=0.05,
                                                    failure_rate_threshold=None),
        cost_manager=CostManager(backend=MemoryLedger(max_records=LEDGER_RECORDS)),
    )


async def _prepare(base_url: str) -> None:
    """Reach the steady state before anything is measured: first-use work (the token counter
    loading its tokenizer in a background thread, lazy imports) is not per-request state."""
    client = make_client(base_url)
    try:
        for index in range(2 * len(SCENARIOS)):
            await one_call(client, index)
    finally:
        await client.aclose()
    await h.settle_background(timeout=120.0)


async def _consume(stream: Any, limit: int | None = None) -> int:
    n = 0
    async for _ in stream:
        n += 1
        if limit is not None and n >= limit:
            break
    return n


async def one_call(client: Any, index: int) -> str:
    """Run the scenario of call ``index``; return its outcome (a scenario or error name)."""
    from llm_async import LLMError

    kind = SCENARIOS[index % len(SCENARIOS)]
    messages = [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]
    try:
        if kind == "chat":
            await client.chat(model=MODEL, messages=messages)
        elif kind == "retry_chat":
            await client.chat(model="soak-flaky", messages=messages)
        elif kind == "bad_chat":
            await client.chat(model="soak-bad", messages=messages)
        elif kind == "stream":
            async with client.stream(model=MODEL, messages=messages) as stream:
                await _consume(stream)
        elif kind == "retry_stream":
            async with client.stream(model="soak-flaky", messages=messages) as stream:
                await _consume(stream)
        elif kind == "cut_stream":
            async with client.stream(model="soak-cut", messages=messages) as stream:
                await _consume(stream)
        elif kind == "break_with":
            async with client.stream(model=MODEL, messages=messages) as stream:
                await _consume(stream, limit=3)
        elif kind == "break_bare":  # no async with: the stream is left to be collected
            await _consume(client.stream(model=MODEL, messages=messages), limit=2)
        elif kind == "cancel_chat":
            task = asyncio.ensure_future(client.chat(model="soak-slow", messages=messages))
            await asyncio.sleep(0.002)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return kind
        elif kind == "cancel_stream":
            first = asyncio.Event()

            async def reader() -> None:
                async with client.stream(model="soak-drip", messages=messages) as stream:
                    async for _ in stream:
                        first.set()

            task = asyncio.ensure_future(reader())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(first.wait(), 2.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return kind
        else:  # pragma: no cover
            raise ValueError(kind)
    except LLMError as err:
        return f"{kind}:{type(err).__name__}"
    return kind


def _top_growth(baseline: tracemalloc.Snapshot | None, top: int) -> list[str]:
    if baseline is None or not tracemalloc.is_tracing():
        return []
    snap = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        tracemalloc.Filter(False, "<unknown>"),
    ])
    out = []
    for stat in snap.compare_to(baseline, "lineno")[:top]:
        if stat.size_diff <= 0:
            break
        frame = stat.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        out.append(f"{where} {stat.size_diff / 1024:+.1f} KiB ({stat.count_diff:+d} blocks)")
    return out


def _connections_in_use(client: Any) -> int:
    total = 0
    for transport in client.transports.values():
        connector = getattr(transport, "connector", None)
        acquired = getattr(connector, "_acquired", None)
        if acquired is not None:
            total += len(acquired)
    return total


async def soak(base_url: str, *, calls: int, every: int, concurrency: int = 16,
               warmup: int | None = None, trace: bool = True, top: int = 5,
               report: Callable[[Checkpoint], None] | None = None) -> SoakResult:
    """Drive ``calls`` calls; checkpoint every ``every``; the first checkpoint at or after
    ``warmup`` calls (default: ``every``) is the baseline that growth is measured from."""
    warmup = every if warmup is None else warmup
    await _prepare(base_url)
    gc.collect()
    loop_tasks0 = len(asyncio.all_tasks())
    fds0 = h.open_fds()
    started_tracing = trace and not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start()
    client = make_client(base_url)
    stack = " → ".join(type(x).__name__ for x in client.stack)
    outcomes: Counter[str] = Counter()
    checkpoints: list[Checkpoint] = []
    baseline_snap: tracemalloc.Snapshot | None = None
    baseline: Checkpoint | None = None
    started = time.perf_counter()
    done = 0
    try:
        next_index = 0

        async def worker(stop_at: int) -> None:
            nonlocal done, next_index
            while next_index < stop_at:
                index = next_index
                next_index += 1
                outcomes[await one_call(client, index)] += 1
                done += 1

        next_mark = every
        while done < calls:
            stop_at = min(next_mark, calls)
            await asyncio.gather(*(worker(stop_at) for _ in range(concurrency)))
            # every call below the mark has finished: workers stop at the mark
            gc.collect()
            await asyncio.sleep(0)
            point = Checkpoint(
                calls=done, seconds=time.perf_counter() - started,
                rss_mib=h.rss_bytes() / 2**20,
                traced_kib=(tracemalloc.get_traced_memory()[0] / 1024
                            if tracemalloc.is_tracing() else None),
                top=_top_growth(baseline_snap, top), outcomes=dict(outcomes),
                fds=h.open_fds(), tasks=len(asyncio.all_tasks()),
            )
            checkpoints.append(point)
            if report is not None:
                report(point)
            if baseline is None and done >= warmup:
                baseline = point
                if tracemalloc.is_tracing():
                    baseline_snap = tracemalloc.take_snapshot()
            next_mark += every
        in_use = _connections_in_use(client)
    finally:
        await client.aclose()
        if started_tracing:
            tracemalloc.stop()
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    leaks = []
    if in_use:
        leaks.append(f"{in_use} connection(s) still checked out of the pool")
    stray = len(asyncio.all_tasks()) - loop_tasks0
    if stray > 0:
        names = sorted(t.get_name() + ":" + repr(t.get_coro())[:60]
                       for t in asyncio.all_tasks())
        leaks.append(f"{stray} task(s) left running: {names[:5]}")
    fds = h.open_fds()
    if fds0 >= 0 and fds > fds0:
        leaks.append(f"{fds - fds0} file descriptor(s) left open")
    last = checkpoints[-1]
    base = baseline or checkpoints[0]
    traced_growth = (last.traced_kib - base.traced_kib
                     if last.traced_kib is not None and base.traced_kib is not None else None)
    return SoakResult(checkpoints, outcomes, leaks, last.rss_mib - base.rss_mib, traced_growth,
                      stack)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Memory soak of the full llm_async stack.")
    p.add_argument("--calls", type=int, default=20_000)
    p.add_argument("--every", type=int, default=2_000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--no-tracemalloc", action="store_true")
    p.add_argument("--rss-bound", type=float, default=8.0,
                   help="MiB of RSS growth allowed after the warm-up checkpoint")
    p.add_argument("--traced-bound", type=float, default=1024.0,
                   help="KiB of traced growth allowed after the warm-up checkpoint")
    p.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    args = p.parse_args(argv)
    h.pin_client()
    with h.ServerProcess(reply_words=20) as server:
        server.add_fault(*FAULTS)
        print(f"# soak: {args.calls} calls, concurrency {args.concurrency}, server {server.url}"
              f" (core {server.core}), loop {args.loop}")

        def show(point: Checkpoint) -> None:
            print(point.line(), flush=True)
            for line in point.top:
                print(f"          {line}")

        result = h.run(soak(server.base_url, calls=args.calls, every=args.every,
                            concurrency=args.concurrency, trace=not args.no_tracemalloc,
                            report=show), args.loop)
        stats = server.stats()
    print(f"# stack: {result.stack}")
    print(f"# outcomes: {dict(sorted(result.outcomes.items()))}")
    print(f"# server: {stats.get('requests')} requests, {stats.get('faults_applied')} faults")
    traced = (f", traced {result.traced_growth_kib:+.0f} KiB"
              if result.traced_growth_kib is not None else "")
    print(f"# growth after warm-up: RSS {result.rss_growth_mib:+.1f} MiB{traced}")
    problems = result.flat(args.rss_bound, args.traced_bound) + result.leaks
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("OK: memory flat after warm-up; no leaked connection, task or file descriptor")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
