"""OpenAI Chat Completions transport: this path re-exports the public names of :mod:`.openai`,
the package that holds its request encoder, response and stream decoders and transport class
(and the stream parser that OpenAI-compatible transports extend)."""

from __future__ import annotations

from .openai import *  # noqa: F403
from .openai import __all__ as __all__
from .openai.stream import _OpenAIStreamParser as _OpenAIStreamParser
