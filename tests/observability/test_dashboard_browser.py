"""The live dashboard in a real headless Chromium, on a client with the default pipeline: every
panel shows a known workload (an open breaker of the client itself, an unpriced model, budgets,
spend per user and project, failures by root cause, recent calls), then keeps refreshing under
concurrent load. Keeps a screenshot in tests/artifacts/.

Needs Debian's ``chromium`` and the ``playwright`` Python package (driving that binary; no
browser download). Skipped locally when either is missing; a failure in CI (``CI`` set).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llm_async import AsyncLLMClient, CircuitBreakerOpenError, LLMError, ServerError
from llm_async.application.circuit_breaker import CircuitBreakerConfig
from llm_async.application.cost_manager import BudgetConfig, CostManager
from llm_async.observability import DashboardServer, Observability
from llm_async.testing import Fault, MockProviderServer

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard.png"
API_KEY = "sk-observability-test-key-0123456789"
MESSAGES = [{"role": "user", "content": "Summarise the quarterly report in three lines"}]
PRICED = "gpt-4o-mini"
UNPRICED = "house-model-without-a-price"
FAILING = "gpt-4o"
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


def _money(value: Decimal | float) -> str:
    """The page's format: 4 decimals, 6 below one cent."""
    value = Decimal(str(value))
    return f"${value:.6f}" if value != 0 and abs(value) < Decimal("0.01") else f"${value:.4f}"


class Workload:
    """A client with the default pipeline (tracing, cost, breaker...) on the embedded server."""

    def __init__(self, client: AsyncLLMClient, server: MockProviderServer) -> None:
        self.client = client
        self.server = server
        self.cost_by_user: dict[str, Decimal] = {}
        self.priced_cost = Decimal(0)
        self.tokens = [0, 0]
        self.rejection: CircuitBreakerOpenError | None = None

    async def call(self, model: str, user: str, project: str, *, stream: bool = False) -> None:
        who = {"user_id": user, "project_id": project}
        if stream:
            async with self.client.stream(model=model, messages=MESSAGES, **who) as chunks:
                reply = await chunks.get_final_response()
        else:
            reply = await self.client.chat(model=model, messages=MESSAGES, **who)
        assert reply.usage is not None
        self.tokens[0] += reply.usage.input_tokens
        self.tokens[1] += reply.usage.output_tokens
        if reply.cost is not None:
            self.priced_cost += reply.cost
            self.cost_by_user[user] = self.cost_by_user.get(user, Decimal(0)) + reply.cost

    async def known(self) -> None:
        """14 calls: 8 priced (2 streamed), 3 unpriced, 2 server errors that open the client's
        breaker for FAILING, and 1 call that breaker rejects."""
        for _ in range(6):
            await self.call(PRICED, "alice", "search")
        for _ in range(2):
            await self.call(PRICED, "bob", "search", stream=True)
        for _ in range(3):
            await self.call(UNPRICED, "alice", "support")
        self.server.add_fault(Fault(status=500, times=None, model=FAILING))
        for _ in range(2):
            with pytest.raises(ServerError):
                await self.call(FAILING, "carol", "search")
        with pytest.raises(CircuitBreakerOpenError) as info:
            await self.call(FAILING, "carol", "search")
        self.rejection = info.value

    async def load(self, worker: int, stop: asyncio.Event) -> int:
        """Calls in a loop until ``stop``: priced, unpriced and rejected ones."""
        made = 0
        models = (PRICED, UNPRICED, FAILING)
        while not stop.is_set():
            with contextlib.suppress(LLMError):
                await self.call(models[(made + worker) % 3], "dave", "load",
                                stream=made % 4 == 0)
            made += 1
        return made


