"""A short memory soak in CI: 2,000 calls through the full default stack.

The same driver as ``benchmarks/soak.py`` (the 20,000-call version): the embedded server runs in
its own process with faults on some models, and the mix covers unary calls, streams read to the
end, streams broken off early (with and without ``async with``), cancelled calls and streams,
failures that are retried, failures that are not, and streams cut by the server.

Bounds, measured from the checkpoint after the first 500 calls (the warm-up: pools, caches and
ring buffers fill) to the end: traced Python memory may grow by at most 512 KiB over the next
1,500 calls (a leak of about 350 bytes per call trips it), resident memory by at most 8 MiB.
Leaks: no connection may still be checked out of the pool, no task may be left running and no
file descriptor may stay open once the client is closed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
TRACED_BOUND_KIB = 512.0
RSS_BOUND_MIB = 8.0


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load("_harness")
soak_mod = _load("soak")


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    with harness.ServerProcess(reply_words=20) as proc:
        proc.add_fault(*soak_mod.FAULTS)
        yield proc


async def test_two_thousand_calls_leave_memory_flat_and_nothing_behind(server) -> None:  # type: ignore[no-untyped-def]
    result = await soak_mod.soak(server.base_url, calls=2000, every=500, concurrency=16)
    # Every path of the mix ran (so the soak cannot pass by doing nothing).
    outcomes = result.outcomes
    for kind in ("chat", "stream", "break_with", "break_bare", "cancel_chat", "cancel_stream",
                 "retry_chat", "bad_chat:BadRequestError", "cut_stream:StreamError"):
        assert outcomes[kind] > 0, (kind, dict(outcomes))
    assert sum(outcomes.values()) == 2000
    assert server.stats()["faults_applied"] > 0
    assert [c.calls for c in result.checkpoints] == [500, 1000, 1500, 2000]
    assert result.leaks == []
    problems = result.flat(RSS_BOUND_MIB, TRACED_BOUND_KIB)
    assert problems == [], "\n".join(problems + result.checkpoints[-1].top)


async def test_the_soak_detects_a_leak(server) -> None:  # type: ignore[no-untyped-def]
    """The bounds bite: a layer that keeps 1 KiB per unary call (about 45% of the mix) in a
    global list fails the check."""
    from llm_async.domain.ports import Layer

    kept: list[bytes] = []

    class Leaky(Layer):
        async def chat(self, request, ctx):  # type: ignore[no-untyped-def]
            kept.append(bytes(1024))  # a new object per call
            return await self.inner.chat(request, ctx)

    original = soak_mod.make_client

    def leaky_client(base_url: str):  # type: ignore[no-untyped-def]
        client = original(base_url)
        client.handler = Leaky(client.handler)
        return client

    soak_mod.make_client = leaky_client
    try:
        result = await soak_mod.soak(server.base_url, calls=2000, every=500, concurrency=16)
    finally:
        soak_mod.make_client = original
    assert kept
    assert result.flat(RSS_BOUND_MIB, TRACED_BOUND_KIB), "a 1 KiB-per-call leak went unnoticed"
