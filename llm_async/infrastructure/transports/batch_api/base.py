"""What every provider batch API shares: the job record and the submit, poll, collect loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import aiohttp
from yarl import URL

from .... import _json
from ...._clock import Clock, system_clock
from ....errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    LLMError,
    ProtocolError,
    ResponseTooLargeError,
)
from ....types import ChatRequest, ChatResponse
from ..base import _DECOMPRESS_TOO_LARGE, _caused_by

if TYPE_CHECKING:
    from ..base import HTTPTransport

__all__ = ["DEFAULT_MAX_RESULTS_BYTES", "BatchJob", "ProviderBatchAPI"]

#: Cap on one downloaded results file, decompressed.
DEFAULT_MAX_RESULTS_BYTES = 256 * 1024 * 1024


@dataclass
class BatchJob:
    """A provider batch job: its ``id``, normalised ``status`` (``in_progress``, ``completed``,
    ``failed``, ``expired``, ``cancelled``) and the provider's last answer in ``raw``."""

    id: str
    provider: str
    status: str
    raw: dict[str, Any] = field(default_factory=dict)
    custom_ids: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in ("completed", "failed", "expired", "cancelled")


class ProviderBatchAPI:
    """Submit, poll, cancel and collect a provider batch job through ``transport``.

    The transport supplies the session, the credentials, the JSON payload of each request
    (``build_payload``) and the parse of each answer (``parse_response``), so a batch line is
    exactly what a direct call would have sent. Polling sleeps on ``clock``.

    The network rules of the transports hold here too: redirects are never followed (a
    :class:`~llm_async.errors.RedirectError` naming the location), a results URL the provider
    names must be on its own origin, every answer is capped once decompressed (JSON answers at
    the transport's ``max_response_bytes``, a results file at ``max_results_bytes``;
    :class:`~llm_async.errors.ResponseTooLargeError` past it), and errors never show the key.
    """

    provider: ClassVar[str] = ""

    def __init__(self, transport: HTTPTransport, *, clock: Clock = system_clock,
                 poll_interval: float = 10.0,
                 max_results_bytes: int = DEFAULT_MAX_RESULTS_BYTES) -> None:
        if not poll_interval > 0:
            raise ConfigurationError("poll_interval must be > 0", variable="poll_interval")
        if isinstance(max_results_bytes, bool) or not isinstance(max_results_bytes, int) \
                or max_results_bytes <= 0:
            raise ConfigurationError(
                f"max_results_bytes must be a positive int, got {max_results_bytes!r}",
                variable="max_results_bytes")
        self.transport = transport
        self.clock = clock
        self.poll_interval = poll_interval
        self.max_results_bytes = max_results_bytes

    # -- HTTP -----------------------------------------------------------------------------

    def _headers(self, content_type: str | None = "application/json") -> dict[str, str]:
        headers = {**self.transport.auth_headers(), **self.transport.headers}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _check_origin(self, url: str) -> None:
        """A URL the provider named (a results file) must be on the provider's own origin:
        the credentials go nowhere else."""
        target, home = URL(url), URL(self.transport.base_url)
        if not target.absolute or target.origin() != home.origin():
            raise ProtocolError(
                f"the provider named {url!r}, which is not on its origin "
                f"{str(home.origin())!r}; the request was not sent (credentials go only to "
                f"the provider's own origin)", provider=self.provider)

    async def _read(self, resp: aiohttp.ClientResponse, cap: int) -> bytes:
        """The (decompressed) body, counted as it is read, at most ``cap`` bytes."""
        parts: list[bytes] = []
        size = 0
        while True:
            data = await resp.content.readany()
            if not data:
                return b"".join(parts)
            size += len(data)
            if size > cap:
                raise ResponseTooLargeError(
                    f"batch API answer exceeded the {cap}-byte cap", provider=self.provider,
                    status=resp.status)
            parts.append(data)

    async def _call(self, method: str, url: str, *, json_body: Any = None,
                    data: Any = None, raw: bool = False) -> Any:
        """One batch API request. Redirects are never followed (a 3xx answer is a
        :class:`~llm_async.errors.RedirectError`); the answer may hold at most the transport's
        ``max_response_bytes`` (``max_results_bytes`` for a results file, ``raw=True``) once
        decompressed, or the call fails with :class:`~llm_async.errors.ResponseTooLargeError`."""
        transport = self.transport
        self._check_origin(url)
        body = _json.dumps(json_body) if json_body is not None else data
        headers = self._headers("application/json" if json_body is not None else None)
        timeout = aiohttp.ClientTimeout(total=transport.timeout.total,
                                        sock_connect=transport.timeout.connect)
        cap = self.max_results_bytes if raw else transport.max_response_bytes
        try:
            async with transport.session.request(method, url, data=body, headers=headers,
                                                  timeout=timeout,
                                                  allow_redirects=False) as resp:
                if 300 <= resp.status < 400:
                    raise transport._redirect_error(resp)
                content = await self._read(resp, cap)
                if resp.status >= 400:
                    try:
                        err_body: Any = _json.loads(content) if content else None
                    except ValueError:
                        err_body = content.decode("utf-8", "replace")
                    raise transport.map_error(resp.status, err_body, resp.headers)
        except LLMError:
            raise
        except asyncio.TimeoutError as exc:
            raise APITimeoutError(f"batch API call timed out: {method} {url}",
                                  provider=self.provider) from exc
        except aiohttp.ClientPayloadError as exc:
            if _DECOMPRESS_TOO_LARGE and _caused_by(exc, _DECOMPRESS_TOO_LARGE):
                raise ResponseTooLargeError(
                    f"a compressed batch API answer inflated past aiohttp's limit: {exc}",
                    provider=self.provider) from exc
            raise APIConnectionError(f"batch API call broke mid-answer: {exc}",
                                     provider=self.provider) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(f"batch API call failed: {type(exc).__name__}: {exc}",
                                     provider=self.provider) from exc
        if raw:
            return content
        try:
            return _json.loads(content)
        except ValueError as exc:
            raise ProtocolError(f"batch API answer is not JSON: {content[:80]!r}",
                                provider=self.provider) from exc

    @staticmethod
    def _jsonl(content: bytes) -> list[dict[str, Any]]:
        lines = []
        for line in content.splitlines():
            if line.strip():
                obj = _json.loads(line)
                if isinstance(obj, dict):
                    lines.append(obj)
        return lines

    # -- the job ------------------------------------------------------------------------

    async def submit(self, requests: Sequence[ChatRequest],
                     custom_ids: Sequence[str] | None = None) -> BatchJob:
        """Create a batch job for ``requests``; ``custom_ids`` name them (default ``"0"``,
        ``"1"``, ...). Raises :class:`InvalidRequestError` if one cannot be sent."""
        raise NotImplementedError

    @staticmethod
    def _ids(requests: Sequence[ChatRequest], custom_ids: Sequence[str] | None) -> list[str]:
        ids = [str(i) for i in range(len(requests))] if custom_ids is None else list(custom_ids)
        if len(ids) != len(requests) or len(set(ids)) != len(ids):
            raise InvalidRequestError("custom_ids must be unique, one per request")
        return ids

    def _id_of(self, job: BatchJob, index: int) -> str:
        return job.custom_ids[index] if index < len(job.custom_ids) else str(index)

    async def retrieve(self, job: BatchJob) -> BatchJob:
        """The job's current status."""
        raise NotImplementedError

    async def cancel(self, job: BatchJob) -> BatchJob:
        """Ask the provider to cancel the job; unfinished requests end as cancelled."""
        raise NotImplementedError

    async def results(self, job: BatchJob,
                      requests: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        """One answer or error per request of a finished job, in order."""
        raise NotImplementedError

    async def wait(self, job: BatchJob, *, timeout: float | None = None) -> BatchJob:
        """Poll until the job has finished (or raise :class:`APITimeoutError` after
        ``timeout`` seconds of the clock)."""
        deadline = None if timeout is None else self.clock.now() + timeout
        while True:
            job = await self.retrieve(job)
            if job.done:
                return job
            if deadline is not None and self.clock.now() + self.poll_interval > deadline:
                raise APITimeoutError(f"batch {job.id} did not finish within {timeout}s",
                                      provider=self.provider)
            await self.clock.sleep(self.poll_interval)

    async def run(self, requests: Sequence[ChatRequest], *,
                  timeout: float | None = None) -> list[ChatResponse | LLMError]:
        """Submit, wait and collect; one answer or error per request, in order. A request the
        provider cannot take (say, a parameter out of its range) gets its typed error and the
        others go on. An unfinished job is cancelled if this fails or is cancelled."""
        out: list[ChatResponse | LLMError | None] = [None] * len(requests)
        valid: list[int] = []
        for index, request in enumerate(requests):
            try:
                self.transport.build_payload(request, stream=False)
            except LLMError as exc:
                out[index] = exc
            else:
                valid.append(index)
        if valid:
            chosen = [requests[i] for i in valid]
            job = await self.submit(chosen, [str(i) for i in valid])
            try:
                job = await self.wait(job, timeout=timeout)
            except BaseException:
                await asyncio.shield(self._cancel_quietly(job))
                raise
            for index, outcome in zip(valid, await self.results(job, chosen), strict=True):
                out[index] = outcome
        return [r for r in out if r is not None]

    async def _cancel_quietly(self, job: BatchJob) -> None:
        with contextlib.suppress(LLMError):
            await self.cancel(job)

    def _missing(self, job: BatchJob) -> LLMError:
        reason = {"expired": "expired", "cancelled": "was cancelled",
                  "failed": "failed"}.get(job.status, "returned no result")
        return APIStatusError(f"batch {job.id} {reason} before this request was answered",
                              provider=self.provider, error_type=f"batch_{job.status}")

    def _answer(self, request: ChatRequest, body: Any, request_id: str | None) -> ChatResponse:
        response = self.transport.parse_response(body, request)
        response.provider = self.transport.provider
        response.requested_model = request.model
        response.request_id = request_id
        return response

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transport!r})"
