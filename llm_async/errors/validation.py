"""Input and output that do not fit: an invalid request or setting (caught before anything is
sent), a reply that does not validate against its schema or refuses, tool-call arguments that
are not JSON."""

from __future__ import annotations

from typing import Any

from .base import LLMError
from .kinds import ErrorKind

__all__ = [
    "ConfigurationError",
    "InvalidRequestError",
    "RefusalError",
    "StructuredOutputError",
    "ToolArgumentsError",
]


class InvalidRequestError(LLMError, ValueError):
    """The request is invalid; it was rejected before anything was sent.

    ``field`` names the offending part of the request (for example ``messages[0].role``).
    """

    kind = ErrorKind.INVALID_REQUEST

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.field = field


class ConfigurationError(LLMError, ValueError):
    """A setting or environment variable is missing or malformed; ``variable`` names it."""

    kind = ErrorKind.CONFIGURATION

    def __init__(self, message: str, *, variable: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.variable = variable


class StructuredOutputError(LLMError):
    """The reply did not validate against the requested schema; ``raw_text`` keeps the reply."""

    kind = ErrorKind.STRUCTURED_OUTPUT

    def __init__(self, message: str, *, raw_text: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text


class RefusalError(StructuredOutputError):
    """The model refused instead of giving the structured answer: ``refusal`` is what it said,
    ``category`` the provider's reason when it names one."""

    kind = ErrorKind.REFUSAL

    def __init__(self, message: str, *, refusal: str = "", category: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.refusal = refusal
        self.category = category


class ToolArgumentsError(LLMError, ValueError):
    """A tool call's arguments are not JSON; ``raw_text`` keeps them, ``incomplete`` says the
    reply was cut at ``max_tokens`` while they were being written."""

    kind = ErrorKind.TOOL_ARGUMENTS

    def __init__(self, message: str, *, raw_text: str = "", tool_name: str = "",
                 incomplete: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.raw_text = raw_text
        self.tool_name = tool_name
        self.incomplete = incomplete
