"""A small, self-contained throughput benchmark for ``llm-async bench``.

``run_bench`` sends ``requests`` chat calls through an :class:`~llm_async.AsyncLLMClient` with at
most ``concurrency`` in flight, and measures what a caller sees: wall time, requests per second,
latency percentiles, time to first chunk (streams) and output tokens per second. Failures are
counted by their root cause (:func:`~llm_async.errors.root_cause`: the 500s or connection errors
behind an open breaker or an exhausted fallback chain), never raised; ``failed_fast`` counts the
calls an open breaker rejected without sending them. The full benchmark suite
(``benchmarks/run.py``, comparisons with other SDKs) lives outside the package; this one needs
nothing but the core.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .client import AsyncLLMClient
from .errors import CircuitBreakerOpenError, LLMError, root_cause

__all__ = ["BenchResult", "format_table", "percentile", "run_bench"]


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; ``nan`` when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class BenchResult:
    """What one benchmark run measured (seconds; tokens as the provider counted them)."""

    requests: int
    concurrency: int
    stream: bool
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_chunk: list[float] = field(default_factory=list)
    output_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    failed_fast: int = 0

    @property
    def succeeded(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def requests_per_second(self) -> float:
        return self.succeeded / self.wall if self.wall > 0 else math.nan

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.wall if self.wall > 0 else math.nan

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary (milliseconds for latencies)."""

        def ms(values: list[float], q: float) -> float | None:
            value = percentile(values, q)
            return None if math.isnan(value) else round(value * 1000.0, 3)

        out: dict[str, Any] = {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "stream": self.stream,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": dict(self.errors),
            "failed_fast": self.failed_fast,
            "wall_seconds": round(self.wall, 4),
            "requests_per_second": _round(self.requests_per_second),
            "output_tokens": self.output_tokens,
            "tokens_per_second": _round(self.tokens_per_second),
            "latency_ms": {f"p{q}": ms(self.latencies, q) for q in (50, 90, 99, 100)},
        }
        if self.stream:
            out["first_chunk_ms"] = {f"p{q}": ms(self.first_chunk, q) for q in (50, 90, 99)}
        return out


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


async def run_bench(
    client: AsyncLLMClient,
    *,
    model: str,
    requests: int = 200,
    concurrency: int = 32,
    stream: bool = False,
    prompt: str = "Write a short poem about the sea.",
    max_tokens: int | None = None,
    on_result: Callable[[bool], None] | None = None,
    result: BenchResult | None = None,
) -> BenchResult:
    """Send ``requests`` calls, ``concurrency`` at a time; ``on_result(ok)`` after each one.

    Measurements accumulate in ``result`` (a new one unless given), so a caller that keeps it
    still has the partial figures, wall time included, when the run is cancelled.
    """
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be >= 1")
    if result is None:
        result = BenchResult(requests=requests, concurrency=concurrency, stream=stream)
    messages = [{"role": "user", "content": prompt}]
    params: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
    remaining = iter(range(requests))

    async def one() -> None:
        started = time.perf_counter()
        tokens = 0
        if stream:
            first: float | None = None
            async with client.stream(model=model, messages=messages, **params) as chunks:
                async for chunk in chunks:
                    if first is None and (chunk.delta or chunk.tool_calls):
                        first = time.perf_counter() - started
                final = chunks.final_response
            if first is not None:
                result.first_chunk.append(first)
            tokens = final.usage.output_tokens if final is not None else 0
        else:
            reply = await client.chat(model=model, messages=messages, **params)
            tokens = reply.usage.output_tokens
        result.latencies.append(time.perf_counter() - started)
        result.output_tokens += tokens

    async def worker() -> None:
        for _ in remaining:
            try:
                await one()
            except LLMError as exc:
                result.errors[type(root_cause(exc)).__name__] += 1
                result.failed_fast += isinstance(exc, CircuitBreakerOpenError)
                ok = False
            else:
                ok = True
            if on_result is not None:
                on_result(ok)

    began = time.perf_counter()
    try:
        async with anyio.create_task_group() as group:
            for _ in range(min(concurrency, requests)):
                group.start_soon(worker)
    finally:
        result.wall = time.perf_counter() - began
    return result


def format_table(result: BenchResult) -> list[tuple[str, str]]:
    """The results as (metric, value) rows, for a plain or a rich table."""

    def ms(values: list[float], q: float) -> str:
        value = percentile(values, q)
        return "-" if math.isnan(value) else f"{value * 1000.0:.2f} ms"

    rows = [
        ("requests", f"{result.requests} ({result.concurrency} at a time"
                     f"{', streamed' if result.stream else ''})"),
        ("succeeded", str(result.succeeded)),
        ("failed", str(result.failed) + (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items())) + ")"
            if result.errors else "")
            + (f", {result.failed_fast} failed fast (open breaker)" if result.failed_fast
               else "")),
        ("wall time", f"{result.wall:.3f} s"),
        ("throughput", f"{result.requests_per_second:.1f} req/s"),
        ("latency p50", ms(result.latencies, 50)),
        ("latency p90", ms(result.latencies, 90)),
        ("latency p99", ms(result.latencies, 99)),
        ("latency max", ms(result.latencies, 100)),
    ]
    if result.stream:
        rows += [("first chunk p50", ms(result.first_chunk, 50)),
                 ("first chunk p99", ms(result.first_chunk, 99))]
    rows += [("output tokens", str(result.output_tokens)),
             ("tokens/s", f"{result.tokens_per_second:.0f}")]
    return rows
