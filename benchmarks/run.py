"""The comparison benchmark: llm_async against raw aiohttp and the peers, in one run.

::

    python benchmarks/run.py                 # 3 rounds, asyncio (+ uvloop when installed)
    python benchmarks/run.py --quick         # smoke run: 1 round, small counts, asyncio only
    python benchmarks/run.py --rounds 5 --loop uvloop --only aiohttp,llm_async

The embedded provider server runs in its own process, pinned to the last core; every client
(one worker process per client and event loop, so one library's imports and garbage never
weigh on another's) is pinned to core 0. Each round runs every client on every case
(non-stream and 20-chunk streams; concurrency 1, 16 and 128) one after another, rotating the
order; every figure is also given as a ratio to raw aiohttp *in the same round and loop*, and
the table shows the median over rounds. A client that is not installed is reported as skipped.

Output: a Markdown table on stdout and in ``benchmarks/results/latest.md``, the raw figures in
``latest.json`` and a chart in ``latest.png`` (when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"
API_KEY = "sk-bench-0123456789"
PROMPT = "Write one short sentence about rivers."
MESSAGES = [{"role": "user", "content": PROMPT}]
MODES = ("chat", "stream")
CONCURRENCY = (1, 16, 128)
REPLY_WORDS = 20
FLOOR = "aiohttp"
RESULT_TAG = "@@RESULT "

#: name -> what the report calls it.
LABELS = {
    "aiohttp": "raw aiohttp (floor)",
    "llm_async": "llm_async, no layers",
    "llm_async_full": "llm_async, default stack",
    "openai": "openai SDK (httpx)",
    "openai_aiohttp": "openai SDK (aiohttp)",
    "anthropic": "anthropic SDK",
    "litellm": "litellm",
}
CONTENDERS = tuple(LABELS)


# =================================================================================================
# Clients (run inside a worker process)
# =================================================================================================


class Skip(Exception):
    """The client cannot run here (not installed, or the server lacks its dialect)."""


class Client:
    """One benchmarked client: ``chat`` and ``stream`` (which returns the time to first text)."""

    def __init__(self, base: str) -> None:
        self.base = base  # the server's root URL

    async def open(self) -> None: ...

    async def chat(self, index: int) -> None:
        raise NotImplementedError

    async def stream(self, index: int) -> float | None:
        raise NotImplementedError

    async def close(self) -> None: ...


class RawAiohttp(Client):
    """The floor: one ClientSession, the same JSON, manual SSE line parsing."""

    async def open(self) -> None:
        import aiohttp

        from llm_async import _json

        self.loads, self.dumps = _json.loads, _json.dumps
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        self.url = self.base + "/v1/chat/completions"
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}

    async def chat(self, index: int) -> None:
        body = self.dumps({"model": MODEL, "messages": MESSAGES})
        async with self.session.post(self.url, data=body, headers=self.headers) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
        data = self.loads(raw)
        if not data["choices"][0]["message"]["content"]:
            raise RuntimeError("empty reply")

    async def stream(self, index: int) -> float | None:
        body = self.dumps({"model": MODEL, "messages": MESSAGES, "stream": True,
                           "stream_options": {"include_usage": True}})
        start = time.perf_counter()
        ttft = None
        parts: list[str] = []
        loads = self.loads
        async with self.session.post(self.url, data=body, headers=self.headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].rstrip()
                if payload == b"[DONE]":
                    continue
                for choice in loads(payload).get("choices") or ():
                    text = choice["delta"].get("content")
                    if text:
                        if ttft is None:
                            ttft = time.perf_counter() - start
                        parts.append(text)
        if not parts:
            raise RuntimeError("empty stream")
        return ttft

    async def close(self) -> None:
        await self.session.close()


class LLMAsync(Client):
    """llm_async with ``layers=[]`` (``full=False``) or its default pipeline (``full=True``)."""

    full = False

    async def open(self) -> None:
        from llm_async import AsyncLLMClient, Settings

        kwargs: dict[str, Any] = {} if self.full else {"layers": []}
        # Settings() ignores the environment, so an LLM_* variable cannot change the stack.
        self.client = AsyncLLMClient(provider="openai", api_key=API_KEY,
                                     base_url=self.base + "/v1", settings=Settings(), **kwargs)
        self.stack = " → ".join(type(x).__name__ for x in self.client.stack)

    async def chat(self, index: int) -> None:
        reply = await self.client.chat(model=MODEL, messages=MESSAGES)
        if not reply.content:
            raise RuntimeError("empty reply")
        if self.full and reply.cost is None:
            # An unpriced call takes the cost layer's estimate path: not what users run.
            raise RuntimeError(f"the default stack could not price {MODEL}: is llm_async "
                               "installed with its dependencies (genai-prices)?")

    async def stream(self, index: int) -> float | None:
        start = time.perf_counter()
        ttft = None
        async with self.client.stream(model=MODEL, messages=MESSAGES) as stream:
            async for chunk in stream:
                if chunk.delta and ttft is None:
                    ttft = time.perf_counter() - start
        final = stream.final_response
        if final is None or not final.content:
            raise RuntimeError("empty stream")
        if self.full and final.cost is None:
            raise RuntimeError(f"the default stack could not price {MODEL}: is llm_async "
                               "installed with its dependencies (genai-prices)?")
        return ttft

    async def close(self) -> None:
        await self.client.aclose()


class LLMAsyncFull(LLMAsync):
    full = True


class OpenAISDK(Client):
    """The official SDK with its default transport (httpx) or ``DefaultAioHttpClient``."""

    aiohttp = False

    async def open(self) -> None:
        try:
            import openai
        except ImportError as exc:
            raise Skip("openai is not installed") from exc
        kwargs: dict[str, Any] = {}
        if self.aiohttp:
            if not hasattr(openai, "DefaultAioHttpClient"):
                raise Skip("this openai version has no DefaultAioHttpClient")
            try:
                kwargs["http_client"] = openai.DefaultAioHttpClient()
            except Exception as exc:  # RuntimeError when httpx-aiohttp is missing
                raise Skip(f"openai[aiohttp] is not installed ({exc})") from exc
        self.client = openai.AsyncOpenAI(api_key=API_KEY, base_url=self.base + "/v1", **kwargs)

    async def chat(self, index: int) -> None:
        reply = await self.client.chat.completions.create(model=MODEL, messages=MESSAGES)
        if not reply.choices[0].message.content:
            raise RuntimeError("empty reply")

    async def stream(self, index: int) -> float | None:
        start = time.perf_counter()
        ttft = None
        stream = await self.client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and ttft is None:
                ttft = time.perf_counter() - start
        return ttft

    async def close(self) -> None:
        await self.client.close()


class OpenAIAioHttp(OpenAISDK):
    aiohttp = True


class AnthropicSDK(Client):
    """The anthropic SDK against the server's Anthropic dialect (``POST /v1/messages``)."""

    async def open(self) -> None:
        try:
            import anthropic
        except ImportError as exc:
            raise Skip("anthropic is not installed") from exc
        if not _has_path(self.base + "/v1/messages"):
            raise Skip("the embedded server has no Anthropic dialect (/v1/messages) yet")
        self.client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=self.base)

    async def chat(self, index: int) -> None:
        reply = await self.client.messages.create(model=ANTHROPIC_MODEL, max_tokens=256,
                                                  messages=MESSAGES)  # type: ignore[arg-type]
        if not reply.content:
            raise RuntimeError("empty reply")

    async def stream(self, index: int) -> float | None:
        start = time.perf_counter()
        ttft = None
        stream = await self.client.messages.create(model=ANTHROPIC_MODEL, max_tokens=256,
                                                   messages=MESSAGES, stream=True)
        async for event in stream:
            if event.type == "content_block_delta" and ttft is None:
                ttft = time.perf_counter() - start
        return ttft

    async def close(self) -> None:
        await self.client.close()