async def test_dashboard_shows_every_panel_under_load(otel: Otel) -> None:
    async_playwright = _require_browser()
    obs = Observability(recent_calls=20)
    manager = CostManager()
    manager.set_budget("daily", BudgetConfig(limit=Decimal("5"), hard_limit=False))
    manager.set_budget("alice-monthly", BudgetConfig(limit=Decimal("2"), period="monthly",
                                                      user_id="alice"))
    async with MockProviderServer(reply_words=12) as server, AsyncLLMClient(
            provider="openai", api_key=API_KEY, base_url=server.base_url,
            observability=obs, tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider, cost_manager=manager, retry_config=None,
            # Unpriced calls under alice's hard budget are sent on purpose (the panel shows them).
            cost_options={"unknown_price": "allow"},
            circuit_breaker_config=CircuitBreakerConfig(failure_threshold=2,
                                                        timeout=600.0)) as client:
        work = Workload(client, server)
        await work.known()
        async with DashboardServer(obs, interval=0.2) as dashboard, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                problems: list[str] = []
                page.on("console", lambda m: problems.append(f"console error: {m.text}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
                await page.goto(dashboard.url, wait_until="load")
                await page.wait_for_function(
                    "document.getElementById('total-requests').textContent === '14'",
                    timeout=15_000)
                await check_panels(page, work, manager)

                stop = asyncio.Event()
                workers = [asyncio.create_task(work.load(i, stop)) for i in range(4)]
                try:
                    await check_under_load(page)
                    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
                    await page.screenshot(path=str(ARTIFACT), full_page=True)
                finally:
                    stop.set()
                    made = await asyncio.gather(*workers)
                assert sum(made) > 0
                assert problems == []
            finally:
                await browser.close()
    assert ARTIFACT.stat().st_size > 10_000


async def _text(page: Any, selector: str) -> str:
    return str(await page.locator(selector).inner_text()).strip()


async def _cells(page: Any, selector: str) -> list[str]:
    return [c.strip() for c in await page.locator(selector).all_inner_texts()]


async def check_panels(page: Any, work: Workload, manager: CostManager) -> None:
    assert await _text(page, "#status") == "live"
    # Totals: 3 of 14 calls failed (2 server errors, 1 breaker rejection).
    assert await _text(page, "#failed-requests") == "3"
    assert await _text(page, "#error-rate") == "21.4%"
    assert await _text(page, "#input-tokens") == f"{work.tokens[0]:,}"
    assert await _text(page, "#output-tokens") == f"{work.tokens[1]:,}"
    assert await _text(page, "#streams") == "2"
    assert work.priced_cost > 0
    # Some calls had no price: the total says so instead of counting them as free.
    assert await _text(page, "#total-cost") == _money(work.priced_cost) + " + unpriced"
    assert await _text(page, "#unpriced-note") == "· 3 unpriced calls"

    # Cost by model: the priced model with its cost, the unpriced one marked, never $0.
    amount = "#cost-by-model .row[data-model='{}'] .amount"
    assert await _text(page, amount.format(PRICED)) == _money(work.priced_cost)
    assert await _text(page, amount.format(UNPRICED)) == "unpriced"
    assert "unpriced" in (await page.locator(amount.format(UNPRICED)).get_attribute("class"))
    cells = await _cells(page, f"#models-table tr[data-name='{UNPRICED}'] td")
    assert cells[:4] == [UNPRICED, "3", "0", "0.0%"] and cells[8] == "unpriced"
    cells = await _cells(page, f"#models-table tr[data-name='{FAILING}'] td")
    assert cells[:4] == [FAILING, "3", "3", "100.0%"] and cells[8] == "–"

    # The client's own breakers (not the process registry's), per provider and model.
    row = await _cells(page, f"#breakers-table tr[data-name='openai/{FAILING}'] td")
    assert row[1:7] == ["openai", FAILING, "open", "3", "2", "1"]
    assert row[7].endswith(" s")  # time until a probe is let in
    assert row[8].startswith("server_error: ")
    assert "Summarise" not in row[8]  # capture is off
    row = await _cells(page, f"#breakers-table tr[data-name='openai/{PRICED}'] td")
    assert row[1:5] == ["openai", PRICED, "closed", "8"]
    assert not await page.locator("#no-breakers").is_visible()

    # Failures by root cause; the rejection is counted under the failure behind it when the
    # breaker chains it, and separately in any case.
    errors = {}
    for row_cells in await page.locator("#errors-table tbody tr").all():
        name, count = [c.strip() for c in await row_cells.locator("td").all_inner_texts()]
        errors[name] = count
    assert work.rejection is not None
    if work.rejection.__cause__ is not None:
        assert errors == {"server_error": "3"}
    else:
        assert errors == {"circuit_open": "1", "server_error": "2"}
    assert await _text(page, "#rejections-note") == "1"

    # Budgets: spend, limit, forecast.
    daily = manager.get_budget_status("daily")
    row = await _cells(page, "#budgets-table tr[data-name='daily'] td")
    assert row[:5] == ["daily", "global", "daily", _money(daily.spent), "$5.0000"]
    # The forecast runs with the clock (spend × period / time elapsed), so the page's figure,
    # rendered a moment before this one and rounded (see _money), may differ in its last digit.
    assert daily.forecast is not None and row[6].startswith("$")
    shown = Decimal(row[6].split()[0].lstrip("$"))
    last_digit = Decimal("0.000001") if daily.forecast < Decimal("0.01") else Decimal("0.0001")
    assert abs(shown - daily.forecast) <= last_digit + daily.forecast / 1000
    assert row[7] == "ok"
    row = await _cells(page, "#budgets-table tr[data-name='alice-monthly'] td")
    assert row[:5] == ["alice-monthly", "user:alice", "monthly",
                       _money(work.cost_by_user["alice"]), "$2.0000"]

    # Spend per user and project.
    assert await _cells(page, "#users-table tr[data-name='alice'] td") == [
        "alice", _money(work.cost_by_user["alice"])]
    assert await _cells(page, "#users-table tr[data-name='bob'] td") == [
        "bob", _money(work.cost_by_user["bob"])]
    assert await _cells(page, "#projects-table tr[data-name='search'] td") == [
        "search", _money(work.priced_cost)]

    # Recent calls, newest first: the rejection, then the two server errors...
    rows = page.locator("#recent-table tbody tr")
    assert await rows.count() == 14
    first = await _cells(page, "#recent-table tbody tr:nth-child(1) td")
    assert first[1:4] == [FAILING, "openai", "server_error" if work.rejection.__cause__
                          else "circuit_open"]
    unpriced = await _cells(page, "#recent-table tbody tr:nth-child(4) td")
    assert unpriced[1] == UNPRICED and unpriced[3] == "ok" and unpriced[7] == "unpriced"
    priced = await _cells(page, "#recent-table tbody tr:nth-child(14) td")
    assert priced[1] == PRICED and priced[7].startswith("$") and priced[4].endswith(" ms")
    # Capture is off: no content column, no prompt text anywhere on the page.
    assert "no-content" in (await page.locator("#recent-table").get_attribute("class"))
    assert "Summarise" not in await page.content()

    # Charts are drawn: a latency line and throughput bars.
    assert await page.locator("#latency-chart path.avg").count() == 1
    assert await page.locator("#throughput-chart rect.ok").count() >= 1
    assert await page.locator("#throughput-chart rect.err").count() >= 1


async def check_under_load(page: Any) -> None:
    """The page keeps refreshing while four workers send calls; the recent list stays bounded
    and the breaker stays open, rejecting more calls."""
    await page.wait_for_function(
        "Number(document.getElementById('total-requests').textContent.replace(/,/g, '')) > 60",
        timeout=30_000)
    await page.wait_for_function(
        "Number(document.querySelector(\"#breakers-table tr[data-name='openai/gpt-4o']\")"
        ".children[6].textContent) > 3", timeout=30_000)
    assert await page.locator("#recent-table tbody tr").count() == 20
    row = await _cells(page, f"#breakers-table tr[data-name='openai/{FAILING}'] td")
    assert row[3] == "open"
    assert await _text(page, "#status") == "live"


async def test_recent_calls_show_content_only_for_a_capturing_client(otel: Otel) -> None:
    async_playwright = _require_browser()
    obs = Observability()
    async with MockProviderServer(reply_words=6) as server:
        for capture in (False, True):
            async with AsyncLLMClient(provider="openai", api_key=API_KEY,
                                      base_url=server.base_url, observability=obs,
                                      capture_content=capture, cost_manager=CostManager(),
                                      retry_config=None) as client:
                prompt = f"Summarise the report, capture={capture}"
                reply = await client.chat(model=PRICED,
                                          messages=[{"role": "user", "content": prompt}])
        async with DashboardServer(obs, interval=0.2) as dashboard, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.goto(dashboard.url, wait_until="load")
                await page.wait_for_function(
                    "document.querySelectorAll('#recent-table tbody tr').length === 2",
                    timeout=15_000)
                assert "no-content" not in (
                    await page.locator("#recent-table").get_attribute("class") or "")
                assert await page.locator("#recent-table th.content").first.is_visible()
                newest = await _cells(page, "#recent-table tbody tr:nth-child(1) td")
                older = await _cells(page, "#recent-table tbody tr:nth-child(2) td")
                assert newest[8:] == ["Summarise the report, capture=True", reply.content]
                assert older[8:] == ["–", "–"]  # that client did not capture
                assert "capture=False" not in await page.content()
            finally:
                await browser.close()


def test_artifacts_folder_is_ignored_by_git() -> None:
    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    import subprocess

    proc = subprocess.run(["git", "check-ignore", "-q", str(ARTIFACT)], cwd=root)
    assert proc.returncode == 0
