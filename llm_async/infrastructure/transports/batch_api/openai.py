"""The OpenAI Batch API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiohttp

from .... import _json
from ....errors import APIStatusError, LLMError
from ....types import ChatRequest, ChatResponse
from .base import BatchJob, ProviderBatchAPI

__all__ = ["OpenAIBatchAPI"]


_OPENAI_STATUS = {"validating": "in_progress", "in_progress": "in_progress",
                  "finalizing": "in_progress", "cancelling": "in_progress",
                  "completed": "completed", "failed": "failed", "expired": "expired",
                  "cancelled": "cancelled"}


class OpenAIBatchAPI(ProviderBatchAPI):
    """The OpenAI Batch API: upload a JSONL file (``POST /files``, purpose ``batch``), create the
    batch (``POST /batches``), poll ``GET /batches/{id}``, download the output and error files
    (``GET /files/{id}/content``)."""

    provider: ClassVar[str] = "openai"
    endpoint: ClassVar[str] = "/v1/chat/completions"

    async def submit(self, requests: Sequence[ChatRequest],
                     custom_ids: Sequence[str] | None = None) -> BatchJob:
        ids = self._ids(requests, custom_ids)
        lines = []
        for custom_id, request in zip(ids, requests, strict=True):
            lines.append(_json.dumps({
                "custom_id": custom_id, "method": "POST", "url": self.endpoint,
                "body": self.transport.build_payload(request, stream=False),
            }))
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", b"\n".join(lines) + b"\n", filename="batch.jsonl",
                       content_type="application/jsonl")
        base = self.transport.base_url
        uploaded = await self._call("POST", f"{base}/files", data=form)
        created = await self._call("POST", f"{base}/batches", json_body={
            "input_file_id": uploaded["id"], "endpoint": self.endpoint,
            "completion_window": "24h",
        })
        return self._job(created, ids)

    def _job(self, data: dict[str, Any], custom_ids: list[str] | None = None) -> BatchJob:
        status = _OPENAI_STATUS.get(str(data.get("status")), "in_progress")
        return BatchJob(str(data["id"]), self.provider, status, data, custom_ids or [])

    async def retrieve(self, job: BatchJob) -> BatchJob:
        data = await self._call("GET", f"{self.transport.base_url}/batches/{job.id}")
        return self._job(data, job.custom_ids)

    async def cancel(self, job: BatchJob) -> BatchJob:
        data = await self._call("POST", f"{self.transport.base_url}/batches/{job.id}/cancel")
        return self._job(data, job.custom_ids)

    async def results(self, job: BatchJob,
                      requests: Sequence[ChatRequest]) -> list[ChatResponse | LLMError]:
        lines: list[dict[str, Any]] = []
        for key in ("output_file_id", "error_file_id"):
            file_id = job.raw.get(key)
            if file_id:
                content = await self._call(
                    "GET", f"{self.transport.base_url}/files/{file_id}/content", raw=True)
                lines.extend(self._jsonl(content))
        by_id = {str(line.get("custom_id")): line for line in lines}
        failure = self._job_failure(job)
        out: list[ChatResponse | LLMError] = []
        for index, request in enumerate(requests):
            line = by_id.get(self._id_of(job, index))
            if line is None:
                out.append(failure or self._missing(job))
                continue
            out.append(self._line(request, line))
        return out

    def _job_failure(self, job: BatchJob) -> LLMError | None:
        errors = job.raw.get("errors")
        if job.status != "failed" or not isinstance(errors, Mapping):
            return None
        data = errors.get("data") or [{}]
        first = data[0] if isinstance(data[0], Mapping) else {}
        return APIStatusError(f"batch {job.id} failed: {first.get('message', 'unknown error')}",
                              provider=self.provider, code=first.get("code"),
                              error_type="batch_failed")

    def _line(self, request: ChatRequest, line: Mapping[str, Any]) -> ChatResponse | LLMError:
        response = line.get("response")
        try:
            if isinstance(response, Mapping):
                status = int(response.get("status_code") or 0)
                body = response.get("body")
                request_id = response.get("request_id")
                if 200 <= status < 300:
                    return self._answer(request, body, request_id)
                return self.transport.map_error(status or 500, body, {})
            error = line.get("error") or {}
            return APIStatusError(str(error.get("message") or "batch request failed"),
                                  provider=self.provider, code=error.get("code"),
                                  error_type="batch_error")
        except LLMError as exc:
            return exc
