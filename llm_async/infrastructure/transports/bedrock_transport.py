"""AWS Bedrock's Converse API transport: this path re-exports the public names of
:mod:`.bedrock`, the package that holds its request encoder, response and stream decoders and
transport class."""

from __future__ import annotations

from .bedrock import *  # noqa: F403
from .bedrock import __all__ as __all__
