"""Google Gemini's native API over aiohttp: ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` with the ``x-goog-api-key`` header.

* :mod:`.encode`: our request → the ``GenerateContentRequest`` body;
* :mod:`.decode`: an answer → our response (thoughts, safety stops, usage);
* :mod:`.stream`: stream events → chunks;
* :mod:`.errors`: Google's error body → typed errors;
* :mod:`.transport`: :class:`GeminiTransport`, the endpoints and the key header.
"""

from __future__ import annotations

from .decode import SAFETY_FINISH_REASONS, finish_reason, gemini_usage
from .transport import GeminiTransport

__all__ = [
    "SAFETY_FINISH_REASONS",
    "GeminiTransport",
    "finish_reason",
    "gemini_usage",
]
