"""The control endpoints of the embedded provider server, under ``/_mock/``.

They let another process program and inspect a running server: queue, list and clear faults
(``/_mock/faults``) and content scripts (``/_mock/scripts``), read the counters
(``/_mock/stats``) and the recorded requests (``/_mock/requests``), reset everything
(``/_mock/reset``) and check liveness (``/_mock/health``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ._content import Script
from ._faults import Fault
from ._state import ServerState
from ._wire import dumps

__all__ = ["ControlEndpoints", "json_response"]

_JSON = "application/json"
T = TypeVar("T")


def json_response(payload: Any, status: int = 200) -> web.Response:
    """A JSON response with ``payload`` encoded compactly."""
    return web.Response(
        body=dumps(payload).encode(), status=status, headers={"Content-Type": _JSON}
    )


def _control_error(message: str, status: int = 400) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return json_response({"error": error}, status)


async def _items(request: web.Request, build: Callable[[Any], T],
                 errors: tuple[type[Exception], ...]) -> list[T] | web.Response:
    """The objects a control request's body describes (one JSON object or a list of them), or
    the 400 answer saying what was wrong."""
    try:
        payload = json.loads(await request.read())
    except ValueError:
        return _control_error("body must be a JSON object (or a list of objects)")
    items = payload if isinstance(payload, list) else [payload]
    try:
        return [build(item) for item in items]
    except errors as exc:
        return _control_error(str(exc))


class ControlEndpoints:
    """The ``/_mock/`` routes over one server's state; ``reset`` resets the whole server."""

    def __init__(self, state: ServerState, reset: Callable[[], None]) -> None:
        self.state = state
        self._reset = reset

    def register(self, app: web.Application) -> None:
        """Add the routes to ``app``."""
        router = app.router
        router.add_post("/_mock/faults", self._add_faults)
        router.add_get("/_mock/faults", self._list_faults)
        router.add_delete("/_mock/faults", self._clear_faults)
        router.add_post("/_mock/scripts", self._add_scripts)
        router.add_get("/_mock/scripts", self._list_scripts)
        router.add_delete("/_mock/scripts", self._clear_scripts)
        router.add_get("/_mock/stats", self._stats)
        router.add_post("/_mock/reset", self._reset_all)
        router.add_get("/_mock/requests", self._requests)
        router.add_get("/_mock/health", self._health)

    async def _add_faults(self, request: web.Request) -> web.StreamResponse:
        faults = await _items(request, Fault.from_dict, (ValueError,))
        if isinstance(faults, web.Response):
            return faults
        for fault in faults:
            self.state.faults.add(fault)
        return json_response({"added": len(faults), "pending": len(self.state.faults)})

    async def _list_faults(self, request: web.Request) -> web.StreamResponse:
        pending = [
            {**fault.to_dict(), "remaining": remaining}
            for fault, remaining in self.state.faults.pending()
        ]
        return json_response({"faults": pending})

    async def _clear_faults(self, request: web.Request) -> web.StreamResponse:
        return json_response({"cleared": self.state.faults.clear()})

    async def _add_scripts(self, request: web.Request) -> web.StreamResponse:
        scripts = await _items(request, Script.from_dict, (ValueError, TypeError))
        if isinstance(scripts, web.Response):
            return scripts
        for script in scripts:
            self.state.scripts.add(script)
        return json_response({"added": len(scripts), "pending": len(self.state.scripts)})

    async def _list_scripts(self, request: web.Request) -> web.StreamResponse:
        pending = [{**script.to_dict(), "remaining": remaining}
                   for script, remaining in self.state.scripts.pending()]
        return json_response({"scripts": pending})

    async def _clear_scripts(self, request: web.Request) -> web.StreamResponse:
        return json_response({"cleared": self.state.scripts.clear()})

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.state.counters.snapshot())

    async def _reset_all(self, request: web.Request) -> web.StreamResponse:
        self._reset()
        return json_response({"ok": True})

    async def _requests(self, request: web.Request) -> web.StreamResponse:
        return json_response({"requests": [record.to_dict() for record in self.state.requests]})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return json_response({"ok": True})
