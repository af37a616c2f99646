"""Shared helpers of the benchmark scripts and the perf tests.

* :class:`ServerProcess` starts the embedded provider server (``python -m llm_async.testing``)
  in its own process, pinned to a core the client does not use, and programs its faults over
  the control endpoints (``/_mock/faults``).
* :func:`pin_client` pins the calling process to core 0, so client and server never share a core.
* :func:`run_load` drives ``n`` calls at a given concurrency and returns a :class:`Measurement`
  (wall time, client CPU from ``time.process_time()``, latencies, time to first token).
* :func:`rss_bytes`, :func:`open_fds` and :func:`machine` describe the process and the machine.

Nothing here changes the event loop policy: :func:`run` builds a loop (asyncio's or uvloop's)
through :class:`asyncio.Runner`'s ``loop_factory`` for the benchmark process only.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ROOT",
    "Measurement",
    "ServerProcess",
    "available_cores",
    "loop_factory",
    "machine",
    "open_fds",
    "percentile",
    "pin_client",
    "rss_bytes",
    "run",
    "run_load",
    "settle_background",
]

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

CLIENT_CORE = 0


# -- cores and processes -------------------------------------------------------------------------


def _cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


_CORES = _cores()  # taken before anything is pinned


def available_cores() -> list[int]:
    """The cores this process could run on when it started (before :func:`pin_client`)."""
    return list(_CORES)


def _pin(pid: int, core: int) -> bool:
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(pid, {core})
    except OSError:
        return False
    return True


def pin_client() -> int | None:
    """Pin this process to the client core (0); ``None`` when pinning is unavailable.

    With a single core nothing is pinned: client and server then share it, which the report
    says (see :func:`machine`).
    """
    cores = available_cores()
    if len(cores) < 2:
        return None
    core = cores[CLIENT_CORE]
    return core if _pin(0, core) else None


def server_core() -> int | None:
    """The core the server process is pinned to (the last one), or ``None``."""
    cores = available_cores()
    return cores[-1] if len(cores) >= 2 else None


def rss_bytes() -> int:
    """Resident memory of this process now (``/proc/self/statm``), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def open_fds() -> int:
    """Open file descriptors of this process (``-1`` where ``/proc`` is unavailable)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, every thread included."""
    return time.process_time()


