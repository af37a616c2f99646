"""Instructions per call: llm_async against raw aiohttp, counted by valgrind, not timed.

::

    python benchmarks/instructions.py                       # aiohttp, llm_async, llm_async_full
    python benchmarks/instructions.py --only aiohttp,llm_async --modes chat --calls 300

On a shared or busy machine the CPU-time ratios of ``run.py`` move by several per cent between
runs; the number of user-space instructions a call executes does not. Each client runs in its
own Python process under ``valgrind --tool=callgrind`` (the embedded server runs outside it),
makes ``--calls`` sequential calls after a warm-up, and again twice as many: the difference,
divided by ``--calls``, is the instructions of one call with start-up and imports taken out.
The garbage collector stays on. Kernel time (the socket system calls, the same for every client)
is not counted, so these ratios are larger than ``run.py``'s CPU ratios.

Needs ``valgrind`` on ``PATH`` (skipped with a note when absent). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

DEFAULT_CLIENTS = ("aiohttp", "llm_async", "llm_async_full")
WARMUP = 30
_COLLECTED = re.compile(r"Collected : (\d+)")


async def _calls(name: str, mode: str, calls: int, url: str) -> None:
    import run

    client = run.CLIENTS[name](url)
    await client.open()
    call = client.chat if mode == "chat" else client.stream
    for index in range(WARMUP + calls):
        await call(index)
    await client.close()


def _instructions(name: str, mode: str, calls: int, url: str) -> int:
    """User-space instructions of one worker run (imports, warm-up and ``calls`` calls)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           __file__, "--worker", name, mode, str(calls), url]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{name} {mode}: the worker failed: {done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(name: str, mode: str, calls: int, url: str) -> float:
    return (_instructions(name, mode, 2 * calls, url)
            - _instructions(name, mode, calls, url)) / calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--only", default=",".join(DEFAULT_CLIENTS),
                   help="comma-separated clients (names as in run.py; the first is the floor)")
    p.add_argument("--modes", default="chat,stream")
    p.add_argument("--calls", type=int, default=150, help="calls counted per run")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        name, mode, calls, url = args.worker
        asyncio.run(_calls(name, mode, int(calls), url))
        return 0
    if shutil.which("valgrind") is None:
        print("# valgrind is not installed: nothing measured")
        return 0
    names = [n for n in args.only.split(",") if n]
    modes = [m for m in args.modes.split(",") if m]
    print(f"# {h.machine()['cpu']} · Python {sys.version.split()[0]} · {args.calls} calls "
          "counted per run")
    print()
    print("| client | mode | instructions / call | × floor |")
    print("|---|---|---:|---:|")
    with h.ServerProcess(reply_words=20) as server:
        for mode in modes:
            floor = None
            for name in names:
                count = per_call(name, mode, args.calls, server.url)
                floor = floor or count
                print(f"| {name} | {mode} | {count:,.0f} | {count / floor:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
