"""Import time and resident memory: llm_async against aiohttp and the peers.

::

    python benchmarks/imports.py            # 5 fresh interpreters per row, medians
    python benchmarks/imports.py --runs 9

Each row runs in fresh interpreters (pinned to core 0): the time of its import statement(s), the
resident memory right after, and the resident memory after one chat request against the embedded
server (which runs in its own process). The budget: a constructed llm_async client costs at most
1.2× the import time of aiohttp and at most 10 MiB of memory on top of it. A missing peer is
skipped. llm_async's bytecode is compiled first, as installing a wheel does (the peers are
installed, so theirs is).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

if "_harness" not in sys.modules:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

KEY = "sk-imports-0123456789"

#: name -> (import code (timed), code making one request with `base` (the server root URL)).
ROWS: dict[str, tuple[str, str]] = {
    "aiohttp": (
        "import aiohttp",
        "async def go():\n"
        "    async with aiohttp.ClientSession() as s:\n"
        "        async with s.post(base + '/v1/chat/completions', json={'model': 'm', "
        "'messages': [{'role': 'user', 'content': 'hi'}]}) as r:\n"
        "            await r.json()\n"
        "asyncio.run(go())",
    ),
    "llm_async (bare import)": ("import llm_async", ""),
    "llm_async (client, no layers)": (
        "from llm_async import AsyncLLMClient\n"
        f"client = AsyncLLMClient(provider='openai', api_key={KEY!r}, "
        "base_url='http://127.0.0.1:9/v1', layers=[])",
        "async def go():\n"
        f"    async with AsyncLLMClient(provider='openai', api_key={KEY!r}, "
        "base_url=base + '/v1', layers=[]) as c:\n"
        "        await c.chat(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}])\n"
        "asyncio.run(go())",
    ),
    "llm_async (default stack)": (
        "from llm_async import AsyncLLMClient, Settings\n"
        f"client = AsyncLLMClient(provider='openai', api_key={KEY!r}, "
        "base_url='http://127.0.0.1:9/v1', settings=Settings())",
        "async def go():\n"
        f"    async with AsyncLLMClient(provider='openai', api_key={KEY!r}, "
        "base_url=base + '/v1', settings=Settings()) as c:\n"
        "        await c.chat(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}])\n"
        "asyncio.run(go())",
    ),
    "openai": (
        f"import openai\nclient = openai.AsyncOpenAI(api_key={KEY!r}, "
        "base_url='http://127.0.0.1:9/v1')",
        "async def go():\n"
        f"    async with openai.AsyncOpenAI(api_key={KEY!r}, base_url=base + '/v1') as c:\n"
        "        await c.chat.completions.create(model='gpt-4o-mini', "
        "messages=[{'role': 'user', 'content': 'hi'}])\n"
        "asyncio.run(go())",
    ),
    "anthropic": (
        f"import anthropic\nclient = anthropic.AsyncAnthropic(api_key={KEY!r})",
        "async def go():\n"
        f"    async with anthropic.AsyncAnthropic(api_key={KEY!r}, base_url=base) as c:\n"
        "        await c.messages.create(model='claude-3-5-haiku-latest', max_tokens=64, "
        "messages=[{'role': 'user', 'content': 'hi'}])\n"
        "asyncio.run(go())",
    ),
    "litellm": (
        "import litellm",
        "async def go():\n"
        "    await litellm.acompletion(model='openai/gpt-4o-mini', api_base=base + '/v1', "
        f"api_key={KEY!r}, messages=[{{'role': 'user', 'content': 'hi'}}])\n"
        "asyncio.run(go())",
    ),
}

_PROBE = """
import os, sys, time, json
def rss():
    with open('/proc/self/statm', 'rb') as fh:
        return int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
base = {base!r}
rss0 = rss()
t0 = time.perf_counter()
try:
{timed}
except ImportError as exc:
    print(json.dumps({{"skip": str(exc)}}))
    sys.exit(0)
