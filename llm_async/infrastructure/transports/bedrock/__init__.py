"""AWS Bedrock's Converse API over aiohttp: ``POST /model/{modelId}/converse`` and
``/converse-stream``.

* :mod:`.encode`: our request → the Converse body;
* :mod:`.decode`: an answer → our response (stop reasons, reasoning, refusals, usage);
* :mod:`.stream`: the AWS event-stream decoder and the ConverseStream parser;
* :mod:`.errors`: Bedrock's exceptions → typed errors;
* :mod:`.transport`: :class:`BedrockTransport`, credentials (SigV4 by botocore, or a Bedrock API
  key) and the endpoint.
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
