"""Batching: a bounded batching queue, its pipeline layer, and ``chat_many``.

* :class:`BatchQueue` (:mod:`.queue`) collects items for a short window (``max_wait``) or up
  to ``max_batch_size``, then hands each batch to a dispatch function, with at most
  ``max_concurrency`` batches in flight. Every submitter gets its own result or error. The queue
  is bounded (``max_pending``): ``submit`` waits for room, so a producer faster than the
  provider slows down instead of growing memory.
* :class:`BatchingLayer` (:mod:`.layer`) puts a pipeline behind such a queue:
  ``mode="concurrent"`` sends each batch's requests through the inner handler concurrently;
  ``mode="provider"`` submits each batch as one provider batch job and polls for the results.
* :func:`chat_many` (:mod:`.many`, also ``AsyncLLMClient.chat_many``) runs a list of requests
  with bounded concurrency, optional progress, and keeps partial results: it returns a
  :class:`BatchResults`, a list holding a :class:`~llm_async.types.ChatResponse` or an
  :class:`~llm_async.errors.LLMError` per request, in order.

The provider batch APIs themselves (OpenAI Batch API, Anthropic Message Batches) are HTTP
clients and live with the transports, in :mod:`llm_async.infrastructure.transports.batch_api`;
their names are importable from here too.
"""

from __future__ import annotations

from ...infrastructure.transports.batch_api import (
    AnthropicBatchAPI,
    BatchJob,
    OpenAIBatchAPI,
    ProviderBatchAPI,
    batch_api_for,
)
from .layer import BatchingLayer
from .many import BatchProgress, BatchResults, TextProgress, chat_many
from .queue import BatchQueue, BatchQueueStats

__all__ = [
    "AnthropicBatchAPI",
    "BatchJob",
    "BatchProgress",
    "BatchQueue",
    "BatchQueueStats",
    "BatchResults",
    "BatchingLayer",
    "OpenAIBatchAPI",
    "ProviderBatchAPI",
    "TextProgress",
    "batch_api_for",
    "chat_many",
]
