"""What telemetry counts a failure as: the ``error.type`` of its root cause.

The classification itself lives on the errors (each class's ``kind``, see
:class:`llm_async.errors.ErrorKind`); this module only applies it the way every place that counts
failures does (span attributes, the duration histogram, the dashboard's statistics). A call
rejected by an open circuit breaker counts under the failure the breaker chains (its
``__cause__``), an exhausted fallback chain under its last model's failure, a cut stream under
what cut it (:func:`llm_async.errors.root_cause`). Rejections themselves are counted separately
(the ``circuit_rejected`` event, the ``circuit.requests.rejected`` metric).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from .. import errors as _errors
from ..errors import ErrorKind, LLMError, error_kind, error_type, root_cause

__all__ = ["ERROR_TYPES", "error_type", "failure_type", "is_provider_failure", "root_cause"]


def _error_types() -> dict[type[BaseException], str]:
    table: dict[type[BaseException], str] = {}
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        if isinstance(cls, type) and issubclass(cls, LLMError):
            table[cls] = cls.kind.label
    table[asyncio.CancelledError] = "cancelled"
    return table


#: ``error.type`` of each error class (its ``kind``'s label); ``cancelled`` for a cancelled
#: call, ``_OTHER`` for any other exception.
ERROR_TYPES: Mapping[type[BaseException], str] = _error_types()


def failure_type(exc: BaseException) -> str:
    """``error.type`` of the root cause of ``exc`` (what the statistics count a failure as)."""
    return error_type(root_cause(exc))


#: Kinds that are not the provider's doing: our own rejections and bad input, and answers that
#: did not fit what was asked (refusals, invalid structured output or tool arguments).
_NOT_THE_PROVIDER = frozenset({
    ErrorKind.INVALID_REQUEST, ErrorKind.CONFIGURATION, ErrorKind.CIRCUIT_OPEN,
    ErrorKind.LIMITER, ErrorKind.BUDGET, ErrorKind.UNPRICED, ErrorKind.FALLBACK_EXHAUSTED,
    ErrorKind.CANCELLED,
    ErrorKind.STRUCTURED_OUTPUT, ErrorKind.REFUSAL, ErrorKind.TOOL_ARGUMENTS,
    ErrorKind.UNKNOWN,
})


def is_provider_failure(exc: BaseException) -> bool:
    """True for a failure of a provider or of the way to it (an error status, a connection
    error, a timeout, a body we could not read, a cut stream), the failures shown as the last
    failure of a breaker; false for our own rejections, bad input and cancellation."""
    return isinstance(exc, LLMError) and error_kind(exc) not in _NOT_THE_PROVIDER
