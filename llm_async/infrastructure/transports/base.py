"""The HTTP transport base: the innermost handler, owning nothing but HTTP and the wire format.

A provider subclass supplies four things: the URL and headers of a call, the JSON payload
(``build_payload``), the parse of a unary answer (``parse_response``) and a stateful parser that
turns stream events into chunks (``stream_parser``). Two optional hooks cover providers whose
credentials depend on the request or are fetched asynchronously (``sign``, enabled by
``signs_requests``: SigV4, token providers) and whose streams are not SSE
(``stream_decoder``: a binary event framing decoded into the same :class:`SSEEvent` tuples).
Everything else lives here once: the shared
``aiohttp.ClientSession`` and its tuned connector, the four timeouts, the response-size cap, the
mapping of every foreign error to :mod:`llm_async.errors`, and connection release on every exit
path of a stream (end, error, ``break``, cancellation).
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
    LLMError,
    ProtocolError,
    ResponseTooLargeError,
    StreamError,
    error_from_response,
    register_secret,
)
from ...types import ChatChunk, ChatRequest, ChatResponse, Timeout, build_request
from ..sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent
from ._sync import run_blocking, session_loop

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover
    from async_timeout import timeout as _timeout

__all__ = ["DEFAULT_TIMEOUT", "HTTPTransport", "StreamDecoder", "StreamParser"]

DEFAULT_TIMEOUT = Timeout()
# aiohttp's sock_read timeout (told apart from the total and connect ones since 3.10).
_SOCKET_TIMEOUT = aiohttp.SocketTimeoutError
#: Failures that prove no connection was made, so no byte of the request reached the provider.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: What a provider's parse hook raises on a body of the wrong shape; mapped to ProtocolError.
_PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError,
                 RecursionError)


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



def _env_proxy(url: str) -> dict[str, Any]:
    """Session options for the proxy the environment sets for ``url`` (none when ``NO_PROXY``
    names its host). Read once per session, unlike aiohttp's ``trust_env``, which also looks up
    ``.netrc`` in a worker thread on every request."""
    from aiohttp.helpers import get_env_proxy_for_url

    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:
        return {}
    return {"proxy": proxy, "proxy_auth": auth}

class HTTPTransport:
    """Base of the aiohttp transports. Subclasses set ``provider`` and ``default_base_url``."""

    provider: ClassVar[str] = "http"
    default_base_url: ClassVar[str] = ""
    #: Response headers that carry the provider's request id, in order of preference.
    request_id_headers: ClassVar[tuple[str, ...]] = ("x-request-id", "request-id")
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
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        self.timeout = Timeout.coerce(timeout, DEFAULT_TIMEOUT)
        self.headers = dict(headers or {})
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.keepalive_timeout = keepalive_timeout
        self.max_response_bytes = max_response_bytes
        self.max_event_bytes = max_event_bytes
        #: Certificate checks of the connections this transport opens (``ssl=`` of the
        #: connector): ``True``, ``False`` or an ``ssl.SSLContext``.
        self.ssl = ssl
        #: Use the proxy the environment sets for ``base_url`` (``HTTPS_PROXY`` /
        #: ``HTTP_PROXY``, unless ``NO_PROXY`` names the host), read when the session is made.
        self.trust_env = trust_env
        self._session = session
        self._owns_session = session is None
        self._client_timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        self._unary_timeouts: dict[Timeout, aiohttp.ClientTimeout] = {}

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
        if request.extra_headers:
            headers.update(request.extra_headers)
        return headers

    def _unary_timeout(self, timeout: Timeout) -> aiohttp.ClientTimeout:
        ct = self._unary_timeouts.get(timeout)
        if ct is None:
            ct = self._unary_timeouts[timeout] = aiohttp.ClientTimeout(
                total=timeout.total, sock_connect=timeout.connect, sock_read=timeout.first_chunk)
        return ct

    def _client_timeout(self, timeout: Timeout) -> aiohttp.ClientTimeout:
        # Only the connect timeout is aiohttp's: its sock_read would also cover the wait for the
        # first byte, which is the first_chunk timeout's job. Reads are timed by our own timers.
        ct = self._client_timeouts.get(timeout.connect)
        if ct is None:
            ct = self._client_timeouts[timeout.connect] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeout.connect)
        return ct

    def _map_exception(self, exc: BaseException, phase: str, timeout: Timeout) -> LLMError:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return APITimeoutError(f"connect timed out after {timeout.connect}s",
                                   phase="connect", provider=self.provider)
        if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
            limit = getattr(timeout, phase, None)
            return APITimeoutError(f"{phase.replace('_', ' ')} timeout ({limit}s) expired",
                                   phase=phase, provider=self.provider)
        if isinstance(exc, aiohttp.ClientPayloadError):
            return APIConnectionError(f"connection broke mid-response: {exc}",
                                      provider=self.provider)
        if isinstance(exc, aiohttp.ClientResponseError):
            return ProtocolError(f"malformed HTTP response: {exc.message}", provider=self.provider)
        return APIConnectionError(f"{type(exc).__name__}: {exc}", provider=self.provider)

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        length = resp.content_length
        if length is not None and length <= self.max_response_bytes:
            return await resp.read()
        parts: list[bytes] = []
        size = 0
        while True:
            data = await resp.content.readany()
            if not data:
                break
            size += len(data)
            if size > self.max_response_bytes:
                raise ResponseTooLargeError(
                    f"response body exceeded the {self.max_response_bytes}-byte cap",
                    provider=self.provider, status=resp.status,
                    request_id=self._request_id(resp.headers),
                )
            parts.append(data)
        return b"".join(parts)

    def _error_from(self, resp: aiohttp.ClientResponse, raw: bytes) -> LLMError:
        body: Any
        try:
            body = _json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return self.map_error(resp.status, body, resp.headers)

    async def chat(self, request: ChatRequest, ctx: CallContext) -> ChatResponse:
        timeout = request.timeout or self.timeout
        payload = _json.dumps(self.build_payload(request, stream=False))
        url = self.url(request)
        sent_headers = self._headers(request)
        if self.signs_requests:
            await self.sign(str(url), sent_headers, payload)
        attempt = ctx.begin_attempt(self.provider, request.model)
        started = time.perf_counter()
        # aiohttp's own timer enforces all three: connect, first_chunk (the wait for data, as
        # sock_read) and total; its exception type says which one expired.
        try:
            attempt.sent = True  # from here on the body may reach the provider
            async with self.session.post(
                url, data=payload, headers=sent_headers, timeout=self._unary_timeout(timeout),
            ) as resp:
                ctx.response_headers = resp.headers
                raw = await self._read_body(resp)
                if resp.status >= 400:
                    raise self._error_from(resp, raw)
                headers = resp.headers
        except LLMError as exc:
            attempt.error = exc
            raise
        except _NOT_SENT as exc:  # no connection was made: nothing reached the provider
            attempt.sent = False
            attempt.error = err = self._map_exception(exc, "first_chunk", timeout)
            raise err from exc
        except _SOCKET_TIMEOUT as exc:
            attempt.error = err = self._map_exception(exc, "first_chunk", timeout)
            raise err from exc
        except asyncio.TimeoutError as exc:
            attempt.error = err = self._map_exception(exc, "total", timeout)
            raise err from exc
        except (aiohttp.ClientError, OSError) as exc:
            attempt.error = err = self._map_exception(exc, "first_chunk", timeout)
            raise err from exc
        try:
            data = _json.loads(raw)
        except ValueError as exc:
            attempt.error = err = ProtocolError(
                f"response body is not JSON: {raw[:80]!r}", provider=self.provider,
                status=resp.status, request_id=self._request_id(headers))
            raise err from exc
        try:
            response = self.parse_response(data, request)
        except LLMError as exc:
            attempt.error = exc
            raise
        except _PARSE_ERRORS as exc:  # a provider hook tripped over a malformed body
            attempt.error = err = ProtocolError(
                f"malformed response body ({type(exc).__name__}: {exc})",
                provider=self.provider, status=resp.status, request_id=self._request_id(headers))
            raise err from exc
        response.latency = time.perf_counter() - started
        response.request_id = attempt.request_id = self._request_id(headers)
        if not response.id and response.request_id:
            response.id = response.request_id  # the provider's answers carry no id (Bedrock)
        response.provider = self.provider
        response.requested_model = request.model
        attempt.usage = response.usage
        return response

    async def stream(self, request: ChatRequest,
                     ctx: CallContext) -> AsyncGenerator[ChatChunk, None]:
        timeout = request.timeout or self.timeout
        payload = _json.dumps(self.build_payload(request, stream=True))
        url = self.stream_url(request)
        sent_headers = self._headers(request)
        if self.signs_requests:
            await self.sign(str(url), sent_headers, payload)
        attempt = ctx.begin_attempt(self.provider, request.model)
        loop = asyncio.get_running_loop()
        deadline = None if timeout.total is None else loop.time() + timeout.total
        delivered = 0
        phase = "first_chunk"
        resp: aiohttp.ClientResponse | None = None
        completed = False
        try:
            try:
                async with _timeout(_limit(timeout.first_chunk, deadline, loop)):
                    attempt.sent = True  # from here on the body may reach the provider
                    try:
                        resp = await self.session.post(
                            url, data=payload, headers=sent_headers,
                            timeout=self._client_timeout(timeout),
                        )
                    except _NOT_SENT:
                        attempt.sent = False
                        raise
                    ctx.response_headers = resp.headers
                    attempt.request_id = self._request_id(resp.headers)
                    if resp.status >= 400:
                        raise self._error_from(resp, await self._read_body(resp))
                decoder = self.stream_decoder()
                parser = self.stream_parser(request)
                content = resp.content
                while not parser.done:
                    # What is already buffered needs no timer; only a real wait is timed.
                    data = content.read_nowait()
                    if not data:
                        wait = timeout.first_chunk if delivered == 0 else timeout.idle
                        async with _timeout(_limit(wait, deadline, loop)):
                            data = await content.readany()
                    events = decoder.feed(data) if data else decoder.end()
                    for event in events:
                        try:
                            chunks = parser.feed(event)
                        except LLMError as exc:  # an error event inside the stream
                            if exc.request_id is None:
                                exc.request_id = attempt.request_id
                            raise
                        except _PARSE_ERRORS as exc:  # a malformed event tripped the parser
                            raise ProtocolError(
                                f"malformed stream event ({type(exc).__name__}: {exc})",
                                provider=self.provider) from exc
                        for chunk in chunks:
                            delivered += 1
                            phase = "idle"
                            if chunk.usage is not None:
                                attempt.usage = chunk.usage
                            yield chunk
                    if not data:
                        break
                tail = None if parser.done else parser.end()
                if not parser.done and tail is None:
                    raise APIConnectionError("the stream ended before it was complete",
                                             provider=self.provider,
                                             request_id=self._request_id(resp.headers))
                for chunk in tail or ():
                    delivered += 1
                    yield chunk
                completed = await _drain(content)
            except LLMError:
                raise
            except asyncio.TimeoutError as exc:
                expired = "total" if deadline is not None and loop.time() >= deadline else phase
                raise self._map_exception(exc, expired, timeout) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise self._map_exception(exc, phase, timeout) from exc
        except LLMError as err:
            attempt.error = err
            if delivered:
                raise StreamError(f"stream failed after {delivered} chunks: {err.message}",
                                  cause=err, chunks_received=delivered) from err
            raise
        finally:
            if resp is not None:
                if completed:
                    resp.release()
                else:
                    resp.close()


async def _drain(content: aiohttp.StreamReader) -> bool:
    """Read what follows the last event (the chunked terminator) so the connection is reused."""
    if content.is_eof():
        return True
    try:
        async with _timeout(1.0):
            while await content.readany():
                pass
    except (asyncio.TimeoutError, aiohttp.ClientError, OSError):
        return False
    return True


def _limit(phase_timeout: float | None, deadline: float | None,
           loop: asyncio.AbstractEventLoop) -> float | None:
    """Seconds until the earlier of the phase timeout and the total deadline."""
    if deadline is None:
        return phase_timeout
    remaining = max(0.0, deadline - loop.time())
    return remaining if phase_timeout is None else min(phase_timeout, remaining)
