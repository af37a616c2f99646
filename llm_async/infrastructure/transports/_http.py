"""The free-standing parts of the HTTP boundary that :class:`~.base.HTTPTransport` uses: the
exception groups it tells apart, the checks of headers and base URLs, the proxy of the
environment, the walk of an exception's causes, the size of a chunk's text, the draining of a
finished stream and the time left before a deadline."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Mapping
from typing import Any

import aiohttp
import aiohttp.http_exceptions
from yarl import URL

from ...errors import ConfigurationError, InvalidRequestError
from ...types import ChatChunk
from ._proxy import env_proxy

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover
    from async_timeout import timeout as _timeout

__all__ = [
    "_DECOMPRESS_TOO_LARGE",
    "_FILLED_FIELDS",
    "_NOT_SENT",
    "_PARSE_ERRORS",
    "_caused_by",
    "_check_base_url",
    "_drain",
    "_env_proxy",
    "_text_size",
    "_timeout",
    "check_headers",
]

#: Failures that prove no connection was made, so no byte of the request reached the provider.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
#: What a provider's parse hook raises on a body of the wrong shape; mapped to ProtocolError.
_PARSE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError,
                 RecursionError)
#: aiohttp's error for a compressed body that inflates past its per-read limit (3.13.3+).
_DECOMPRESS_TOO_LARGE: tuple[type[BaseException], ...] = tuple(
    cls for cls in (getattr(aiohttp.http_exceptions, "DecompressSizeError", None),)
    if isinstance(cls, type))
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")


def check_headers(headers: Mapping[str, str], *, field: str,
                  error: type[InvalidRequestError] | type[ConfigurationError] = InvalidRequestError
                  ) -> None:
    """Reject header names that are not HTTP tokens and values with CR, LF or NUL (which would
    split the request), naming the offending header; values are never shown."""
    for name, value in headers.items():
        where = f"{field}[{name!r}]" if isinstance(name, str) else field
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            message = f"{field}: {name!r} is not a valid HTTP header name"
        elif not isinstance(value, str):
            message = f"{where} must be a str, got {type(value).__name__}"
        elif _BAD_HEADER_VALUE.search(value):
            message = f"{where} contains a CR, LF or NUL character"
        else:
            continue
        if error is ConfigurationError:
            raise ConfigurationError(message, variable=where)
        raise InvalidRequestError(message, field=where)


def _check_base_url(base_url: str) -> None:
    try:
        url = URL(base_url)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"base_url {base_url!r} is not a valid URL: {exc}",
                                 variable="base_url") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url must be an absolute http:// or https:// URL with a host, got {base_url!r}",
            variable="base_url")


def _env_proxy(url: str) -> dict[str, Any]:
    """Session options for the proxy the environment sets for ``url`` (see :mod:`._proxy`).
    Read once per session, unlike aiohttp's ``trust_env``, which also looks up ``.netrc`` in a
    worker thread on every request."""
    return env_proxy(url)


#: The fields of a response that the transport fills in after the provider's hook parsed it.
_FILLED_FIELDS = frozenset({"latency", "request_id", "id", "provider", "requested_model"})


def _caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _text_size(chunk: ChatChunk) -> int:
    size = len(chunk.delta) if chunk.delta else 0
    for call in chunk.tool_calls:
        if call.arguments:
            size += len(call.arguments)
    return size



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


