"""How costs grow: prompt size, stream length and concurrency, with raw aiohttp alongside.

::

    python benchmarks/scaling.py            # the three curves; table, JSON and PNG in results/
    python benchmarks/scaling.py --quick    # smaller sizes and counts (a smoke run)
    python benchmarks/scaling.py --docs     # also rewrite the scaling section of the docs

* **Prompt size** (1 KB → 10 MB of text, in process): building the typed request, the cost
  layer's worst-case bound, and serialising the provider payload; next to it, what raw aiohttp
  code pays to serialise the same body (``json.dumps`` and, when installed, ``orjson``).
* **Stream length** (20 → 5,000 chunks, embedded server in its own process): client CPU per
  chunk for raw aiohttp (manual SSE parsing), llm_async with no layers and with the default
  stack; and the memory the assembled response keeps (traced by ``tracemalloc``).
* **Concurrency** (1 → 2,048 in-flight streams): resident memory per in-flight stream once
  every stream has delivered its first chunk, and the event loop's lag (p99 of a 5 ms ticker's
  overshoot) while they run.

The garbage collector stays on, as in a real application. Each figure is also given per unit
(per KB, per chunk, per stream): a flat column is linear growth; a rising one is a bug to fix.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
MODEL = "gpt-4o-mini"
API_KEY = "sk-bench-0123456789"
BEGIN, END = "<!-- scaling:begin -->", "<!-- scaling:end -->"


# -- prompt size -----------------------------------------------------------------------------


def _timed(fn: Callable[[], Any], budget: float = 0.3, least: int = 3) -> float:
    """Median seconds of ``fn()`` over repeats filling about ``budget`` seconds."""
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < least or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if len(samples) >= 200:
            break
    return statistics.median(samples)


def prompt_sizes(sizes: list[int]) -> list[dict[str, Any]]:
    from llm_async import AsyncLLMClient, _json
    from llm_async.application.cost_manager.bounds import input_token_bound
    from llm_async.infrastructure.transports.openai_transport import OpenAITransport

    try:
        import orjson
    except ImportError:  # pragma: no cover - optional
        orjson = None

    client = AsyncLLMClient(provider="mock", layers=[])
    transport = OpenAITransport(API_KEY, "http://127.0.0.1:9/v1")
    bound = input_token_bound  # the cost layer's worst-case input bound of a request
    sentence = "The river carries silt past the old mill and into the valley below. "
    rows = []
    for size in sizes:
        text = (sentence * (size // len(sentence) + 1))[:size]
        messages = [{"role": "user", "content": text}]
        request = client.build_request(MODEL, messages, {}, stream=False)
        row: dict[str, Any] = {"bytes": size}
        row["build_us"] = _timed(
            lambda m=messages: client.build_request(MODEL, m, {}, stream=False)) * 1e6
        row["bound_us"] = _timed(lambda r=request: bound(r)) * 1e6
        row["serialise_us"] = _timed(
            lambda r=request: _json.dumps(transport.build_payload(r, stream=False))) * 1e6
        body = {"model": MODEL, "messages": messages}
        row["raw_json_us"] = _timed(lambda b=body: json.dumps(b).encode()) * 1e6
        row["raw_orjson_us"] = (_timed(lambda b=body: orjson.dumps(b)) * 1e6
                                if orjson is not None else float("nan"))
        rows.append(row)
    return rows


# -- streams -----------------------------------------------------------------------------------


async def _raw_stream(session: Any, url: str, headers: dict[str, str]) -> int:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "go"}],
                       "stream": True, "stream_options": {"include_usage": True}})
    parts: list[str] = []
    async with session.post(url, data=body, headers=headers) as resp:
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].rstrip()
            if payload == b"[DONE]":
                continue
            for choice in json.loads(payload).get("choices") or ():
                text = choice["delta"].get("content")
                if text:
                    parts.append(text)
    return len(parts)


async def _stream_cpu(base: str, chunks: int, streams: int) -> dict[str, float]:
    import aiohttp

    from llm_async import AsyncLLMClient, Settings

    messages = [{"role": "user", "content": "go"}]
    out: dict[str, float] = {}
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    url, headers = base + "/v1/chat/completions", {"Authorization": f"Bearer {API_KEY}",
                                                   "Content-Type": "application/json"}
    bare = AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=base + "/v1",
                          settings=Settings(), layers=[])
    full = AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=base + "/v1",
                          settings=Settings())

    async def via(client: AsyncLLMClient) -> int:
        async with client.stream(model=MODEL, messages=messages) as stream:
            async for _ in stream:
                pass
        assert stream.final_response is not None
        return len(stream.final_response.text.split())

    contenders: dict[str, Callable[[], Awaitable[int]]] = {
        "aiohttp": lambda: _raw_stream(session, url, headers),
        "llm_async": lambda: via(bare),
        "llm_async_full": lambda: via(full),
    }
    try:
        for name, run in contenders.items():
            await run()  # warm-up
            t0 = time.process_time()
            for _ in range(streams):
                got = await run()
            cpu = time.process_time() - t0
            if got < chunks:
                raise RuntimeError(f"{name}: {got} chunks, expected {chunks}")
            out[f"{name}_us_per_chunk"] = cpu / (streams * chunks) * 1e6
        # the memory an assembled answer keeps
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        async with bare.stream(model=MODEL, messages=messages) as stream:
            async for _ in stream:
                pass
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert stream.final_response is not None
        out["response_bytes"] = float(kept)
        out["text_bytes"] = float(len(stream.final_response.text.encode()))
    finally:
        await session.close()
        await bare.aclose()
        await full.aclose()
    return out


def stream_lengths(lengths: list[int], total_chunks: int) -> list[dict[str, Any]]:
    rows = []
    for chunks in lengths:
        streams = max(3, total_chunks // chunks)
        with h.ServerProcess(reply_words=chunks) as server:
            row: dict[str, Any] = {"chunks": chunks, "streams": streams}
            row.update(h.run(_stream_cpu(server.url, chunks, streams)))
        rows.append(row)
    return rows


# -- concurrency -------------------------------------------------------------------------------


async def _in_flight(base: str, n: int, kind: str) -> dict[str, float]:
    import aiohttp

    from llm_async import AsyncLLMClient, Settings

    messages = [{"role": "user", "content": "go"}]
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            t0 = loop.time()
            await asyncio.sleep(0.005)
            lags.append(max(0.0, loop.time() - t0 - 0.005))

    started = 0
    all_started = asyncio.Event()
    release = asyncio.Event()

    def one_started() -> None:
        nonlocal started
        started += 1
        if started == n:
            all_started.set()

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    client = AsyncLLMClient(provider="openai", api_key=API_KEY, base_url=base + "/v1",
                            settings=Settings(), max_connections=n + 16,
                            **({"layers": []} if kind == "llm_async" else {}))
    url = base + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    body = json.dumps({"model": MODEL, "messages": messages, "stream": True})

    async def raw() -> None:
        async with session.post(url, data=body, headers=headers) as resp:
            first = True
            async for line in resp.content:
                if first and line.startswith(b"data: "):
                    first = False
                    one_started()
                    await release.wait()

    async def ours() -> None:
        async with client.stream(model=MODEL, messages=messages) as stream:
            first = True
            async for _ in stream:
                if first:
                    first = False
                    one_started()
                    await release.wait()

    gc.collect()
    rss0 = h.rss_bytes()
    tick = asyncio.ensure_future(ticker())
    tasks = [asyncio.ensure_future(raw() if kind == "aiohttp" else ours()) for _ in range(n)]
    try:
        await asyncio.wait_for(all_started.wait(), timeout=120)
        rss1 = h.rss_bytes()
        release.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await tick
        await session.close()
        await client.aclose()
    return {"rss_per_stream_kib": (rss1 - rss0) / n / 1024,
            "loop_lag_p99_ms": h.percentile(lags, 99) * 1e3}


def concurrency(levels: list[int]) -> list[dict[str, Any]]:
    rows = []
    with h.ServerProcess(reply_words=30) as server:
        for n in levels:
            row: dict[str, Any] = {"in_flight": n}
            for kind in ("aiohttp", "llm_async", "llm_async_full"):
                figures = h.run(_in_flight(server.url, n, kind))
                row.update({f"{kind}_{k}": v for k, v in figures.items()})
            rows.append(row)
    return rows


# -- report ------------------------------------------------------------------------------------


def _f(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"{result['date']} · {m.get('cpu', '?')} · Python {m.get('python', '?')} · "
             f"aiohttp {m.get('aiohttp', '?')} · pydantic {m.get('pydantic', '?')}", ""]
    lines += ["### Prompt size (in process)", "",
              "| prompt | build µs | cost bound µs | serialise µs | raw json.dumps µs "
              "| raw orjson µs | serialise ns/byte |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["prompt"]:
        lines.append(
            f"| {r['bytes'] / 1024:,.0f} KiB | {_f(r['build_us'])} | {_f(r['bound_us'])} | "
            f"{_f(r['serialise_us'])} | {_f(r['raw_json_us'])} | {_f(r['raw_orjson_us'])} | "
            f"{_f(r['serialise_us'] * 1000 / r['bytes'], 2)} |")
    lines += ["", "### Stream length (client CPU per chunk, memory kept by the answer)", "",
              "| chunks | raw aiohttp µs/chunk | no layers µs/chunk | default stack µs/chunk "
              "| answer bytes kept | per chunk |", "|---:|---:|---:|---:|---:|---:|"]
    for r in result["stream"]:
        lines.append(
            f"| {r['chunks']:,} | {_f(r['aiohttp_us_per_chunk'])} | "
            f"{_f(r['llm_async_us_per_chunk'])} | {_f(r['llm_async_full_us_per_chunk'])} | "
            f"{r['response_bytes']:,.0f} | {_f(r['response_bytes'] / r['chunks'])} |")
    lines += ["", "### Concurrency (in-flight streams)", "",
              "| in flight | RSS KiB/stream: raw aiohttp | no layers | default stack "
              "| loop lag p99 ms: raw aiohttp | no layers | default stack |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["concurrency"]:
        lines.append(
            f"| {r['in_flight']:,} | {_f(r['aiohttp_rss_per_stream_kib'])} | "
            f"{_f(r['llm_async_rss_per_stream_kib'])} | "
            f"{_f(r['llm_async_full_rss_per_stream_kib'])} | "
            f"{_f(r['aiohttp_loop_lag_p99_ms'], 2)} | {_f(r['llm_async_loop_lag_p99_ms'], 2)} | "
            f"{_f(r['llm_async_full_loop_lag_p99_ms'], 2)} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    p = result["prompt"]
    x = [r["bytes"] for r in p]
    for key, label in (("build_us", "build request"), ("bound_us", "cost bound"),
                       ("serialise_us", "serialise"), ("raw_json_us", "raw json.dumps"),
                       ("raw_orjson_us", "raw orjson")):
        axes[0].loglog(x, [r[key] for r in p], marker="o", label=label)
    axes[0].set(title="Prompt size", xlabel="prompt bytes", ylabel="µs")
    s = result["stream"]
    x = [r["chunks"] for r in s]
    for key, label in (("aiohttp_us_per_chunk", "raw aiohttp"),
                       ("llm_async_us_per_chunk", "no layers"),
                       ("llm_async_full_us_per_chunk", "default stack")):
        axes[1].semilogx(x, [r[key] for r in s], marker="o", label=label)
    axes[1].set(title="Stream length", xlabel="chunks per stream", ylabel="CPU µs per chunk")
    c = result["concurrency"]
    x = [r["in_flight"] for r in c]
    for key, label in (("aiohttp_rss_per_stream_kib", "raw aiohttp"),
                       ("llm_async_rss_per_stream_kib", "no layers"),
                       ("llm_async_full_rss_per_stream_kib", "default stack")):
        axes[2].semilogx(x, [r[key] for r in c], marker="o", label=label)
    axes[2].set(title="Concurrency", xlabel="in-flight streams", ylabel="RSS KiB per stream")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def splice_docs(table: str, png: bool) -> None:
    text = DOCS.read_text(encoding="utf-8")
    body = (f"{BEGIN}\n\n" + ("![scaling curves](scaling.png)\n\n" if png else "")
            + table + f"\n{END}")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + body + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## How costs grow\n\n" + body + "\n"
    DOCS.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and counts")
    parser.add_argument("--docs", action="store_true", help="rewrite the docs section too")
    args = parser.parse_args(argv)
    h.pin_client()
    if args.quick:
        sizes = [1 << 10, 100 << 10, 1 << 20]
        lengths, total, levels = [20, 500], 2_000, [1, 64, 256]
    else:
        sizes = [1 << 10, 10 << 10, 100 << 10, 1 << 20, 10 << 20]
        lengths, total, levels = [20, 200, 1_000, 5_000], 40_000, [1, 16, 128, 512, 2_048]
    started = time.time()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": h.machine(),
        "prompt": prompt_sizes(sizes),
        "stream": stream_lengths(lengths, total),
        "concurrency": concurrency(levels),
    }
    result["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    table = markdown(result)
    (RESULTS / "scaling.md").write_text(table, encoding="utf-8")
    png = plot(result, RESULTS / "scaling.png")
    if png and args.docs:
        (DOCS.parent / "scaling.png").write_bytes((RESULTS / "scaling.png").read_bytes())
    if args.docs:
        splice_docs(table, png)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
