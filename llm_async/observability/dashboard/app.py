"""The dashboard as an aiohttp web application: the page, its JSON endpoint and its assets.

Three ways to run it::

    app = create_dashboard_app()                    # a stand-alone aiohttp application
    setup_dashboard(user_app, path="/llm-dashboard")  # mounted on your own aiohttp app
    await serve_dashboard("127.0.0.1", 8050)        # served until cancelled

Routes (relative to where it is mounted): ``/`` the page, ``/api/data`` the JSON of
:meth:`Observability.get_dashboard_data`, ``/static/dashboard.js`` and ``/static/dashboard.css``.
The page loads nothing from the network but these (no CDN), so it works offline.

aiohttp's server side is imported when an application is built, not when this module is.
"""

from __future__ import annotations

import asyncio
import html
import importlib.resources
import json
from functools import lru_cache
from types import TracebackType
from typing import TYPE_CHECKING

from ..facade import Observability, get_observability

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "DashboardServer",
    "create_dashboard_app",
    "serve_dashboard",
    "setup_dashboard",
]


@lru_cache(maxsize=1)
def _keys() -> tuple[web.AppKey[Observability], web.AppKey[float]]:
    """The application keys of the observability and the refresh interval (made once)."""
    from aiohttp import web

    return (web.AppKey("llm_async_observability", Observability),
            web.AppKey("llm_async_dashboard_interval", float))

_CONTENT_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


@lru_cache(maxsize=8)
def _asset(name: str) -> str:
    return (importlib.resources.files(__package__) / "static" / name).read_text("utf-8")


def _observability(request: web.Request) -> Observability:
    obs = request.app.get(_keys()[0])
    return obs if obs is not None else get_observability()


async def _index(request: web.Request) -> web.Response:
    from aiohttp import web

    router = request.app.router
    page = _asset("dashboard.html")
    values = {
        "DATA_URL": str(router["llm_dashboard_data"].url_for()),
        "SCRIPT_URL": str(router["llm_dashboard_asset"].url_for(name="dashboard.js")),
        "STYLE_URL": str(router["llm_dashboard_asset"].url_for(name="dashboard.css")),
        "INTERVAL_MS": str(int(request.app[_keys()[1]] * 1000)),
    }
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", html.escape(value, quote=True))
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


async def _data(request: web.Request) -> web.Response:
    from aiohttp import web

    data = _observability(request).get_dashboard_data()
    return web.Response(text=json.dumps(data, allow_nan=False), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def _static(request: web.Request) -> web.Response:
    from aiohttp import web

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
    from aiohttp import web

    if not interval > 0:
        raise ValueError("interval must be > 0")
    observability_key, interval_key = _keys()
    app = web.Application()
    if observability is not None:
        app[observability_key] = observability
    app[interval_key] = float(interval)
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
    from aiohttp import web

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
        from aiohttp import web

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
