"""Provider batch endpoints for the mock provider server.

Enough of three APIs to test batch clients end to end:

* OpenAI Files: ``POST /v1/files`` (multipart ``purpose`` + ``file``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``;
* OpenAI Batch: ``POST /v1/batches`` (``input_file_id``, ``endpoint`` = ``/v1/chat/completions``,
  ``completion_window`` = ``24h``), ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``,
  ``GET /v1/batches``;
* Anthropic Message Batches: ``POST /v1/messages/batches`` (``requests: [{custom_id, params}]``),
  ``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results``,
  ``POST /v1/messages/batches/{id}/cancel``.

Time is not simulated: a batch reports ``in_progress`` for its first ``polls_until_done`` status
reads and then ends, its lines answered at that moment with the server's deterministic replies.
Faults queued on the server apply to batch lines too (matched by model, with the line's path
``/v1/chat/completions`` or ``/v1/messages`` and ``stream=False``); a fault with a ``status``
turns the line into an error result. Batch lines are not counted in ``server.request_count``;
:attr:`BatchEndpoints.lines_processed` counts them.

A fault whose ``path`` names a batch or file endpoint (it contains ``/batches`` or ``/files``)
applies to that endpoint's own HTTP answer instead: ``redirect``, ``gzip_bomb``, ``reset``,
``latency``, or ``status`` with an optional ``body`` (a large ``body`` makes an oversize answer).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ._delivery import drop_connection, gzip_bomb
from ._dialect import Dialect
from ._faults import Fault
from ._state import ServerState
from ._wire import ErrorInfo, RequestError, ResponseContext, default_error, dumps
from .dialects.anthropic import AnthropicDialect, error_type
from .dialects.openai import OpenAIDialect

__all__ = ["BatchEndpoints"]

_JSON = "application/json"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _File:
    id: str
    purpose: str
    filename: str
    content: bytes
    created_at: int

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content),
                "created_at": self.created_at, "filename": self.filename,
                "purpose": self.purpose, "status": "processed"}


@dataclass
class _Batch:
    id: str
    kind: str  # "openai" | "anthropic"
    created_at: int
    lines: list[dict[str, Any]]
    input_file_id: str | None = None
    status: str = "in_progress"
    polls: int = 0
    cancelled: bool = False
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    ended_at: int | None = None


def _error(status: int, message: str, kind: str = "openai") -> web.Response:
    if kind == "anthropic":
        body: Any = {"type": "error", "error": {"type": error_type(status), "message": message}}
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                          "code": None}}
    return web.Response(body=dumps(body).encode(), status=status,
                        headers={"Content-Type": _JSON})


def _endpoint_fault(fault: Fault) -> bool:
    """Whether ``fault`` is for the batch and file endpoints themselves (its ``path`` names
    one of them) rather than for the lines a batch answers."""
    return fault.path is not None and ("/batches" in fault.path or "/files" in fault.path)


def _ok(payload: Any) -> web.Response:
    return web.Response(body=dumps(payload).encode(), headers={"Content-Type": _JSON})


class BatchEndpoints:
    """The batch routes of one :class:`~llm_async.testing.MockProviderServer` (sharing its
    :class:`~llm_async.testing._state.ServerState`)."""

    def __init__(self, state: ServerState, *, polls_until_done: int = 1) -> None:
        self.state = state
        self.polls_until_done = polls_until_done
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self.lines_processed = 0
        self._ids = itertools.count(1)

    def reset(self) -> None:
        """Forget every file and batch."""
        self.files.clear()
        self.batches.clear()
        self.lines_processed = 0

    def register(self, app: web.Application) -> None:
        """Add the routes to ``app``."""
        r = app.router
        r.add_post("/v1/files", self._guard(self._upload))
        r.add_get("/v1/files/{id}", self._guard(self._file_info))
        r.add_get("/v1/files/{id}/content", self._guard(self._file_content))
        r.add_post("/v1/batches", self._guard(self._create_openai))
        r.add_get("/v1/batches", self._guard(self._list_openai))
        r.add_get("/v1/batches/{id}", self._guard(self._get_openai))
        r.add_post("/v1/batches/{id}/cancel", self._guard(self._cancel_openai))
        r.add_post("/v1/messages/batches", self._guard(self._create_anthropic, "anthropic"))
        r.add_get("/v1/messages/batches/{id}", self._guard(self._get_anthropic, "anthropic"))
        r.add_get("/v1/messages/batches/{id}/results",
                  self._guard(self._results_anthropic, "anthropic"))
        r.add_post("/v1/messages/batches/{id}/cancel",
                   self._guard(self._cancel_anthropic, "anthropic"))

    # -- plumbing ---------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):012x}"

    def _guard(self, handler: _Handler, kind: str = "openai") -> _Handler:
        """Enforce the server's API key, as the chat endpoints do."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            fault = self.state.select_fault(model=None, path=request.path, stream=False,
                                            accept=_endpoint_fault)
            if fault is not None:
                return await self._fault_answer(request, fault, kind)
            required = self.state.require_api_key
            if required is not None:
                auth = request.headers.get("Authorization", "")
                key = request.headers.get("x-api-key") or (
                    auth[7:].strip() if auth.lower().startswith("bearer ") else None)
                if key != required:
                    return _error(401, "Incorrect API key provided.", kind)
            return await handler(request)

        return guarded

    @staticmethod
    async def _fault_answer(request: web.Request, fault: Fault,
                            kind: str) -> web.StreamResponse:
        """What an endpoint fault makes the endpoint answer instead of its own answer."""
        if fault.latency > 0:
            await asyncio.sleep(fault.latency)
        if fault.reset:
            drop_connection(request, reset=True)
            return web.Response(status=499)
        if fault.redirect is not None:
            return web.Response(status=307, headers={**fault.headers,
                                                     "Location": fault.redirect})
        if fault.gzip_bomb is not None:
            return web.Response(body=gzip_bomb(fault.gzip_bomb, stream=False),
                                headers={**fault.headers, "Content-Type": _JSON,
                                         "Content-Encoding": "gzip"})
        assert fault.status is not None
        if fault.body is None:
            response = _error(fault.status, default_error(fault.status, None).message, kind)
        elif isinstance(fault.body, str):
            response = web.Response(body=fault.body.encode(), status=fault.status,
                                    headers={"Content-Type": "text/plain"})
        else:
            response = web.Response(body=dumps(fault.body).encode(), status=fault.status,
                                    headers={"Content-Type": _JSON})
        response.headers.update(fault.headers)
        return response

    # -- OpenAI files -----------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            return _error(400, "Expected a multipart/form-data upload.")
        purpose = filename = None
        content: bytes | None = None
        reader = await request.multipart()
        while True:
            part: Any = await reader.next()
            if part is None:
                break
            if part.name == "purpose":
                purpose = (await part.read()).decode()
            elif part.name == "file":
                filename = part.filename or "upload.jsonl"
                content = bytes(await part.read())
        if purpose is None:
            return _error(400, "Missing required parameter: 'purpose'.")
        if content is None:
            return _error(400, "Missing required parameter: 'file'.")
        file = _File(self._new_id("file-"), purpose, filename or "upload", content,
                     int(time.time()))
        self.files[file.id] = file
        return _ok(file.info())

    async def _file_info(self, request: web.Request) -> web.StreamResponse:
        file = self.files.get(request.match_info["id"])
        if file is None:
            return _error(404, f"No such File object: {request.match_info['id']}")
        return _ok(file.info())

    async def _file_content(self, request: web.Request) -> web.StreamResponse:
        file = self.files.get(request.match_info["id"])
        if file is None:
            return _error(404, f"No such File object: {request.match_info['id']}")
        return web.Response(body=file.content, headers={"Content-Type": "application/jsonl"})

    # -- OpenAI batches ---------------------------------------------------------------------

    async def _create_openai(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        if body.get("endpoint") != "/v1/chat/completions":
            return _error(400, "Invalid 'endpoint': only '/v1/chat/completions' is supported.")
        if body.get("completion_window") != "24h":
            return _error(400, "Invalid 'completion_window': expected '24h'.")
        file = self.files.get(str(body.get("input_file_id")))
        if file is None or file.purpose != "batch":
            return _error(400, "Invalid 'input_file_id': no batch file with that id.")
        lines: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(file.content.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                return _error(400, f"Line {number} of the input file is not valid JSON.")
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or custom_id in seen:
                return _error(400, f"Line {number}: 'custom_id' must be a unique string.")
            if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
                return _error(400, f"Line {number}: expected POST /v1/chat/completions.")
            seen.add(custom_id)
            lines.append(line)
        if not lines:
            return _error(400, "The input file has no requests.")
        batch = _Batch(self._new_id("batch_"), "openai", int(time.time()), lines,
                       input_file_id=file.id, status="validating")
        self.batches[batch.id] = batch
        return _ok(self._openai_view(batch))

    def _openai_view(self, batch: _Batch) -> dict[str, Any]:
        total = len(batch.lines)
        done = batch.counts.get("completed", 0)
        failed = batch.counts.get("failed", 0)
        return {
            "id": batch.id, "object": "batch", "endpoint": "/v1/chat/completions",
            "errors": None, "input_file_id": batch.input_file_id, "completion_window": "24h",
            "status": batch.status, "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id, "created_at": batch.created_at,
            "completed_at": batch.ended_at if batch.status == "completed" else None,
            "cancelled_at": batch.ended_at if batch.status == "cancelled" else None,
            "request_counts": {"total": total, "completed": done, "failed": failed},
            "metadata": None,
        }

    def _advance(self, batch: _Batch) -> None:
        if batch.ended_at is not None:
            return
        batch.polls += 1
        if batch.cancelled:
            self._finish(batch, answer=False)
        elif batch.polls > self.polls_until_done:
            self._finish(batch, answer=True)
        elif batch.kind == "openai":
            batch.status = "in_progress"

    async def _list_openai(self, request: web.Request) -> web.StreamResponse:
        data = [self._openai_view(b) for b in self.batches.values() if b.kind == "openai"]
        return _ok({"object": "list", "data": data, "has_more": False})

    async def _get_openai(self, request: web.Request) -> web.StreamResponse:
        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.kind != "openai":
            return _error(404, f"No such Batch object: {request.match_info['id']}")
        self._advance(batch)
        return _ok(self._openai_view(batch))

    async def _cancel_openai(self, request: web.Request) -> web.StreamResponse:
        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.kind != "openai":
            return _error(404, f"No such Batch object: {request.match_info['id']}")
        if batch.ended_at is not None:
            return _error(409, f"Cannot cancel a batch with status '{batch.status}'.")
        batch.cancelled = True
        batch.status = "cancelling"
        return _ok(self._openai_view(batch))

    # -- Anthropic message batches ----------------------------------------------------------

    async def _create_anthropic(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "Request body is not valid JSON.", "anthropic")
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return _error(400, "requests: Field required (a non-empty list)", "anthropic")
        seen: set[str] = set()
        for index, item in enumerate(requests):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or custom_id in seen:
                return _error(400, f"requests.{index}.custom_id: must be a unique string",
                              "anthropic")
            if not isinstance(item.get("params"), dict):
                return _error(400, f"requests.{index}.params: Field required", "anthropic")
            seen.add(custom_id)
        batch = _Batch(self._new_id("msgbatch_"), "anthropic", int(time.time()),
                       list(requests))
        self.batches[batch.id] = batch
        return _ok(self._anthropic_view(batch, request))

    def _anthropic_view(self, batch: _Batch, request: web.Request) -> dict[str, Any]:
        ended = batch.ended_at is not None
        counts = {k: batch.counts.get(k, 0) for k in
                  ("succeeded", "errored", "canceled", "expired")}
        counts["processing"] = 0 if ended else len(batch.lines)
        results_url = (f"{request.url.scheme}://{request.host}/v1/messages/batches/"
                       f"{batch.id}/results") if ended else None
        return {
            "id": batch.id, "type": "message_batch",
            "processing_status": "ended" if ended else (
                "canceling" if batch.cancelled else "in_progress"),
            "request_counts": counts, "ended_at": _iso(batch.ended_at),
            "created_at": _iso(batch.created_at),
            "expires_at": _iso(batch.created_at + 86400),
            "cancel_initiated_at": _iso(batch.created_at) if batch.cancelled else None,
            "archived_at": None, "results_url": results_url,
        }

    def _anthropic_batch(self, request: web.Request) -> _Batch | None:
        batch = self.batches.get(request.match_info["id"])
        return batch if batch is not None and batch.kind == "anthropic" else None

    async def _get_anthropic(self, request: web.Request) -> web.StreamResponse:
        batch = self._anthropic_batch(request)
        if batch is None:
            return _error(404, "message batch not found", "anthropic")
        self._advance(batch)
        return _ok(self._anthropic_view(batch, request))

    async def _results_anthropic(self, request: web.Request) -> web.StreamResponse:
        batch = self._anthropic_batch(request)
        if batch is None:
            return _error(404, "message batch not found", "anthropic")
        if batch.ended_at is None:
            return _error(400, "batch results are not available until processing has ended",
                          "anthropic")
        body = b"".join(dumps(line).encode() + b"\n" for line in batch.results)
        return web.Response(body=body, headers={"Content-Type": "application/binary"})

    async def _cancel_anthropic(self, request: web.Request) -> web.StreamResponse:
        batch = self._anthropic_batch(request)
        if batch is None:
            return _error(404, "message batch not found", "anthropic")
        if batch.ended_at is None:
            batch.cancelled = True
        return _ok(self._anthropic_view(batch, request))

    # -- processing -------------------------------------------------------------------------

    def _dialect(self, kind: str) -> tuple[Dialect, str]:
        if kind == "anthropic":
            return AnthropicDialect(), "/v1/messages"
        return OpenAIDialect(), "/v1/chat/completions"

    def _answer(self, dialect: Dialect, path: str,
                body: Any) -> tuple[int, Any, str]:
        """(status, response body, request id) of one batch line."""
        state = self.state
        self.lines_processed += 1
        number = self.lines_processed
        model = body.get("model") if isinstance(body, dict) else None
        ctx = ResponseContext(number=number, request_id=f"req_batch_{number:016x}",
                              created=int(time.time()), model=str(model or ""), path=path)
        faults = state.faults
        if faults:
            fault = faults.select(model=model if isinstance(model, str) else None, path=path,
                                  stream=False, rng=state.rng)
            if fault is not None and fault.status is not None:
                info = default_error(fault.status, ctx.model or None)
                return fault.status, dialect.error_payload(fault.status, info), ctx.request_id
        try:
            chat = dialect.parse_request(body, dialect.route(body, {}, {}))
            reply = state.generator.generate(chat)
        except RequestError as exc:
            info = ErrorInfo(exc.message, exc.error_type, exc.code)
            return exc.status, dialect.error_payload(exc.status, info, exc.param), ctx.request_id
        ctx.response_id = dialect.response_id(ctx, reply)
        return 200, json.loads(dialect.render_response(ctx, chat, reply)), ctx.request_id

    def _finish(self, batch: _Batch, *, answer: bool) -> None:
        batch.ended_at = int(time.time())
        dialect, path = self._dialect(batch.kind)
        if batch.kind == "openai":
            output: list[bytes] = []
            errors: list[bytes] = []
            for line in batch.lines if answer else []:
                status, body, request_id = self._answer(dialect, path, line.get("body"))
                record = {"id": self._new_id("batch_req_"), "custom_id": line["custom_id"],
                          "response": {"status_code": status, "request_id": request_id,
                                       "body": body}, "error": None}
                (output if status < 400 else errors).append(dumps(record).encode())
                key = "completed" if status < 400 else "failed"
                batch.counts[key] = batch.counts.get(key, 0) + 1
            for name, lines in (("output_file_id", output), ("error_file_id", errors)):
                if lines:
                    file = _File(self._new_id("file-"), "batch_output", f"{batch.id}.jsonl",
                                 b"\n".join(lines) + b"\n", batch.ended_at)
                    self.files[file.id] = file
                    setattr(batch, name, file.id)
            batch.status = "cancelled" if batch.cancelled else "completed"
            return
        for item in batch.lines:
            if not answer:
                result: dict[str, Any] = {"type": "canceled"}
                batch.counts["canceled"] = batch.counts.get("canceled", 0) + 1
            else:
                status, body, _ = self._answer(dialect, path, item["params"])
                if status < 400:
                    result = {"type": "succeeded", "message": body}
                    batch.counts["succeeded"] = batch.counts.get("succeeded", 0) + 1
                else:
                    result = {"type": "errored", "error": body}
                    batch.counts["errored"] = batch.counts.get("errored", 0) + 1
            batch.results.append({"custom_id": item["custom_id"], "result": result})
        batch.status = "ended"


def _iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
