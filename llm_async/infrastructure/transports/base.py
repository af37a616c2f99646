"""The HTTP transport base: the innermost handler, owning nothing but HTTP and the wire format.

A provider subclass supplies four things: the URL and headers of a call, the JSON payload
(``build_payload``), the parse of a unary answer (``parse_response``) and a stateful parser that
turns stream events into chunks (``stream_parser``). Two optional hooks cover providers whose
credentials depend on the request or are fetched asynchronously (``sign``, enabled by
``signs_requests``: SigV4, token providers) and whose streams are not SSE
(``stream_decoder``: a binary event framing decoded into the same :class:`SSEEvent` tuples).
Everything else lives here once: the shared ``aiohttp.ClientSession`` and its tuned connector,
the four timeouts, the caps on what a response may make us hold in memory, the mapping of every
foreign error to :mod:`llm_async.errors`, and connection release on every exit path of a stream
(end, error, ``break``, cancellation).

What the boundary guarantees:

* **A key goes only to its own origin.** Redirects are never followed (a 3xx answer is a
  :class:`~llm_async.errors.RedirectError` naming its ``Location``); the client key and every
  credential header of a call (``extra_headers``) are registered as secrets, so no error,
  pickle, log line or span shows them.
* **Bad input fails before anything is sent**: a header value with CR, LF or NUL, a header name
  that is not an HTTP token, a body that cannot be encoded as JSON — each an
  :class:`~llm_async.errors.InvalidRequestError` naming the field; a ``base_url`` that is not an
  absolute http(s) URL is a :class:`~llm_async.errors.ConfigurationError`.
* **Bounded memory.** A unary body may hold at most ``max_response_bytes`` once decompressed
  (counted on every read, whatever the ``Content-Length`` says); a stream at most
  ``max_stream_bytes`` in total and ``max_stream_text`` characters of text and tool-call
  arguments. Past a cap the call fails with :class:`~llm_async.errors.ResponseTooLargeError`
  (wrapped in a :class:`~llm_async.errors.StreamError` once chunks were delivered).
* **Timeouts as documented**: ``first_chunk`` runs from sending until the first event that
  carries content (a chunk for the caller), ``idle`` between two events that carry data after
  it; comments (``: keep-alive``), ``ping`` events and content-free events before the first
  chunk (a role-only delta) extend neither.
* **No content in errors unless asked**: with ``capture_content=False`` (the default) a provider
  error that echoes the prompt has the echoed text replaced by ``[content]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncGenerator, Mapping
from ssl import SSLContext
from typing import Any, ClassVar, Protocol

import aiohttp
from yarl import URL

from ... import _json
from ...context import CallContext
from ...errors import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    LLMError,
    ProtocolError,
    RedirectError,
    ResponseTooLargeError,
    error_from_response,
    register_header_secrets,
    register_secret,
    rewrite_error_text,
)
from ...types import ChatChunk, ChatRequest, ChatResponse, Timeout, build_request
from ..sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent
from ._http import (
    _DECOMPRESS_TOO_LARGE as _DECOMPRESS_TOO_LARGE,
    _FILLED_FIELDS,
    _NOT_SENT,
    _PARSE_ERRORS as _PARSE_ERRORS,
    _caused_by as _caused_by,
    _check_base_url,
    _env_proxy,
    check_headers,
)
from ._proxy import env_proxy
from ._scrub import _prompt_texts, scrub_content as scrub_content
from ._stream import stream_attempt
from ._sync import run_blocking, session_loop
from ._watch import Watch

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_STREAM_BYTES",
    "DEFAULT_MAX_STREAM_TEXT",
    "DEFAULT_TIMEOUT",
    "HTTPTransport",
    "StreamDecoder",
    "StreamParser",
    "check_headers",
]

DEFAULT_TIMEOUT = Timeout()
#: Cap on a unary response body, decompressed.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Cap on everything one stream may send, decompressed (events, comments, pings).
DEFAULT_MAX_STREAM_BYTES = 64 * 1024 * 1024
#: Cap on the text and tool-call arguments one stream may deliver, in characters.
DEFAULT_MAX_STREAM_TEXT = 16 * 1024 * 1024


class StreamDecoder(Protocol):
    """Turns the bytes of a stream into events, incrementally (``end`` at end of input)."""

    def feed(self, chunk: bytes) -> list[SSEEvent]: ...

    def end(self) -> list[SSEEvent]: ...


class StreamParser(Protocol):
    """Turns the SSE events of one stream into chunks; ``done`` once the stream has completed.

    ``end()`` is asked when the body ends before ``done``: the last chunks when what was read
    is a complete answer whose terminator the server left out (many servers end after the
    finish chunk without ``[DONE]``), ``None`` when the stream was cut.
    """

    done: bool

    def feed(self, event: SSEEvent) -> list[ChatChunk]: ...

    def end(self) -> list[ChatChunk] | None: ...


class HTTPTransport:
    """Base of the aiohttp transports. Subclasses set ``provider`` and ``default_base_url``.

    ``max_response_bytes``, ``max_stream_bytes`` and ``max_stream_text`` bound what one response
    may make the process hold (see the module docstring); ``capture_content=True`` lets provider
    errors keep the prompt text they echo.
    """

    provider: ClassVar[str] = "http"
    default_base_url: ClassVar[str] = ""
    #: Response headers that carry the provider's request id, in order of preference.
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "request-id")
    #: SSE event names that only keep the connection alive: they re-arm no timeout.
    keepalive_events: ClassVar[frozenset[str]] = frozenset({"ping"})
    #: The environment variables an unset API key and base URL come from ("" for none).
    env_api_key: ClassVar[str] = ""
    env_base_url: ClassVar[str] = ""
    #: Whether :meth:`sign` must run before every request is sent (set per class or instance).
    signs_requests: bool = False

    def __init__(
        self,
        api_key: str | aiohttp.ClientSession | None = None,
        base_url: str | None = None,
        *,
        timeout: float | Timeout | None = None,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 256,
        max_connections_per_host: int = 0,
        keepalive_timeout: float = 30.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
        max_stream_text: int = DEFAULT_MAX_STREAM_TEXT,
        capture_content: bool = False,
        session: aiohttp.ClientSession | None = None,
        ssl: bool | SSLContext = True,
        trust_env: bool = True,
    ) -> None:
        if isinstance(api_key, aiohttp.ClientSession):  # Transport(session), key from the env
            if session is not None:
                raise TypeError(f"{type(self).__name__}() got two aiohttp sessions")
            api_key, session = None, api_key
        if api_key is None and self.env_api_key:
            api_key = os.environ.get(self.env_api_key)
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError(
                f"{type(self).__name__}() takes an API key (str) or an aiohttp.ClientSession as "
                f"its first argument, got {type(api_key).__name__}")
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(f"session must be an aiohttp.ClientSession, got "
                            f"{type(session).__name__}")
        self._api_key = api_key
        register_secret(api_key)
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        _check_base_url(self.base_url)
        self.timeout = Timeout.coerce(timeout, DEFAULT_TIMEOUT)
        self.headers = dict(headers or {})
        check_headers(self.headers, field="headers", error=ConfigurationError)
        register_header_secrets(self.headers)
        for name, value in (("max_response_bytes", max_response_bytes),
                            ("max_event_bytes", max_event_bytes),
                            ("max_stream_bytes", max_stream_bytes),
                            ("max_stream_text", max_stream_text)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}",
                                         variable=name)
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.keepalive_timeout = keepalive_timeout
        self.max_response_bytes = max_response_bytes
        self.max_event_bytes = max_event_bytes
        self.max_stream_bytes = max_stream_bytes
        self.max_stream_text = max_stream_text
        self.capture_content = capture_content
        #: Certificate checks of the connections this transport opens (``ssl=`` of the
        #: connector): ``True``, ``False`` or an ``ssl.SSLContext``.
        self.ssl = ssl
        #: Use the proxy the environment sets for ``base_url`` (``HTTPS_PROXY`` /
        #: ``HTTP_PROXY`` / ``ALL_PROXY``, unless ``NO_PROXY`` names the host; credentials
        #: from its URL or ``.netrc``), read when the session is made.
        self.trust_env = trust_env
        if trust_env and session is None:
            env_proxy(self.base_url)  # a proxy that cannot be used fails here, not mid-call
        self._session = session
        self._owns_session = session is None
        self._client_timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    # -- provider hooks -------------------------------------------------------------------

    def url(self, request: ChatRequest) -> str | URL:
        """The URL of a call: a string, or a :class:`yarl.URL` built with ``encoded=True`` when
        its percent-encoding must reach the wire untouched (a signed path)."""
        raise NotImplementedError

    def stream_url(self, request: ChatRequest) -> str | URL:
        """The URL of a streamed call (the unary one unless the provider streams elsewhere)."""
        return self.url(request)

    def auth_headers(self) -> dict[str, str]:
        return {}

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse_response(self, data: Any, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def stream_parser(self, request: ChatRequest) -> StreamParser:
        raise NotImplementedError

    def stream_decoder(self) -> StreamDecoder:
        """The decoder of a stream's bytes into events (SSE unless the provider frames its
        streams otherwise)."""
        return SSEDecoder(self.max_event_bytes)

    async def sign(self, url: str, headers: dict[str, str], body: bytes) -> None:
        """Add the credentials of one request to ``headers`` (only called when
        ``signs_requests``): a signature over the URL, headers and body, or a token fetched
        asynchronously. Raises an :class:`~llm_async.errors.LLMError` when it cannot; nothing
        has been sent then."""

    def map_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """Map an error status and body to a typed error (providers refine this)."""
        return error_from_response(status, body, headers=headers, provider=self.provider,
                                   request_id=self._request_id(headers))

    # -- session ----------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one ``ClientSession`` of this transport, created on first use in the running loop."""
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections_per_host,
                keepalive_timeout=self.keepalive_timeout,
                ttl_dns_cache=300,
                enable_cleanup_closed=sys.version_info < (3, 12, 7),
                ssl=self.ssl,
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                json_serialize=lambda obj: _json.dumps(obj).decode(),
                **(_env_proxy(self.base_url) if self.trust_env else {}),
            )
            self._owns_session = True
        return session

    @property
    def connector(self) -> aiohttp.BaseConnector | None:
        """The connection pool (tests check it for leaked connections)."""
        return self._session.connector if self._session is not None else None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    async def __aenter__(self) -> HTTPTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- one call by messages and model: blocking, and awaitable -------------------------------

    def chat_completion(self, messages: list[Any], model: str, **params: Any) -> ChatResponse:
        """A blocking call for synchronous code: ``transport.chat_completion(messages=[...],
        model=...)``. It runs on the loop of the session given to the transport when that loop
        runs in another thread, else on a process-wide background loop (see
        :mod:`~llm_async.infrastructure.transports._sync`). Async code awaits
        :meth:`achat_completion` instead."""
        return run_blocking(self.achat_completion(messages, model, **params),
                            loop=self._blocking_loop(),
                            awaitable=f"{type(self).__name__}.achat_completion")

    async def achat_completion(self, messages: list[Any], model: str,
                               **params: Any) -> ChatResponse:
        """``await transport.achat_completion(messages=[...], model=...)``: one call, no layers."""
        return await self.chat(build_request(model=model, messages=messages, **params),
                               CallContext())

    def close(self) -> None:
        """:meth:`aclose` for synchronous code (a transport used with :meth:`chat_completion`)."""
        session = self._session
        if session is None or session.closed or not self._owns_session:
            self._session = None
            return
        loop = session_loop(session)
        if loop is None or loop.is_closed() or not loop.is_running():
            self._session = None  # its loop is gone; nothing can run its close any more
            return
        run_blocking(self.aclose(), loop=loop, awaitable=f"{type(self).__name__}.aclose")

    def _blocking_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop a blocking call runs on: the session's, else ``None`` (the shared one)."""
        session = self._session
        if session is None or session.closed:
            return None
        loop = session_loop(session)
        if self._owns_session and (loop is None or loop.is_closed() or not loop.is_running()):
            self._session = None  # our own session of a loop that has ended: start afresh
            return None
        return loop

    # -- the handler ----------------------------------------------------------------------

    def _request_id(self, headers: Mapping[str, str]) -> str | None:
        for name in self.request_id_headers:
            value = headers.get(name)
            if value:
                return value
        return None

    def _headers(self, request: ChatRequest) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.auth_headers(), **self.headers}
        extra = request.extra_headers
        if extra:
            check_headers(extra, field="extra_headers")
            register_header_secrets(extra)
            headers.update(extra)
        return headers

    def _prepare(self, request: ChatRequest, *, stream: bool
                 ) -> tuple[bytes, str | URL, dict[str, str]]:
        """The body, URL and headers of one call (to be signed by :meth:`_sign` when
        ``signs_requests``). Input errors are raised here, before the attempt exists: nothing
        was sent, nothing billed."""
        return (self._encode(request, stream=stream),
                self.stream_url(request) if stream else self.url(request),
                self._headers(request))

    async def _sign(self, url: str | URL, headers: dict[str, str], payload: bytes) -> None:
        """Sign one call's headers (:meth:`sign`); a fetched token is a secret too."""
        await self.sign(str(url), headers, payload)
        register_header_secrets(headers)

    def _encode(self, request: ChatRequest, *, stream: bool) -> bytes:
        """The JSON body of a call; a request that cannot be encoded fails before sending."""
        try:
            return _json.dumps(self.build_payload(request, stream=stream))
        except LLMError:
            raise
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidRequestError(
                f"the request cannot be encoded as JSON ({type(exc).__name__}: {exc})",
                field="extra_body" if request.extra_body else "messages") from None

    def _client_timeout(self, timeout: Timeout) -> aiohttp.ClientTimeout:
        # Only the connect timeout is aiohttp's: its sock_read would also cover the wait for the
        # first byte, which is the first_chunk timeout's job. Reads are timed by our own timers.
        ct = self._client_timeouts.get(timeout.connect)
        if ct is None:
            ct = self._client_timeouts[timeout.connect] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeout.connect)
        return ct

    def _too_large(self, what: str, cap: int, resp: aiohttp.ClientResponse | None
                   ) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"{what} exceeded the {cap}-byte cap", provider=self.provider,
            status=resp.status if resp is not None else None,
            request_id=self._request_id(resp.headers) if resp is not None else None)

    def _map_exception(self, exc: BaseException, phase: str, timeout: Timeout) -> LLMError:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return APITimeoutError(f"connect timed out after {timeout.connect}s",
                                   phase="connect", provider=self.provider)
        if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
            limit = getattr(timeout, phase, None)
            return APITimeoutError(f"{phase.replace('_', ' ')} timeout ({limit}s) expired",
                                   phase=phase, provider=self.provider)
        if isinstance(exc, aiohttp.ClientPayloadError):
            if _DECOMPRESS_TOO_LARGE and _caused_by(exc, _DECOMPRESS_TOO_LARGE):
                return ResponseTooLargeError(
                    f"a compressed response inflated past aiohttp's limit: {exc}",
                    provider=self.provider)
            return APIConnectionError(f"connection broke mid-response: {exc}",
                                      provider=self.provider)
        if isinstance(exc, aiohttp.ClientResponseError):
            return ProtocolError(f"malformed HTTP response: {exc.message}", provider=self.provider)
        return APIConnectionError(f"{type(exc).__name__}: {exc}", provider=self.provider)

    async def _read_body(self, resp: aiohttp.ClientResponse, watch: Watch) -> bytes:
        """The (decompressed) body, counted as it is read: ``Content-Length`` is trusted only
        for an uncompressed body. A body still arriving is read under ``watch``'s deadline,
        moved ``idle`` seconds on by each piece (never past the total deadline)."""
        length = resp.content_length
        cap = self.max_response_bytes
        content = resp.content
        if (length is not None and length <= cap and content.is_eof()
                and not resp.headers.get("Content-Encoding")):
            return await resp.read()  # all of it is here: nothing to wait for
        parts: list[bytes] = []
        size = 0
        while True:
            data = content.read_nowait()
            if not data:
                watch.enter()
                try:
                    data = await content.readany()
                finally:
                    watch.leave()
            if not data:
                break
            size += len(data)
            if size > cap:
                raise self._too_large("response body", cap, resp)
            parts.append(data)
            watch.progressed()
        return b"".join(parts)

    def _error_from(self, resp: aiohttp.ClientResponse, raw: bytes) -> LLMError:
        body: Any
        try:
            body = _json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return self.map_error(resp.status, body, resp.headers)

    def _redirect_error(self, resp: aiohttp.ClientResponse) -> RedirectError:
        location = resp.headers.get("Location")
        return RedirectError(
            f"the provider answered HTTP {resp.status} redirecting to {location!r}; redirects "
            "are not followed (check base_url)", location=location, provider=self.provider,
            status=resp.status, request_id=self._request_id(resp.headers), retryable=False)

    def _without_content(self, error: LLMError, request: ChatRequest) -> None:
        """Replace, in place, any prompt text ``error`` echoes, unless content capture is on."""
        if not self.capture_content:
            sources = list(_prompt_texts(request.messages))
            if sources:
                rewrite_error_text(error, lambda text: scrub_content(text, sources))

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        try:
            return await self._chat(request, ctx)
        except LLMError as err:
            self._without_content(err, request)
            raise

    async def _chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        timeout = request.timeout or self.timeout
        payload, url, headers = self._prepare(request, stream=False)
        if self.signs_requests:
            await self._sign(url, headers, payload)
        attempt = ctx.begin_attempt(self.provider, request.model)
        started = time.perf_counter()
        # aiohttp times the connect; one watch times the rest: first_chunk until the response
        # headers, then idle between pieces of the body, and total throughout.
        loop = asyncio.get_running_loop()
        watch = Watch.for_attempt(loop, timeout)
        deadline = watch.deadline
        phase = "first_chunk"
        try:
            attempt.sent = True  # from here on the body may reach the provider
            watch.enter()
            async with self.session.post(
                url, data=payload, headers=headers,
                timeout=self._client_timeout(timeout), allow_redirects=False,
            ) as resp:
                watch.leave()
                phase = "idle"
                watch.progressed()
                ctx.response_headers = response_headers = resp.headers
                if 300 <= resp.status < 400:
                    raise self._redirect_error(resp)
                raw = await self._read_body(resp, watch)
                if resp.status >= 400:
                    raise self._error_from(resp, raw)
        except LLMError as exc:
            attempt.error = exc
            raise
        except _NOT_SENT as exc:  # no connection was made: nothing reached the provider
            attempt.sent = False
            attempt.error = err = self._map_exception(exc, "first_chunk", timeout)
            raise err from exc
        except asyncio.CancelledError as exc:
            if not watch.timed_out():
                raise
            expired = "total" if deadline is not None and loop.time() >= deadline else phase
            attempt.error = err = self._map_exception(asyncio.TimeoutError(), expired, timeout)
            raise err from exc
        except asyncio.TimeoutError as exc:
            expired = "total" if deadline is not None and loop.time() >= deadline else phase
            attempt.error = err = self._map_exception(exc, expired, timeout)
            raise err from exc
        except (aiohttp.ClientError, OSError) as exc:
            attempt.error = err = self._map_exception(exc, phase, timeout)
            raise err from exc
        finally:
            watch.leave()
            watch.close()
        try:
            data = _json.loads(raw)
        except ValueError as exc:
            attempt.error = err = ProtocolError(
                f"response body is not JSON: {raw[:80]!r}", provider=self.provider,
                status=resp.status, request_id=self._request_id(response_headers))
            raise err from exc
        try:
            response = self.parse_response(data, request)
        except LLMError as exc:
            attempt.error = exc
            raise
        except _PARSE_ERRORS as exc:  # a provider hook tripped over a malformed body
            attempt.error = err = ProtocolError(
                f"malformed response body ({type(exc).__name__}: {exc})",
                provider=self.provider, status=resp.status,
                request_id=self._request_id(response_headers))
            raise err from exc
        # Written straight into the fresh response (pydantic's __setattr__ is the slow way to
        # fill in fields the transport owns).
        fields = response.__dict__
        fields["latency"] = time.perf_counter() - started
        fields["request_id"] = request_id = attempt.request_id = self._request_id(
            response_headers)
        if request_id and not fields["id"]:
            fields["id"] = request_id  # the provider's answers carry no id (Bedrock)
        fields["provider"] = self.provider
        fields["requested_model"] = request.model
        response.__pydantic_fields_set__.update(_FILLED_FIELDS)
        attempt.usage = fields["usage"]
        return response

    def stream(self, request: ChatRequest,
               ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        return stream_attempt(self, request, ctx)
