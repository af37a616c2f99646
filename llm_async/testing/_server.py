"""The embedded mock LLM provider server: an aiohttp application on loopback.

:class:`MockProviderServer` routes every registered dialect's paths
(:data:`llm_async.testing.dialects.DIALECTS`) to one chat handler that counts and records the
request, applies a matching fault, checks the API key, lets the dialect parse the body into the
neutral wire model, generates the reply and returns or streams what the dialect renders.  The
batch endpoints (:mod:`llm_async.testing._batch`) and the ``/_mock/`` control endpoints
(:mod:`llm_async.testing._control`) share its :class:`~llm_async.testing._state.ServerState`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from ._batch import BatchEndpoints
from ._content import Script, enrich
from ._control import ControlEndpoints
from ._counters import BilledRequest, RateLimitWindow, RecordedRequest, redact
from ._delivery import (
    answer_headers,
    drop_connection,
    error_response,
    fault_response,
    gzip_bomb,
    stream_reply,
)
from ._dialect import Dialect
from ._faults import Fault
from ._replies import ReplyGenerator
from ._state import ServerState
from ._wire import (
    ErrorInfo,
    RequestError,
    ResponseContext,
    Usage,
)
from .dialects import DIALECTS

__all__ = ["MockProviderServer"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON = "application/json"


class MockProviderServer:
    """In-process mock LLM provider speaking real HTTP on loopback.

    Serves the OpenAI Chat Completions wire format on ``POST /v1/chat/completions`` and
    ``POST /chat/completions`` with deterministic content, optional rate-limit headers,
    optional API-key enforcement and programmable :class:`~llm_async.testing._faults.Fault`\\ s.
    Control endpoints (``/_mock/faults``, ``/_mock/stats``, ``/_mock/reset``) let other
    processes program it.

    Each chat request is counted and recorded, then: a matching fault is applied (latency,
    reset, error status; stream faults later), then the API key is checked
    (``require_api_key``), then the body is validated (400) and the reply generated — and
    billed (:attr:`billed`), however its delivery ends. ``prompt_tokens="bytes"`` counts
    prompts as UTF-8 bytes, the most a byte-level tokenizer can count.

    Use as ``async with MockProviderServer() as server: ...`` or call :meth:`start` and
    :meth:`close`.  All state lives on the event loop the server was started on.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reply_words: int = 12,
        token_delay: float = 0.0,
        seed: int = 0,
        rate_limit_headers: bool = False,
        require_api_key: str | None = None,
        rpm_limit: int = 10_000,
        tpm_limit: int = 1_000_000,
        prompt_cache_size: int = 4096,
        max_recorded: int = 256,
        shutdown_timeout: float = 1.0,
        prompt_tokens: str = "words",
    ) -> None:
        if reply_words < 0:
            raise ValueError("reply_words must be >= 0")
        if token_delay < 0:
            raise ValueError("token_delay must be >= 0")
        self.host = host
        self.reply_words = reply_words
        self.token_delay = token_delay
        self.seed = seed
        self.rate_limit_headers = rate_limit_headers
        self.shutdown_timeout = shutdown_timeout
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

        self._state = ServerState(
            seed=seed,
            require_api_key=require_api_key,
            generator=ReplyGenerator(
                seed=seed, reply_words=reply_words, cache_size=prompt_cache_size,
                prompt_tokens=prompt_tokens,
            ),
            rate_window=RateLimitWindow(rpm_limit, tpm_limit),
            requests=deque(maxlen=max_recorded),
        )
        #: The chat requests received, newest last (credentials redacted).
        self.requests: deque[RecordedRequest] = self._state.requests
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        #: The provider batch endpoints (OpenAI Files/Batch, Anthropic Message Batches).
        self.batches = BatchEndpoints(self._state)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listening socket and start serving."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port, backlog=2048)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])

    async def close(self) -> None:
        """Stop serving and close every connection (idempotent).

        Chat requests still being answered (slow streams, latency faults) are aborted.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        tasks = [task for task in self._handler_tasks if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.shutdown_timeout)
        await runner.cleanup()

    async def __aenter__(self) -> MockProviderServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when constructed with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL (``url + "/v1"``); clients POST ``{base_url}/chat/completions``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Anthropic base URL (``url``); clients POST ``{anthropic_base_url}/v1/messages``."""
        return self.url

    @property
    def openrouter_base_url(self) -> str:
        """OpenRouter base URL (``url + "/api/v1"``); clients POST
        ``{openrouter_base_url}/chat/completions``."""
        return self.url + "/api/v1"

    @property
    def azure_endpoint(self) -> str:
        """Azure OpenAI endpoint (``url``); clients POST
        ``{azure_endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`` or
        ``{azure_endpoint}/openai/v1/chat/completions``."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """Gemini base URL (``url + "/v1beta"``); clients POST
        ``{gemini_base_url}/models/{model}:generateContent``."""
        return self.url + "/v1beta"

    @property
    def bedrock_base_url(self) -> str:
        """Bedrock Runtime endpoint (``url``); clients POST
        ``{bedrock_base_url}/model/{modelId}/converse``."""
        return self.url

    @property
    def require_api_key(self) -> str | None:
        """The API key every request must present (``None``: any or none)."""
        return self._state.require_api_key

    @require_api_key.setter
    def require_api_key(self, value: str | None) -> None:
        self._state.require_api_key = value

    # -- state --------------------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """Chat requests received (every dialect), including faulted and invalid ones."""
        return self._state.counters.requests

    @property
    def pending_faults(self) -> list[Fault]:
        """Faults still queued, in selection order."""
        return [fault for fault, _ in self._state.faults.pending()]

    def stats(self) -> dict[str, Any]:
        """Counters: requests, by_path, in_flight, max_in_flight, faults_applied, streams, and
        ``billed``: every request billed (model, tokens, how its delivery ended)."""
        return self._state.counters.snapshot()

    @property
    def billed(self) -> list[BilledRequest]:
        """The requests this server billed, as a provider bills: every request whose reply it
        generated (with the real usage, even when it reported another), delivered or not."""
        return list(self._state.counters.billed)

    def add_fault(self, fault: Fault) -> None:
        """Queue ``fault`` (applies to its next ``times`` matching chat requests)."""
        self._state.faults.add(fault)

    def add_script(self, script: Script) -> None:
        """Queue ``script``: its next ``times`` matching replies refuse, cite sources or think
        its words (see :class:`~llm_async.testing.Script`)."""
        self._state.scripts.add(script)

    def clear_scripts(self) -> int:
        """Remove all pending scripts; returns how many were removed."""
        return self._state.scripts.clear()

    def clear_faults(self) -> int:
        """Remove all pending faults; returns how many were removed."""
        return self._state.faults.clear()

    def reset(self) -> None:
        """Clear counters, recorded requests, faults, prompt-cache memory and the rate window,
        and reseed the fault RNG.  Requests in flight keep being counted as in flight."""
        self._state.reset()
        self.batches.reset()

    # -- application --------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for dialect_class in DIALECTS:
            dialect = dialect_class()
            handler = self._chat_handler(dialect)
            for path in dialect.chat_paths:
                app.router.add_post(path, handler)
            models = self._models_handler(dialect)
            for path in dialect.models_paths:
                app.router.add_get(path, models)
        ControlEndpoints(self._state, self.reset).register(app)
        self.batches.register(app)
        return app

    def _chat_handler(self, dialect: Dialect) -> _Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle_chat(request, dialect)

        return handle

    @staticmethod
    def _models_handler(dialect: Dialect) -> _Handler:
        body = dialect.models_body()

        async def handle(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, headers={"Content-Type": _JSON})

        return handle

    # -- chat ---------------------------------------------------------------------------------

    async def _handle_chat(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        path = request.path
        counters = self._state.counters
        number = counters.arrived(path)
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        try:
            return await self._serve_chat(request, dialect, number, path)
        except ConnectionError:
            # The client went away while we were writing; nothing left to send.
            return web.Response(status=499)
        finally:
            counters.finished()
            if task is not None:
                self._handler_tasks.discard(task)

    async def _serve_chat(
        self, request: web.Request, dialect: Dialect, number: int, path: str
    ) -> web.StreamResponse:
        raw = await request.read()
        body: Any
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
            valid_json = False
        else:
            valid_json = True
        state = self._state
        state.requests.append(RecordedRequest(path, redact(request.headers), body, time.time()))
        route = dialect.route(body, request.match_info, request.query)
        model = route.model
        ctx = ResponseContext(
            number=number,
            request_id=f"req_{number:024x}",
            created=int(time.time()),
            model=model or "",
            path=path,
        )

        fault = state.select_fault(model=model, path=path, stream=route.stream)
        if fault is not None:
            if fault.latency > 0:
                await asyncio.sleep(fault.latency)
            if fault.reset:
                drop_connection(request, reset=True)
                return web.Response(status=499)
            if fault.status is not None:
                return fault_response(dialect, ctx, fault, self._window)
            if fault.redirect is not None:
                headers = {**fault.headers, "Location": fault.redirect}
                return web.Response(status=307, headers=headers)
            if fault.gzip_bomb is not None:
                content_type = dialect.stream_content_type if route.stream else _JSON
                headers = {**fault.headers, "Content-Type": content_type,
                           "Content-Encoding": "gzip"}
                body = gzip_bomb(fault.gzip_bomb, stream=route.stream)
                return web.Response(body=body, headers=headers)

        if state.require_api_key is not None:
            key = dialect.api_key(request.headers)
            if key != state.require_api_key:
                message = (
                    "You didn't provide an API key."
                    if key is None
                    else "Incorrect API key provided."
                )
                info = ErrorInfo(message, "authentication_error", "invalid_api_key")
                return error_response(dialect, ctx, 401, info, fault=fault, window=self._window)

        try:
            if not valid_json:
                raise RequestError(
                    "We could not parse the JSON body of your request. The body must be valid JSON."
                )
            chat = dialect.parse_request(body, route)
            reply = state.generator.generate(chat)
            script = state.select_script(model=model, path=path, stream=route.stream)
            reply = enrich(reply, chat, script, state.seed)
        except RequestError as exc:
            info = ErrorInfo(exc.message, exc.error_type, exc.code)
            return error_response(dialect, ctx, exc.status, info, exc.param, fault=fault,
                                  window=self._window)

        # Billed as a provider bills: the reply was generated, whatever happens to its delivery.
        real = reply.usage
        billed = state.counters.bill(BilledRequest(
            number, model or "", path, chat.stream, real.prompt_tokens, real.cached_tokens,
            real.completion_tokens))
        if fault is not None and fault.usage is not None:
            reported = {"prompt_tokens": real.prompt_tokens, "cached_tokens": real.cached_tokens,
                        "completion_tokens": real.completion_tokens, **fault.usage}
            reply = dataclasses.replace(reply, usage=Usage(**reported))
        ctx.response_id = dialect.response_id(ctx, reply)
        tokens = real.total_tokens
        if chat.stream:
            headers = answer_headers(dialect, ctx, dialect.stream_content_type, tokens, fault,
                                     self._window)
            try:
                return await stream_reply(request, dialect, ctx, chat, reply, fault, headers,
                                          billed, token_delay=self.token_delay,
                                          counters=self._state.counters)
            except ConnectionError:
                billed.delivered = "client_gone"
                raise
        headers = answer_headers(dialect, ctx, _JSON, tokens, fault, self._window)
        return web.Response(body=dialect.render_response(ctx, chat, reply), headers=headers)

    @property
    def _window(self) -> RateLimitWindow | None:
        """The rate-limit window whose headers answers carry, when the server sends them."""
        return self._state.rate_window if self.rate_limit_headers else None
