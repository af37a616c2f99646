"""Anthropic Message Batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ....errors import APIStatusError, InvalidRequestError, LLMError
from ....types import ChatRequest, ChatResponse, build_request
from .base import BatchJob, ProviderBatchAPI

__all__ = ["AnthropicBatchAPI"]


_ANTHROPIC_STATUS = {400: "invalid_request_error", 401: "authentication_error",
                     403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                     429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
_ANTHROPIC_ERROR_STATUS = {v: k for k, v in _ANTHROPIC_STATUS.items()}


class AnthropicBatchAPI(ProviderBatchAPI):
    """Anthropic Message Batches: ``POST {messages_url}/batches`` with ``requests:
    [{custom_id, params}]``, poll ``GET .../batches/{id}`` until ``processing_status`` is
    ``ended``, then read the JSONL at ``results_url``."""

    provider: ClassVar[str] = "anthropic"

    def _batches_url(self, request: ChatRequest | None = None) -> str:
        probe = request or build_request(model="x", messages=[{"role": "user", "content": "x"}])
        return str(self.transport.url(probe)).rstrip("/") + "/batches"

    async def submit(self, requests: Sequence[ChatRequest],
                     custom_ids: Sequence[str] | None = None) -> BatchJob:
        ids = self._ids(requests, custom_ids)
        body = {"requests": [
            {"custom_id": custom_id,
             "params": self.transport.build_payload(request, stream=False)}
            for custom_id, request in zip(ids, requests, strict=True)
        ]}
        if not ids:
            raise InvalidRequestError("a batch needs at least one request")
        data = await self._call("POST", self._batches_url(requests[0]), json_body=body)
        return self._job(data, ids)

    def _job(self, data: dict[str, Any], custom_ids: list[str] | None = None) -> BatchJob:
        status = "in_progress"
        if data.get("processing_status") == "ended":
            counts = data.get("request_counts") or {}
            status = "cancelled" if data.get("cancel_initiated_at") else (
                "expired" if counts.get("expired") else "completed")
        return BatchJob(str(data["id"]), self.provider, status, data, custom_ids or [])

    async def retrieve(self, job: BatchJob) -> BatchJob:
        data = await self._call("GET", f"{self._batches_url()}/{job.id}")
        return self._job(data, job.custom_ids)

    async def cancel(self, job: BatchJob) -> BatchJob:
        data = await self._call("POST", f"{self._batches_url()}/{job.id}/cancel")
        return self._job(data, job.custom_ids)

    async def results(self, job: BatchJob,
                      requests: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        url = job.raw.get("results_url") or f"{self._batches_url()}/{job.id}/results"
        by_id = {str(line.get("custom_id")): line
                 for line in self._jsonl(await self._call("GET", str(url), raw=True))}
        out: list[ChatResponse | LLMError] = []
        for index, request in enumerate(requests):
            line = by_id.get(self._id_of(job, index))
            out.append(self._missing(job) if line is None else self._line(request, line))
        return out

    def _line(self, request: ChatRequest, line: Mapping[str, Any]) -> ChatResponse | LLMError:
        result = line.get("result") or {}
        kind = result.get("type")
        try:
            if kind == "succeeded":
                message = result.get("message") or {}
                return self._answer(request, message, message.get("id"))
            if kind == "errored":
                body = result.get("error") or {}
                nested = body.get("error")
                inner = nested if isinstance(nested, Mapping) else body
                status = _ANTHROPIC_ERROR_STATUS.get(str(inner.get("type")), 500)
                return self.transport.map_error(status, body, {})
            return APIStatusError(f"batch request {kind or 'failed'}", provider=self.provider,
                                  error_type=f"batch_{kind or 'failed'}")
        except LLMError as exc:
            return exc