elapsed = time.perf_counter() - t0
rss1 = rss()
import asyncio
rss2 = None
if {do_request!r}:
{request}
    import threading
    deadline = time.monotonic() + 120
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # first-use work in background threads (a tokenizer) belongs to it
    rss2 = rss()
print(json.dumps({{"import_s": elapsed, "rss_start": rss0, "rss_import": rss1,
                  "rss_request": rss2}}))
"""


def _indent(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines()) or "    pass"


def probe(timed: str, request: str, base: str, with_request: bool) -> dict[str, Any]:
    code = _PROBE.format(base=base, timed=_indent(timed), do_request=bool(with_request and request),
                         request=_indent(request))
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(h.ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(h.ROOT), timeout=300, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"skip": f"failed: {out.stderr.strip().splitlines()[-1:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(runs: int, base: str) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name, (timed, request) in ROWS.items():
        samples = []
        for i in range(runs):
            res = probe(timed, request, base, with_request=(i == 0))
            if "skip" in res:
                table[name] = {"skip": res["skip"]}
                break
            samples.append(res)
        else:
            table[name] = {
                "import_ms": h.median([s["import_s"] * 1e3 for s in samples]),
                "rss_import_mib": h.median([s["rss_import"] / 2**20 for s in samples]),
                "rss_start_mib": h.median([s["rss_start"] / 2**20 for s in samples]),
                "rss_request_mib": (samples[0]["rss_request"] / 2**20
                                    if samples[0]["rss_request"] else float("nan")),
            }
        print(f"# {name}: {table[name]}", file=sys.stderr)
    return table


def render(table: dict[str, dict[str, Any]]) -> str:
    floor = table.get("aiohttp", {})
    lines = ["| what | import ms | ×aiohttp | RSS after import MiB | +MiB vs aiohttp | "
             "RSS after one request MiB |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in table.items():
        if "skip" in row:
            lines.append(f"| {name} | skipped: {row['skip']} | | | | |")
            continue
        ratio = row["import_ms"] / floor["import_ms"] if floor.get("import_ms") else float("nan")
        extra = row["rss_import_mib"] - floor.get("rss_import_mib", float("nan"))
        req = row["rss_request_mib"]
        lines.append(f"| {name} | {row['import_ms']:.0f} | {ratio:.2f}× | "
                     f"{row['rss_import_mib']:.1f} | {extra:+.1f} | "
                     f"{'–' if req != req else f'{req:.1f}'} |")
    lines += ["", "Budget: a constructed llm_async client ≤ 1.2× aiohttp's import time and "
              "≤ +10 MiB.", ""]
    for name in ("llm_async (client, no layers)", "llm_async (default stack)"):
        row = table.get(name, {})
        if "import_ms" not in row or "import_ms" not in floor:
            continue
        ratio = row["import_ms"] / floor["import_ms"]
        extra = row["rss_import_mib"] - floor["rss_import_mib"]
        verdict = "met" if ratio <= 1.2 and extra <= 10 else "MISSED"
        lines.append(f"* {name}: {ratio:.2f}× import time, {extra:+.1f} MiB: **{verdict}**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Import time and memory vs aiohttp and the peers.")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    h.pin_client()
    # An installed package carries its bytecode (pip compiles it at install time), as the
    # peers in site-packages do. Without it, a source tree run with PYTHONDONTWRITEBYTECODE
    # set would compile every llm_async module on each import and time the compiler.
    compileall.compile_dir(str(h.ROOT / "llm_async"), quiet=1)
    with h.ServerProcess(reply_words=20) as server:
        table = measure(args.runs, server.url)
    report = render(table)
    print(report)
    if not args.no_write:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "imports.md").write_text(report + "\n", encoding="utf-8")
        (out / "imports.json").write_text(json.dumps({"machine": h.machine(), "rows": table},
                                                     indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
