""":class:`LLMError`, the base of every error: what it carries, how it prints and pickles, and
the redaction of every value stored on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .kinds import ErrorKind
from .redaction import redact

__all__ = [
    "LLMError",
    "redact_value",
    "rewrite_error_text",
]


_MAX_DEPTH = 64


def redact_value(value: Any, _depth: int = 0) -> Any:
    """:func:`redact` applied to every string inside ``value`` (dicts, lists, tuples, bytes).

    Mappings come back as plain dicts (a response's header proxy cannot be pickled); nesting
    deeper than 64 levels is cut off.
    """
    return _rewrite(value, redact, _depth)


def _rewrite(value: Any, transform: Callable[[str], str], depth: int = 0) -> Any:
    if isinstance(value, str):
        return transform(value)
    if value is None or isinstance(value, bool | int | float | LLMError):
        return value
    if depth >= _MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
        changed = transform(text)
        return value if changed == text else changed.encode()
    if isinstance(value, Mapping):
        return {_rewrite(k, transform, depth + 1): _rewrite(v, transform, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [_rewrite(v, transform, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def rewrite_error_text(error: LLMError, transform: Callable[[str], str]) -> None:
    """Apply ``transform`` to every text an error carries (message, args, body, every string
    attribute, a chained typed ``cause``), in place. Redaction still applies afterwards."""
    for name, value in list(vars(error).items()):
        if isinstance(value, LLMError):
            if value is not error:
                rewrite_error_text(value, transform)
            continue
        setattr(error, name, _rewrite(value, transform))
    error.args = _rewrite(error.args, transform)


class LLMError(Exception):
    """Base of every error this library raises.

    Every error names the ``provider`` (when known), the HTTP ``status`` (when there was one),
    the provider's ``request_id`` (when it sent one) and whether retrying may help (``retryable``).
    """

    #: What kind of failure this is (see :class:`ErrorKind`); subclasses refine it.
    kind: ClassVar[ErrorKind] = ErrorKind.UNKNOWN
    default_retryable: ClassVar[bool] = False

    def __setattr__(self, name: str, value: Any) -> None:
        # Every attribute (message, body, headers, args, whatever a subclass adds) is redacted
        # as it is stored, so no way of showing or pickling an error can reveal a key.
        super().__setattr__(name, _rewrite(value, redact))

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        body: Any = None,
    ) -> None:
        self.message = redact(message)
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.retryable = self.default_retryable if retryable is None else retryable
        self.body = body
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.provider:
            details.append(f"provider={self.provider}")
        if self.status is not None:
            details.append(f"status={self.status}")
        if self.request_id:
            details.append(f"request_id={self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
                f"status={self.status!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process and thread boundaries (batch workers, the sync facade). Redacted
        # again: a key registered after the error was made is scrubbed too.
        state = {name: _rewrite(value, redact) for name, value in self.__dict__.items()}
        return (_rebuild_error, (type(self), redact(self.message), state))


def _rebuild_error(cls: type[LLMError], message: str, state: dict[str, Any]) -> LLMError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err
