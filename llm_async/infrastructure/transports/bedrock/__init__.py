"""AWS Bedrock's Converse API over aiohttp: ``POST /model/{modelId}/converse`` and
``/converse-stream``.

* :mod:`.encode`: our request → the Converse body;
* :mod:`.decode`: an answer → our response (stop reasons, reasoning, refusals, usage);
* :mod:`.stream`: the event-stream decoder and the ConverseStream parser;
* :mod:`.errors`: Bedrock's exceptions → typed errors;
* :mod:`.transport`: :class:`BedrockTransport`, credentials, SigV4 signing and the endpoint.

* Credentials: requests are signed with SigV4 (service ``bedrock``) by botocore's signer, with
  credentials from the standard AWS chain (environment, shared config and credentials files,
  SSO, container and instance roles) or given to the constructor; a Bedrock API key
  (``AWS_BEARER_TOKEN_BEDROCK``) is sent as a bearer token instead. botocore comes with the
  ``bedrock`` extra; the chain is resolved once, off the event loop, and refreshed credentials
  are re-read when they expire.
* Streams are AWS event streams (``application/vnd.amazon.eventstream``), decoded by botocore's
  ``EventStreamBuffer`` (which checks each message's CRCs).
* Request mapping: ``system``/``developer`` messages → ``system`` blocks; consecutive messages of
  one role share a message (Bedrock requires alternating roles); images → ``image`` blocks from
  ``data:`` URLs; an assistant's ``tool_calls`` → ``toolUse`` blocks, a ``tool`` message → a
  ``toolResult`` block in a user message (a JSON object result as ``json``, else ``text``);
  ``max_tokens``, ``temperature``, ``top_p`` and ``stop`` → ``inferenceConfig``; ``tools`` →
  ``toolConfig`` (``tool_choice`` ``auto``/``required``/a named function →
  ``auto``/``any``/``tool``; Bedrock has no ``none``); ``response_format`` → a forced tool whose
  input schema is the requested schema, its input returned as the reply's text.
  ``extra_body`` is merged last (``additionalModelRequestFields``, ``guardrailConfig``...).
* Response mapping: text blocks → ``content``, ``toolUse`` → ``tool_calls``,
  ``reasoningContent`` → :class:`~llm_async.types.ReasoningPart` (text and signature, or the
  encrypted ``redactedContent``; sent back as such in the next turn), ``stopReason`` → our finish
  reasons (``guardrail_intervened`` and ``content_filtered`` → ``content_filter``, with a
  :class:`~llm_async.types.Refusal` naming the reason), ``trace`` and ``performanceConfig``
  kept in ``extras``, usage with cache reads and writes (Bedrock's ``inputTokens`` leaves them
  out; ours counts every prompt token).
* Errors: the ``x-amzn-ErrorType`` of an error answer, or the exception of an event stream, picks
  the class: ``ThrottlingException`` → :class:`~llm_async.errors.RateLimitError`,
  ``ServiceUnavailableException`` → :class:`~llm_async.errors.OverloadedError`,
  ``ModelTimeoutException`` → :class:`~llm_async.errors.RequestTimeoutError`,
  ``InternalServerException``/``ModelStreamErrorException``/``ModelErrorException`` →
  :class:`~llm_async.errors.ServerError` (all retryable); ``ServiceQuotaExceededException`` →
  :class:`~llm_async.errors.QuotaExceededError`, signature and key errors →
  :class:`~llm_async.errors.AuthenticationError`, ``AccessDeniedException`` →
  :class:`~llm_async.errors.PermissionDeniedError` (not retryable).
"""

from __future__ import annotations

from .decode import bedrock_usage, stop_reason
from .errors import EXCEPTION_ERRORS
from .stream import EventStreamDecoder
from .transport import BedrockTransport

__all__ = [
    "EXCEPTION_ERRORS",
    "BedrockTransport",
    "EventStreamDecoder",
    "bedrock_usage",
    "stop_reason",
]