class LiteLLM(Client):
    """litellm's ``acompletion`` with an ``openai/`` model and ``api_base``."""

    async def open(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
        os.environ.setdefault("LITELLM_TELEMETRY", "False")
        try:
            import litellm
        except ImportError as exc:
            raise Skip("litellm is not installed") from exc
        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.litellm = litellm

    async def chat(self, index: int) -> None:
        reply = await self.litellm.acompletion(
            model=f"openai/{MODEL}", messages=MESSAGES, api_base=self.base + "/v1",
            api_key=API_KEY)
        if not reply.choices[0].message.content:
            raise RuntimeError("empty reply")

    async def stream(self, index: int) -> float | None:
        start = time.perf_counter()
        ttft = None
        stream = await self.litellm.acompletion(
            model=f"openai/{MODEL}", messages=MESSAGES, api_base=self.base + "/v1",
            api_key=API_KEY, stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and ttft is None:
                ttft = time.perf_counter() - start
        return ttft


CLIENTS: dict[str, type[Client]] = {
    "aiohttp": RawAiohttp,
    "llm_async": LLMAsync,
    "llm_async_full": LLMAsyncFull,
    "openai": OpenAISDK,
    "openai_aiohttp": OpenAIAioHttp,
    "anthropic": AnthropicSDK,
    "litellm": LiteLLM,
}


def _has_path(url: str) -> bool:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code not in (404, 405)


# =================================================================================================
# The worker process: one client, one event loop, commands on stdin, results on stdout
# =================================================================================================


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _worker(name: str, base: str) -> None:
    import asyncio

    client = CLIENTS[name](base)
    rss0 = h.rss_bytes()
    started = time.perf_counter()
    try:
        await client.open()
    except Skip as exc:
        _emit({"skip": str(exc)})
        return
    except Exception as exc:
        _emit({"skip": f"failed to start: {type(exc).__name__}: {exc}"})
        return
    info: dict[str, Any] = {"ready": True, "open_s": time.perf_counter() - started,
                            "rss_mib": h.rss_bytes() / 2**20, "rss0_mib": rss0 / 2**20,
                            "stack": getattr(client, "stack", None)}
    try:
        # Reach the steady state before anything is measured: first-use work (a tokenizer
        # loaded in a background thread, lazily imported modules) is not per-request cost.
        for call in (client.chat, client.stream):
            await h.run_load(call, 20, 4)
        info["warmup_s"] = await h.settle_background(timeout=120.0)
        info["rss_warm_mib"] = h.rss_bytes() / 2**20
    finally:
        await client.close()
    _emit(info)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        cmd = json.loads(line)
        if cmd.get("quit"):
            return
        _emit(await _case(CLIENTS[name](base), cmd))


async def _case(client: Client, cmd: dict[str, Any]) -> dict[str, Any]:
    mode, conc, n, warmup = cmd["mode"], cmd["concurrency"], cmd["requests"], cmd["warmup"]
    try:
        await client.open()
        call = client.chat if mode == "chat" else client.stream
        warm = await h.run_load(call, max(warmup, conc), conc)  # also fills the pool
        if warm.errors == warm.n:
            return {"error": f"every warm-up call failed ({warm.n})"}
        gc.collect()
        m = await h.run_load(call, n, conc)
        return m.summary()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def worker_main(name: str, base: str, loop: str) -> int:
    h.pin_client()
    h.run(_worker(name, base), loop)
    return 0


# =================================================================================================
# The driver
# =================================================================================================


class Worker:
    """A worker process seen from the driver."""

    def __init__(self, name: str, loop: str, base: str) -> None:
        self.name = name
        self.loop = loop
        self.skip: str | None = None
        self.info: dict[str, Any] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(h.ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--url", base,
             "--loop", loop],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, cwd=str(h.ROOT),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(RESULT_TAG):
                self._lines.put(line[len(RESULT_TAG):])
        self._lines.put(None)

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return {"error": f"no answer within {timeout:.0f}s"}
        if line is None:
            return {"error": "the worker exited"}
        result: dict[str, Any] = json.loads(line)
        return result

    def wait_ready(self, timeout: float) -> None:
        first = self.result(timeout)
        if "skip" in first:
            self.skip = first["skip"]
        elif "error" in first:
            self.skip = first["error"]
        else:
            self.info = first

    def run(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"error": "the worker is gone"}
        return self.result(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Plan:
    rounds: int
    loops: list[str]
    clients: list[str]
    modes: list[str]
    concurrency: list[int]
    requests: dict[str, int]
    warmup: int
    case_timeout: float


def _requests_for(plan: Plan, mode: str, conc: int) -> int:
    return max(plan.requests[mode], 2 * conc)


def drive(plan: Plan, log: Any = sys.stderr) -> dict[str, Any]:
    """Run every case of ``plan``; return the raw per-round figures and what was skipped."""
    h.pin_client()
    raw: dict[str, Any] = {}
    skipped: dict[str, dict[str, str]] = {}
    info: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with h.ServerProcess(reply_words=REPLY_WORDS) as server:
        print(f"# server {server.url} on core {server.core}, clients on core "
              f"{h.available_cores()[0] if server.core is not None else '(shared)'}", file=log)
        for loop in plan.loops:
            workers = [Worker(name, loop, server.url) for name in plan.clients]
            for w in workers:
                w.wait_ready(plan.case_timeout)
                if w.skip:
                    skipped.setdefault(loop, {})[w.name] = w.skip
                    print(f"# {loop}: {w.name} skipped: {w.skip}", file=log)
                else:
                    info.setdefault(loop, {})[w.name] = w.info
            active = [w for w in workers if not w.skip]
            try:
                for rnd in range(plan.rounds):
                    shift = rnd % len(active) if active else 0
                    order = active[shift:] + active[:shift]
                    for mode in plan.modes:
                        for conc in plan.concurrency:
                            cmd = {"mode": mode, "concurrency": conc, "warmup": plan.warmup,
                                   "requests": _requests_for(plan, mode, conc)}
                            for w in order:
                                res = w.run(cmd, plan.case_timeout)
                                raw.setdefault(loop, {}).setdefault(mode, {}).setdefault(
                                    str(conc), {}).setdefault(w.name, []).append(res)
                                if "error" in res:
                                    print(f"# {loop} r{rnd} {mode} c={conc} {w.name}: "
                                          f"{res['error']}", file=log)
                    print(f"# {loop}: round {rnd + 1}/{plan.rounds} done "
                          f"({time.perf_counter() - started:.0f}s)", file=log)
            finally:
                for w in workers:
                    w.close()
    return {"raw": raw, "skipped": skipped, "clients": info, "machine": h.machine(),
            "plan": plan.__dict__, "elapsed_s": time.perf_counter() - started,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# -- summarising -------------------------------------------------------------------------------

METRICS = ("rps", "p50_ms", "p99_ms", "ttft_ms", "cpu_us")


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds of every figure and of its ratio to the floor in the same round."""
    table: dict[str, Any] = {}
    for loop, modes in data["raw"].items():
        for mode, concs in modes.items():
            for conc, clients in concs.items():
                floor = clients.get(FLOOR, [])
                for name, rounds in clients.items():
                    row: dict[str, Any] = {}
                    errors = [r["error"] for r in rounds if "error" in r]
                    good = [r for r in rounds if "error" not in r]
                    for metric in METRICS:
                        row[metric] = h.median([r[metric] for r in good])
                        ratios = []
                        for i, r in enumerate(rounds):
                            f = floor[i] if i < len(floor) else None
                            if "error" in r or f is None or "error" in f:
                                continue
                            if f[metric] and f[metric] == f[metric]:
                                ratios.append(r[metric] / f[metric])
                        row[metric + "_x"] = h.median(ratios)
                    row["call_errors"] = sum(r.get("errors", 0) for r in good)
                    row["failed_rounds"] = errors
                    table.setdefault(loop, {}).setdefault(mode, {}).setdefault(conc, {})[name] = row
    return table


@dataclass
class Target:
    name: str
    client: str
    metric: str
    bound: float
    higher_is_better: bool
    modes: tuple[str, ...] = MODES


TARGETS = (
    Target("no layers ≤ 1.10× raw aiohttp CPU/request", "llm_async", "cpu_us", 1.10, False),
    Target("no layers ≥ 0.9× raw aiohttp req/s", "llm_async", "rps", 0.9, True),
    Target("default stack ≤ 1.30× raw aiohttp CPU/request", "llm_async_full", "cpu_us", 1.30,
           False),
    Target("default stack ≥ 0.8× raw aiohttp req/s", "llm_async_full", "rps", 0.8, True),
)


def check_targets(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target, per loop: met or missed, with the worst case."""
    out = []
    for loop, modes in table.items():
        for t in TARGETS:
            worst: tuple[float, str] | None = None
            for mode in t.modes:
                for conc, clients in modes.get(mode, {}).items():
                    row = clients.get(t.client)
                    if row is None:
                        continue
                    x = row[t.metric + "_x"]
                    if x != x:
                        continue
                    where = f"{mode} c={conc}"
                    key = -x if t.higher_is_better else x
                    if worst is None or key > (-worst[0] if t.higher_is_better else worst[0]):
                        worst = (x, where)
            if worst is None:
                out.append({"loop": loop, "target": t.name, "status": "not measured"})
                continue
            ok = worst[0] >= t.bound if t.higher_is_better else worst[0] <= t.bound
            out.append({"loop": loop, "target": t.name, "status": "met" if ok else "MISSED",
                        "worst": worst[0], "where": worst[1]})
    return out


def _fmt(value: float, digits: int = 0) -> str:
    if value != value:
        return "–"
    return f"{value:,.{digits}f}"


def _x(value: float) -> str:
    return "" if value != value else f" ({value:.2f}×)"


def render(data: dict[str, Any], table: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    """The Markdown report."""
    m = data["machine"]
    plan = data["plan"]
    lines = [
        "# llm_async benchmark",
        "",
        f"{data['date']} · {m['cpu']} · {m['cores']} cores "
        f"({'server and client pinned to separate cores' if m['pinned'] else 'NOT pinned'}) · "
        f"Python {m['python']} · aiohttp {m['aiohttp']} · pydantic {m['pydantic']} · "
        f"orjson {m['orjson'] or 'no'}",
        "",
        f"{plan['rounds']} round(s), medians; requests per case: {plan['requests']['chat']} "
        f"non-stream, {plan['requests']['stream']} stream (at least 2× the concurrency), after "
        f"a warm-up. Streams are {REPLY_WORDS} content chunks plus a usage chunk. Ratios "
        f"(×) are to raw aiohttp in the same round and loop. CPU is the client process's "
        f"CPU time per request. Run time {data['elapsed_s']:.0f} s.",
        "",
    ]
    for loop, modes in table.items():
        for mode, concs in modes.items():
            title = "non-stream" if mode == "chat" else f"{REPLY_WORDS}-chunk stream"
            lines += [f"## {loop} · {title}", ""]
            head = "| client | conc | req/s | p50 ms | p99 ms |"
            sep = "|---|---:|---:|---:|---:|"
            if mode == "stream":
                head += " TTFT ms |"
                sep += "---:|"
            lines += [head + " CPU µs/req |", sep + "---:|"]
            for conc, clients in concs.items():
                for name in CONTENDERS:
                    row = clients.get(name)
                    if row is None:
                        continue
                    cells = [LABELS[name], conc,
                             _fmt(row["rps"]) + _x(row["rps_x"]),
                             _fmt(row["p50_ms"], 2) + _x(row["p50_ms_x"]),
                             _fmt(row["p99_ms"], 2) + _x(row["p99_ms_x"])]
                    if mode == "stream":
                        cells.append(_fmt(row["ttft_ms"], 2) + _x(row["ttft_ms_x"]))
                    cpu = _fmt(row["cpu_us"]) + _x(row["cpu_us_x"])
                    if row["call_errors"] or row["failed_rounds"]:
                        cpu += f" ⚠ {row['call_errors']} errors"
                    cells.append(cpu)
                    lines.append("| " + " | ".join(str(c) for c in cells) + " |")
            lines.append("")
    skipped = data["skipped"]
    if skipped:
        lines += ["## Skipped", ""]
        for loop, names in skipped.items():
            for name, why in names.items():
                lines.append(f"* {loop}: {LABELS.get(name, name)}: {why}")
        lines.append("")
    lines += ["## Targets", "", "| loop | target | status | worst case |", "|---|---|---|---|"]
    for t in targets:
        worst = (f"{t['worst']:.2f}× ({t['where']})" if "worst" in t else "–")
        lines.append(f"| {t['loop']} | {t['target']} | {t['status']} | {worst} |")
    lines += ["", "Cache-hit latency (target: p50 ≤ 15 µs through the default stack) is "
              "measured by `benchmarks/bench_optimization.py`.", ""]
    stacks = {name: i.get("stack") for loop in data["clients"].values()
              for name, i in loop.items() if i.get("stack")}
    if stacks:
        lines += ["## Stacks", ""]
        lines += [f"* {LABELS[name]}: `{stack}`" for name, stack in stacks.items()]
        lines.append("")
    return "\n".join(lines)


def chart(table: dict[str, Any], path: Path) -> str | None:
    """A PNG of CPU per request and req/s (asyncio loop); returns why not when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e . --group bench): no chart"
    loop = "asyncio" if "asyncio" in table else next(iter(table), None)
    if loop is None:
        return "nothing was measured"
    modes = [m for m in MODES if m in table[loop]]
    fig, axes = plt.subplots(len(modes), 2, figsize=(13, 4.2 * len(modes)), squeeze=False)
    for r, mode in enumerate(modes):
        concs = list(table[loop][mode])
        names = [n for n in CONTENDERS if any(n in table[loop][mode][c] for c in concs)]
        width = 0.8 / max(1, len(names))
        for c_idx, (metric, label) in enumerate((("cpu_us", "client CPU µs / request"),
                                                 ("rps", "requests / s"))):
            ax = axes[r][c_idx]
            for i, name in enumerate(names):
                values = [table[loop][mode][c].get(name, {}).get(metric, float("nan"))
                          for c in concs]
                xs = [j + i * width for j in range(len(concs))]
                ax.bar(xs, values, width, label=LABELS[name])
            ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(concs))])
            ax.set_xticklabels([f"c={c}" for c in concs])
            ax.set_title(f"{'non-stream' if mode == 'chat' else 'stream'}: {label} ({loop})")
            if metric == "cpu_us":
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
    axes[0][1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round, small counts, asyncio only")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--loop", default="auto",
                   help="asyncio, uvloop, or auto (asyncio, plus uvloop when installed)")
    p.add_argument("--only", default="", help="comma-separated clients: " + ",".join(CLIENTS))
    p.add_argument("--skip", default="", help="comma-separated clients to leave out")
    p.add_argument("--modes", default="chat,stream")
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    p.add_argument("--requests", type=int, default=None,
                   help="non-stream requests per case (default 300; 60 with --quick)")
    p.add_argument("--stream-requests", type=int, default=None,
                   help="stream requests per case (default 200; 40 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per case")
    p.add_argument("--out", default=str(RESULTS), help="results folder")
    p.add_argument("--no-write", action="store_true", help="print only; write no files")
    p.add_argument("--docs", action="store_true",
                   help="also rewrite docs/performance.md with this run's report")
    p.add_argument("--fail-above", type=float, default=None, metavar="RATIO",
                   help="exit 1 when llm_async (either stack) costs more than RATIO × raw "
                        "aiohttp's CPU per request in any row (the CI regression guard)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.loop == "auto":
        loops = ["asyncio"] if args.quick or not h.uvloop_available() else ["asyncio", "uvloop"]
    else:
        loops = [x for x in args.loop.split(",") if x]
        if "uvloop" in loops and not h.uvloop_available():
            print("# uvloop is not installed: skipped", file=sys.stderr)
            loops.remove("uvloop")
    clients = [c for c in (args.only.split(",") if args.only else CLIENTS) if c]
    unknown = [c for c in clients if c not in CLIENTS]
    if unknown:
        raise SystemExit(f"unknown client(s) {unknown}; choose from {list(CLIENTS)}")
    skip = set(filter(None, args.skip.split(",")))
    clients = [c for c in clients if c not in skip]
    if FLOOR not in clients:
        clients.insert(0, FLOOR)  # every ratio needs the floor
    return Plan(
        rounds=args.rounds or (1 if args.quick else 3),
        loops=loops,
        clients=clients,
        modes=[m for m in args.modes.split(",") if m],
        concurrency=[int(c) for c in args.concurrency.split(",") if c],
        requests={"chat": args.requests or (60 if args.quick else 300),
                  "stream": args.stream_requests or (40 if args.quick else 200)},
        warmup=args.warmup if args.warmup is not None else (16 if args.quick else 50),
        case_timeout=300.0,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.url, args.loop)
    plan = make_plan(args)
    data = drive(plan)
    table = summarise(data)
    targets = check_targets(table)
    report = render(data, table, targets)
    print(report)
    if not args.no_write:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.md").write_text(report, encoding="utf-8")
        (out / "latest.json").write_text(
            json.dumps({**data, "summary": table, "targets": targets}, indent=1,
                       default=str), encoding="utf-8")
        why = chart(table, out / "latest.png")
        print(f"# wrote {out / 'latest.md'}, latest.json"
              + (f"; {why}" if why else ", latest.png"), file=sys.stderr)
        if args.docs:
            write_docs(report, out)
    if args.fail_above is not None:
        return guard(table, args.fail_above)
    return 0


def guard(table: dict[str, Any], ratio: float) -> int:
    """The regression guard: 1 when llm_async's CPU per request exceeds ``ratio`` × raw
    aiohttp's in any measured row (a gross regression), else 0."""
    worst: list[str] = []
    for loop, modes in table.items():
        for mode, concs in modes.items():
            for conc, clients in concs.items():
                for name in ("llm_async", "llm_async_full"):
                    row = clients.get(name)
                    x = row.get("cpu_us_x", float("nan")) if row else float("nan")
                    if x == x and x > ratio:
                        worst.append(f"{name} {loop} {mode} c={conc}: {x:.2f}×")
    if worst:
        print(f"REGRESSION: CPU per request above {ratio}× raw aiohttp: " + "; ".join(worst),
              file=sys.stderr)
        return 1
    print(f"benchmark guard: every llm_async row within {ratio}× raw aiohttp CPU per request",
          file=sys.stderr)
    return 0


DOCS_PAGE = h.ROOT / "docs" / "performance.md"
DOCS_HEAD = """# Performance

The numbers below come from `benchmarks/run.py` (and `benchmarks/imports.py`), run on the
machine named under the title: the embedded provider server in its own process on one core,
every client in its own worker process on the other, the same requests for everyone. Every
figure is also given as a ratio to raw aiohttp (one `ClientSession`, manual SSE parsing)
measured in the same round; the tables show medians over rounds. The benchmark's README
(`benchmarks/README.md`) explains the method and its caveats.

Reproduce them with:

```bash
python -m pip install -e . --group bench   # pip >= 25.1
python benchmarks/imports.py
python benchmarks/run.py --docs        # rewrites this page
```

"""


#: Where the sections of ``docs/performance.md`` that other scripts write begin.
KEPT_SECTIONS = "\n## How costs grow"


def write_docs(report: str, results: Path) -> None:
    """Rewrite ``docs/performance.md``: the report, and the import table when there is one."""
    body = report.split("\n", 2)[2] if report.startswith("# ") else report
    page = DOCS_HEAD + "## The run\n\n" + body.lstrip("\n").replace("\n## ", "\n### ")
    imports = results / "imports.md"
    if imports.exists():
        page += "\n## Import time and memory\n\n" + imports.read_text(encoding="utf-8")
    # The sections other scripts write (scaling curves, instruction counts) are kept.
    old = DOCS_PAGE.read_text(encoding="utf-8") if DOCS_PAGE.exists() else ""
    kept = old.find(KEPT_SECTIONS)
    if kept >= 0:
        page = page.rstrip() + "\n" + old[kept:]
    DOCS_PAGE.write_text(page.rstrip() + "\n", encoding="utf-8")
    print(f"# wrote {DOCS_PAGE}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
