"""The live dashboard in a real headless Chromium: it loads without console errors and shows
the numbers of a known workload, then refreshes live. Keeps a screenshot in tests/artifacts/.

Needs Debian's ``chromium`` and the ``playwright`` Python package (driving that binary; no
browser download). Skipped locally when either is missing; a failure in CI (``CI`` set).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncGenerator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llm_async import AsyncLLMClient, ChatChunk, ChatRequest, ChatResponse, Layer, ServerError
from llm_async.context import CallContext
from llm_async.observability import DashboardServer, Observability
from llm_async.testing import Fault, MockProviderServer

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard.png"
API_KEY = "sk-test-observability-key-0123456789"
PRICES = {"gpt-4o": Decimal("0.0125"), "gpt-4o-mini": Decimal("0.0005")}
MESSAGES = [{"role": "user", "content": "Summarise the report"}]
Otel = Any


def _require_browser() -> Any:
    problems = []
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        problems.append(f"{CHROMIUM} (Debian package 'chromium')")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        problems.append("the 'playwright' Python package")
        async_playwright = None
    if problems:
        message = "the browser test needs " + " and ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return async_playwright


class FixedPrice(Layer):
    """Prices each call by model, as the cost layer would (ctx.cost, response.cost)."""

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        response = await self.inner.chat(request, ctx)
        ctx.cost = response.cost = PRICES[request.model]
        return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        async for chunk in self.inner.stream(request, ctx):
            yield chunk
        ctx.cost = PRICES[request.model]


def _money(value: Decimal) -> str:
    """The page's format: 4 decimals, 6 below one cent."""
    return f"${value:.6f}" if value < Decimal("0.01") else f"${value:.4f}"


async def test_dashboard_shows_a_known_workload(otel: Otel) -> None:
    async_playwright = _require_browser()
    from llm_async.application.circuit_breaker import get_circuit_breaker, remove_circuit_breaker

    obs = Observability()
    breaker = get_circuit_breaker("dashboard-browser-test")
    breaker.force_open()
    input_tokens = output_tokens = 0
    try:
        async with MockProviderServer(reply_words=12) as server:
            layers = [otel.layer(obs, endpoints={"openai": server.base_url}), FixedPrice]
            async with AsyncLLMClient(provider="openai", api_key=API_KEY,
                                      base_url=server.base_url, layers=layers) as client:
                replies = []
                for _ in range(6):
                    replies.append(await client.chat(model="gpt-4o-mini", messages=MESSAGES))
                for _ in range(3):
                    replies.append(await client.chat(model="gpt-4o", messages=MESSAGES))
                for _ in range(2):
                    async with client.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
                        replies.append(await stream.get_final_response())
                server.add_fault(Fault(status=500, times=2, model="gpt-4o"))
                for _ in range(2):
                    with pytest.raises(ServerError):
                        await client.chat(model="gpt-4o", messages=MESSAGES)
                for reply in replies:
                    input_tokens += reply.usage.input_tokens
                    output_tokens += reply.usage.output_tokens
                assert output_tokens == 11 * 12

                async with DashboardServer(obs, interval=0.2) as dashboard, \
                        async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                                       args=LAUNCH_ARGS)
                    try:
                        page = await browser.new_page(viewport={"width": 1400, "height": 900})
                        problems: list[str] = []
                        page.on("console", lambda m: problems.append(f"console error: {m.text}")
                                if m.type == "error" else None)
                        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                        page.on("requestfailed",
                                lambda r: problems.append(f"request failed: {r.url}"))
                        await page.goto(dashboard.url, wait_until="load")
                        await page.wait_for_function(
                            "document.getElementById('total-requests').textContent === '13'",
                            timeout=15_000)
                        await check_numbers(page, input_tokens, output_tokens)
                        # Live: one more call shows up without reloading the page.
                        await client.chat(model="gpt-4o", messages=MESSAGES)
                        await page.wait_for_function(
                            "document.getElementById('total-requests').textContent === '14'",
                            timeout=15_000)
                        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
                        await page.screenshot(path=str(ARTIFACT), full_page=True)
                        assert problems == []
                    finally:
                        await browser.close()
    finally:
        remove_circuit_breaker("dashboard-browser-test")
    assert ARTIFACT.stat().st_size > 10_000


async def check_numbers(page: Any, input_tokens: int, output_tokens: int) -> None:
    async def text(selector: str) -> str:
        return (await page.locator(selector).inner_text()).strip()

    assert await text("#status") == "live"
    assert await text("#failed-requests") == "2"
    assert await text("#error-rate") == "15.4%"  # 2 of 13
    assert await text("#total-tokens") == f"{input_tokens + output_tokens:,}"
    assert await text("#input-tokens") == f"{input_tokens:,}"
    assert await text("#output-tokens") == f"{output_tokens:,}"
    total = 3 * PRICES["gpt-4o"] + 8 * PRICES["gpt-4o-mini"]
    assert await text("#total-cost") == _money(total) == "$0.0415"
    assert await text("#streams") == "2"
    assert (await text("#avg-latency")).endswith(" ms")
    assert (await text("#ttft")).endswith(" ms")
    # Cost by model, largest first.
    bars = page.locator("#cost-by-model .row")
    assert await bars.count() == 2
    assert await bars.nth(0).get_attribute("data-model") == "gpt-4o"
    assert await text("#cost-by-model .row[data-model='gpt-4o'] .amount") == "$0.0375"
    assert await text("#cost-by-model .row[data-model='gpt-4o-mini'] .amount") == "$0.004000"
    # Per-model table: requests, errors, error rate, cost.
    cells = await page.locator("#models-table tr[data-name='gpt-4o'] td").all_inner_texts()
    assert cells[:4] == ["gpt-4o", "5", "2", "40.0%"] and cells[8] == "$0.0375"
    cells = await page.locator("#models-table tr[data-name='gpt-4o-mini'] td").all_inner_texts()
    assert cells[:4] == ["gpt-4o-mini", "8", "0", "0.0%"]
    cells = await page.locator("#providers-table tr[data-name='openai'] td").all_inner_texts()
    assert cells[1] == "13"
    # Breaker states and error types.
    row = page.locator("#breakers-table tr[data-name='dashboard-browser-test'] td")
    assert (await row.all_inner_texts())[1] == "open"
    assert await page.locator("#errors-table tr[data-name='server_error'] td").all_inner_texts() \
        == ["server_error", "2"]
    # Charts are drawn: a latency line and throughput bars.
    assert await page.locator("#latency-chart path.avg").count() == 1
    assert await page.locator("#throughput-chart rect.ok").count() >= 1
    assert await page.locator("#throughput-chart rect.err").count() >= 1


def test_artifacts_folder_is_ignored_by_git() -> None:
    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    import subprocess

    proc = subprocess.run(["git", "check-ignore", "-q", str(ARTIFACT)], cwd=root)
    assert proc.returncode == 0