class ServerProcess:
    """The embedded provider server in a child process, pinned to the server core.

    ::

        with ServerProcess(reply_words=20) as server:
            server.base_url   # http://127.0.0.1:PORT/v1
            server.add_fault({"status": 500, "times": 1})
    """

    def __init__(self, *, reply_words: int = 20, token_delay: float = 0.0, seed: int = 0,
                 start_timeout: float = 30.0) -> None:
        self.reply_words = reply_words
        self.token_delay = token_delay
        self.seed = seed
        self.start_timeout = start_timeout
        self.url = ""
        self.core: int | None = None
        self._proc: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return self.url + "/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> ServerProcess:
        """Start the server and wait for its ``LISTENING`` line."""
        cmd = [sys.executable, "-m", "llm_async.testing", "--port", "0",
               "--reply-words", str(self.reply_words), "--token-delay", str(self.token_delay),
               "--seed", str(self.seed)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        proc = self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=env, cwd=str(ROOT),
        )
        core = server_core()
        if core is not None and _pin(proc.pid, core):
            self.core = core
        assert proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("LISTENING "):
                self.url = line.split()[1].rstrip("/")
                return self
            if not line and proc.poll() is not None:
                break
        err = proc.stderr.read() if proc.stderr is not None and proc.poll() is not None else ""
        self.stop()
        raise RuntimeError(f"the mock server did not start: {line!r} {err[-2000:]}")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control endpoints (blocking; call them outside timed sections) ----------------------

    def _control(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def add_fault(self, *faults: dict[str, Any]) -> None:
        """Queue faults (the fields of :class:`llm_async.testing.Fault`)."""
        self._control("POST", "/_mock/faults", list(faults))

    def clear_faults(self) -> None:
        self._control("DELETE", "/_mock/faults")

    def stats(self) -> dict[str, Any]:
        """The server's counters (``requests``, ``streams``, ``faults_applied``, ...)."""
        result: dict[str, Any] = self._control("GET", "/_mock/stats")
        return result

    def reset(self) -> None:
        self._control("POST", "/_mock/reset")

    def has_path(self, path: str) -> bool:
        """Whether the server routes ``POST path`` (a 404 means it has no such dialect)."""
        req = urllib.request.Request(self.url + path, data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code not in (404, 405)


# -- measuring -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass
class Measurement:
    """One measured batch of calls."""

    n: int
    concurrency: int
    wall: float
    cpu: float
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rps(self) -> float:
        return self.n / self.wall if self.wall > 0 else float("nan")

    @property
    def cpu_us(self) -> float:
        """Client CPU per call in microseconds."""
        return self.cpu / self.n * 1e6 if self.n else float("nan")

    def summary(self) -> dict[str, float]:
        """The figures the report shows (latencies in milliseconds)."""
        return {
            "rps": self.rps,
            "p50_ms": percentile(self.latencies, 50) * 1e3,
            "p99_ms": percentile(self.latencies, 99) * 1e3,
            "ttft_ms": percentile(self.ttfts, 50) * 1e3 if self.ttfts else float("nan"),
            "cpu_us": self.cpu_us,
            "errors": float(self.errors),
            "n": float(self.n),
        }


Call = Callable[[int], Awaitable[float | None]]
"""One benchmark call: given its index, perform it; return the time to first token (streams)."""


async def run_load(call: Call, n: int, concurrency: int) -> Measurement:
    """Run ``n`` calls with ``concurrency`` workers; measure wall time and client CPU.

    Each worker takes the next index and awaits ``call(index)``; latencies are per call. An
    exception counts as an error and is not re-raised (the report shows the error count).
    """
    latencies: list[float] = []
    ttfts: list[float] = []
    errors = 0
    counter = iter(range(n))
    clock = time.perf_counter

    async def worker() -> None:
        nonlocal errors
        for index in counter:
            start = clock()
            try:
                ttft = await call(index)
            except Exception:
                errors += 1
                continue
            latencies.append(clock() - start)
            if ttft is not None:
                ttfts.append(ttft)

    cpu0 = cpu_seconds()
    t0 = clock()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    wall = clock() - t0
    cpu = cpu_seconds() - cpu0
    return Measurement(n=n, concurrency=concurrency, wall=wall, cpu=cpu, latencies=latencies,
                       ttfts=ttfts, errors=errors)


async def settle_background(timeout: float = 60.0, window: float = 0.1) -> float:
    """Wait until this process is idle (two windows of ``window`` seconds with under 5% CPU):
    first-use work in background threads (a tokenizer loading, lazy imports) has finished.
    Threads that stay alive but idle (a peer's logging worker) do not hold it up. Returns how
    long it waited (at most ``timeout``)."""
    start = time.perf_counter()
    quiet = 0
    while quiet < 2 and time.perf_counter() - start < timeout:
        cpu0 = cpu_seconds()
        await asyncio.sleep(window)
        quiet = quiet + 1 if cpu_seconds() - cpu0 < 0.05 * window else 0
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    """Median ignoring NaNs (NaN when nothing is left)."""
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


# -- event loops -----------------------------------------------------------------------------------


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A loop factory for :class:`asyncio.Runner`: ``"asyncio"`` (None) or ``"uvloop"``.

    Raises :class:`ImportError` when uvloop is asked for but not installed.
    """
    if kind == "asyncio":
        return None
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown loop {kind!r}; expected 'asyncio' or 'uvloop'")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """Run ``main`` on a fresh loop of the given kind (the global policy is left untouched)."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)


# -- the machine -----------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cores = available_cores()
    return {
        "cpu": _cpu_model(),
        "cores": len(cores),
        "pinned": len(cores) >= 2,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "aiohttp": _version("aiohttp"),
        "pydantic": _version("pydantic"),
        "orjson": _version("orjson"),
        "uvloop": _version("uvloop"),
        "openai": _version("openai"),
        "anthropic": _version("anthropic"),
        "litellm": _version("litellm"),
    }
