"""The dashboard's aiohttp app: the page, its assets, the JSON endpoint, mounting, serving."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from llm_async.application.cost_manager import CostManager
from llm_async.observability import (
    CallRecord,
    DashboardServer,
    Observability,
    create_dashboard_app,
    serve_dashboard,
    setup_dashboard,
)
from llm_async.observability.dashboard import run_demo_traffic
from llm_async.observability.dashboard.demo import DEMO_PROJECTS, DEMO_USERS
from llm_async.testing import MockProviderServer

HANG = 120.0  # a guard against a hang, never a speed check


def _data_url(page: str) -> str:
    match = re.search(r'data-data-url="([^"]+)"', page)
    assert match, page[:300]
    return match.group(1)


async def test_page_assets_and_data(obs: Observability) -> None:
    obs.record(CallRecord(model="gpt-4o", provider="openai", duration=0.12))
    app = create_dashboard_app(obs, interval=0.5)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/")
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
        assert "{{" not in page
        assert 'data-interval="500"' in page
        assert _data_url(page) == "/api/data"
        for asset, kind in (("/static/dashboard.js", "text/javascript"),
                            ("/static/dashboard.css", "text/css")):
            assert asset in page
            resp = await client.get(asset)
            assert resp.status == 200 and resp.content_type == kind
            assert len(await resp.text()) > 500
        assert (await client.get("/static/../facade.py")).status == 404
        assert (await client.get("/static/secrets.txt")).status == 404
        resp = await client.get("/api/data")
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        data = await resp.json()
        assert data["total_requests"] == 1
        assert data["by_model"]["gpt-4o"]["avg_duration_ms"] == pytest.approx(120.0)


def test_every_element_the_script_updates_is_on_the_page() -> None:
    from importlib.resources import files

    static = files("llm_async.observability.dashboard") / "static"
    page = (static / "dashboard.html").read_text("utf-8")
    script = (static / "dashboard.js").read_text("utf-8")
    ids = set(re.findall(r'(?:setText|\$)\("([a-z0-9-]+)"', script))
    assert len(ids) > 20
    missing = {i for i in ids if f'id="{i}"' not in page}
    assert not missing


async def test_default_observability_is_the_process_wide_one() -> None:
    from llm_async.observability import get_observability

    app = create_dashboard_app()
    before = get_observability().lifetime()["requests"]
    get_observability().record(CallRecord(model="x"))
    async with TestClient(TestServer(app)) as client:
        data = await (await client.get("/api/data")).json()
    assert data["lifetime"]["requests"] == before + 1


async def test_mounted_on_a_user_app(obs: Observability) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/hello", hello)
    sub = setup_dashboard(app, "/llm-dashboard", obs)
    assert isinstance(sub, web.Application)
    obs.record(CallRecord(model="m", duration=0.01))
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/hello")).text() == "hello"
        resp = await client.get("/llm-dashboard", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == "/llm-dashboard/"
        resp = await client.get("/llm-dashboard")
        assert resp.status == 200 and str(resp.url).endswith("/llm-dashboard/")
        page = await resp.text()
        assert _data_url(page) == "/llm-dashboard/api/data"
        assert "/llm-dashboard/static/dashboard.js" in page
        data = await (await client.get("/llm-dashboard/api/data")).json()
        assert data["total_requests"] == 1
    with pytest.raises(ValueError):
        setup_dashboard(web.Application(), "/")
    with pytest.raises(ValueError):
        create_dashboard_app(interval=0)


async def test_dashboard_server_serves_and_stops(obs: Observability) -> None:
    server = DashboardServer(obs)
    with pytest.raises(RuntimeError):
        _ = server.url
    async with server:
        assert server.port > 0 and server.url.endswith(f":{server.port}/")
        async with aiohttp.ClientSession() as session, \
                session.get(server.url + "api/data") as resp:
            assert resp.status == 200
            assert "total_requests" in json.loads(await resp.text())
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{server.port}/api/data")


async def test_serve_dashboard_runs_until_cancelled(obs: Observability) -> None:
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    task = asyncio.create_task(serve_dashboard("127.0.0.1", port, obs))
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + HANG
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    assert resp.status == 200
                    break
            except aiohttp.ClientConnectionError:
                assert time.monotonic() < deadline, "the dashboard did not start"
                await asyncio.sleep(0.002)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_demo_traffic_feeds_the_dashboard(obs: Observability) -> None:
    async with MockProviderServer() as server:
        made = await run_demo_traffic(server.base_url, observability=obs, rate=10_000.0,
                                      calls=12, cost_manager=CostManager())
        assert made == 12 and server.request_count == 12
    data = obs.get_dashboard_data()
    assert data["total_requests"] == 12
    assert set(data["by_model"]) <= {"gpt-4o-mini", "gpt-4o", "o3-mini"}
    assert data["streams"] >= 1
    assert set(data["spend"]["by_user"]) <= set(DEMO_USERS) and data["spend"]["by_user"]
    assert set(data["spend"]["by_project"]) <= set(DEMO_PROJECTS)


def test_main_parses_arguments() -> None:
    from llm_async.observability.dashboard.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
