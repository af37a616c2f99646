"""Provider batch APIs: submit many requests as one job (about half price, results within
hours), poll it, cancel it and collect one answer or typed error per request.

One module per provider (:mod:`.openai`, :mod:`.anthropic`) on the shared loop of
:class:`~.base.ProviderBatchAPI`; each goes through a transport's own session, credentials,
payload builder and response parser, so a batch line is exactly what a direct call would send.
"""

from __future__ import annotations

from typing import Any

from ...._clock import Clock, system_clock
from ....errors import ConfigurationError
from .anthropic import AnthropicBatchAPI
from .base import DEFAULT_MAX_RESULTS_BYTES, BatchJob, ProviderBatchAPI
from .openai import OpenAIBatchAPI

__all__ = ["AnthropicBatchAPI", "BatchJob", "OpenAIBatchAPI", "ProviderBatchAPI", "batch_api_for"]

#: provider name -> its batch API.
BATCH_APIS: dict[str, type[ProviderBatchAPI]] = {
    "openai": OpenAIBatchAPI,
    "anthropic": AnthropicBatchAPI,
}


def batch_api_for(transport: Any, *, clock: Clock = system_clock, poll_interval: float = 10.0,
                  max_results_bytes: int = DEFAULT_MAX_RESULTS_BYTES) -> ProviderBatchAPI:
    """The batch API of ``transport``'s provider (OpenAI or Anthropic); ``max_results_bytes``
    caps one downloaded results file."""
    kind = BATCH_APIS.get(str(getattr(transport, "provider", "")))
    if kind is None or not hasattr(transport, "build_payload"):
        raise ConfigurationError(
            f"{type(transport).__name__} has no batch API (OpenAI and Anthropic have one)")
    return kind(transport, clock=clock, poll_interval=poll_interval,
                max_results_bytes=max_results_bytes)
