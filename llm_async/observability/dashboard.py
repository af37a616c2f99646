"""A live dashboard page served by aiohttp: latency and throughput over time, cost by model,
error rate, breaker states — refreshed by polling a JSON endpoint.

Three ways to run it::

    app = create_dashboard_app()                    # a stand-alone aiohttp application
    setup_dashboard(user_app, path="/llm-dashboard")  # mounted on your own aiohttp app
    await serve_dashboard("127.0.0.1", 8050)        # served until cancelled

Routes (relative to where it is mounted): ``/`` the page, ``/api/data`` the JSON of
:meth:`Observability.get_dashboard_data`, ``/static/dashboard.js`` and ``/static/dashboard.css``.
The page loads nothing from the network but these (no CDN), so it works offline.

``python -m llm_async.observability.dashboard --demo`` (and the ``llm-async dashboard`` command)
serves it next to the embedded provider server and drives demo traffic through a client.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import importlib.resources
import json
import random
from collections.abc import Sequence
from functools import lru_cache
from types import TracebackType

from aiohttp import web

from ..errors import LLMError
from .facade import Observability, get_observability

__all__ = [
    "DashboardServer",
    "create_dashboard_app",
    "main",
    "run_demo_traffic",
    "serve_dashboard",
    "setup_dashboard",
]

OBSERVABILITY_KEY = web.AppKey("llm_async_observability", Observability)
INTERVAL_KEY = web.AppKey("llm_async_dashboard_interval", float)

_CONTENT_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@lru_cache(maxsize=8)
def _asset(name: str) -> str:
    return (importlib.resources.files(__package__) / "static" / name).read_text("utf-8")


def _observability(request: web.Request) -> Observability:
    obs = request.app.get(OBSERVABILITY_KEY)
    return obs if obs is not None else get_observability()


async def _index(request: web.Request) -> web.Response:
    router = request.app.router
    page = _asset("dashboard.html")
    values = {
        "DATA_URL": str(router["llm_dashboard_data"].url_for()),
        "SCRIPT_URL": str(router["llm_dashboard_asset"].url_for(name="dashboard.js")),
        "STYLE_URL": str(router["llm_dashboard_asset"].url_for(name="dashboard.css")),
        "INTERVAL_MS": str(int(request.app[INTERVAL_KEY] * 1000)),
    }
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", html.escape(value, quote=True))
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


async def _data(request: web.Request) -> web.Response:
    data = _observability(request).get_dashboard_data()
    return web.Response(text=json.dumps(data, allow_nan=False), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _CONTENT_TYPES.get(name)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.Response(text=_asset(name), content_type=content_type)


def create_dashboard_app(observability: Observability | None = None, *,
                         interval: float = 2.0) -> web.Application:
    """The dashboard as an aiohttp application.

    ``observability`` defaults to the process-wide one (looked up per request); ``interval`` is
    the page's refresh period in seconds (a ``?interval=`` query parameter, in milliseconds,
    overrides it in the browser).
    """
    if not interval > 0:
        raise ValueError("interval must be > 0")
    app = web.Application()
    if observability is not None:
        app[OBSERVABILITY_KEY] = observability
    app[INTERVAL_KEY] = float(interval)
    app.router.add_get("/", _index, name="llm_dashboard_index")
    app.router.add_get("/api/data", _data, name="llm_dashboard_data")
    app.router.add_get("/static/{name}", _static, name="llm_dashboard_asset")
    return app


def setup_dashboard(app: web.Application, path: str = "/llm-dashboard",
                    observability: Observability | None = None, *,
                    interval: float = 2.0) -> web.Application:
    """Mount the dashboard on ``app`` under ``path``; returns the mounted sub-application.

    ``path`` without the trailing slash redirects to it, so relative links keep working.
    """
    prefix = "/" + path.strip("/")
    if prefix == "/":
        raise ValueError("mount the dashboard under a path, such as /llm-dashboard")

    async def _redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(prefix + "/")

    app.router.add_get(prefix, _redirect)
    sub = create_dashboard_app(observability, interval=interval)
    app.add_subapp(prefix, sub)
    return sub


class DashboardServer:
    """The dashboard on its own HTTP server: ``async with DashboardServer(obs) as s: s.url``.

    ``port=0`` picks a free port. ``url`` is the page's address.
    """

    def __init__(self, observability: Observability | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, interval: float = 2.0) -> None:
        self.app = create_dashboard_app(observability, interval=interval)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``http://host:port/`` of the running server."""
        if self._runner is None:
            raise RuntimeError("the dashboard server is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> DashboardServer:
        """Start serving (idempotent)."""
        if self._runner is not None:
            return self
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or ()
        for sock in sockets:
            self.port = int(sock.getsockname()[1])
            break
        return self

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> DashboardServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = self.url if self._runner is not None else "stopped"
        return f"DashboardServer({state})"


async def serve_dashboard(host: str = "127.0.0.1", port: int = 8050,
                          observability: Observability | None = None, *,
                          interval: float = 2.0) -> None:
    """Serve the dashboard until cancelled."""
    async with DashboardServer(observability, host=host, port=port, interval=interval):
        await asyncio.Event().wait()


#: Models the demo traffic spreads over, with their share of the calls.
DEMO_MODELS: tuple[tuple[str, float], ...] = (
    ("gpt-4o-mini", 0.6), ("gpt-4o", 0.3), ("o3-mini", 0.1),
)


async def run_demo_traffic(base_url: str, *, observability: Observability | None = None,
                           rate: float = 5.0, calls: int | None = None,
                           seed: int = 0) -> int:
    """Send demo chat calls (a quarter streamed) to an OpenAI-compatible server at ``base_url``,
    through a client with the default pipeline reporting to ``observability``.

    ``rate`` is calls per second; ``calls`` stops after that many (default: until cancelled).
    Errors the server injects are counted, not raised. Returns the number of calls made.
    """
    from ..client import AsyncLLMClient

    rng = random.Random(seed)
    models = [m for m, _ in DEMO_MODELS]
    weights = [w for _, w in DEMO_MODELS]
    made = 0
    # The default pipeline, so that retries, breakers and costs show up too.
    async with AsyncLLMClient(provider="openai", api_key="sk-demo-key", base_url=base_url,
                              observability=observability) as client:
        while calls is None or made < calls:
            model = rng.choices(models, weights)[0]
            messages = [{"role": "user", "content": f"demo question {made}"}]
            try:
                if rng.random() < 0.25:
                    async with client.stream(model=model, messages=messages) as stream:
                        async for _ in stream:
                            pass
                else:
                    await client.chat(model=model, messages=messages)
            except LLMError:
                pass
            made += 1
            await asyncio.sleep(rng.expovariate(rate))
    return made


async def _demo(host: str, port: int, rate: float, error_rate: float) -> None:
    from ..testing import Fault, MockProviderServer

    obs = get_observability()
    async with MockProviderServer(token_delay=0.01) as server:
        if error_rate > 0:
            server.add_fault(Fault(status=500, probability=error_rate, times=None))
        async with DashboardServer(obs, host=host, port=port) as dashboard:
            print(f"llm_async dashboard: {dashboard.url}  (demo provider at {server.base_url})",
                  flush=True)
            await run_demo_traffic(server.base_url, observability=obs, rate=rate)


def main(argv: Sequence[str] | None = None) -> int:
    """``llm-async dashboard``: serve the dashboard (with ``--demo``, on demo traffic)."""
    parser = argparse.ArgumentParser(prog="llm-async dashboard",
                                     description="Serve the live llm_async dashboard.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on")
    parser.add_argument("--demo", action="store_true",
                        help="start the embedded provider server and send demo traffic")
    parser.add_argument("--rate", type=float, default=5.0, help="demo calls per second")
    parser.add_argument("--error-rate", type=float, default=0.05,
                        help="share of demo calls the provider fails (5xx)")
    args = parser.parse_args(argv)
    try:
        if args.demo:
            asyncio.run(_demo(args.host, args.port, args.rate, args.error_rate))
        else:
            print(f"llm_async dashboard: http://{args.host}:{args.port}/", flush=True)
            asyncio.run(serve_dashboard(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
