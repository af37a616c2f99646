"""Anthropic's Messages API transport: this path re-exports the public names of
:mod:`.anthropic`, the package that holds its request encoder, response and stream decoders and
transport class."""

from __future__ import annotations

from .anthropic import *  # noqa: F403
from .anthropic import __all__ as __all__
