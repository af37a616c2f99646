"""Test doubles that ship with the package: the embedded provider server, the in-process mock
transport and a fake clock. ``python -m llm_async.testing`` runs the server from the shell."""

from __future__ import annotations

from .._clock import FakeClock
from ..infrastructure.transports.mock import MockLLMTransport, MockReply, tool_call
from ._content import Script
from ._faults import Fault
from ._server import MockProviderServer

__all__ = ["FakeClock", "Fault", "MockLLMTransport", "MockProviderServer", "MockReply", "Script",
           "tool_call"]
