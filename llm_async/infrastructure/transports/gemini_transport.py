"""Google Gemini's native API transport: this path re-exports the public names of
:mod:`.gemini`, the package that holds its request encoder, response and stream decoders and
transport class."""

from __future__ import annotations

from .gemini import *  # noqa: F403
from .gemini import __all__ as __all__
