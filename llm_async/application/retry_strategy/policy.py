"""The retry decision's inputs: which errors are retried (:func:`classify_error`) and how
many times and how long (:class:`RetryConfig`, :class:`ErrorPolicy`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import ConfigurationError, ErrorKind, LLMError

__all__ = [
    "ErrorPolicy",
    "Jitter",
    "RetryConfig",
    "classify_error",
    "is_retryable",
]


Jitter = Literal["none", "full", "equal", "decorrelated"]
_JITTERS: tuple[str, ...] = ("none", "full", "equal", "decorrelated")


#: The kinds the retry policy tells apart (policies and budgets are keyed by them); any other
#: retryable error is :attr:`ErrorKind.RETRYABLE`.
_RETRY_KINDS = frozenset({
    ErrorKind.RATE_LIMIT, ErrorKind.OVERLOADED, ErrorKind.SERVER, ErrorKind.TIMEOUT,
    ErrorKind.CONNECTION, ErrorKind.REQUEST_TIMEOUT, ErrorKind.CONFLICT, ErrorKind.PROTOCOL,
})


def classify_error(error: BaseException, config: RetryConfig | None = None) -> ErrorKind:
    """The :class:`~llm_async.errors.ErrorKind` retry sees in ``error``;
    :attr:`~llm_async.errors.ErrorKind.FATAL` means "never retry".

    Library errors follow ``error.retryable`` (which honours ``x-should-retry``) and their
    ``kind``; a stream error (after the first chunk) and an open circuit are always fatal.
    Foreign exceptions are retryable only when they are :class:`TimeoutError`,
    :class:`ConnectionError` or one of ``config.retry_on``.
    """
    if isinstance(error, LLMError):
        kind = error.kind
        if kind is ErrorKind.STREAM or kind is ErrorKind.CIRCUIT_OPEN or not error.retryable:
            return ErrorKind.FATAL
        return kind if kind in _RETRY_KINDS else ErrorKind.RETRYABLE
    if isinstance(error, TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(error, ConnectionError):
        return ErrorKind.CONNECTION
    if config is not None and config.retry_on and isinstance(error, config.retry_on):
        return ErrorKind.RETRYABLE
    return ErrorKind.FATAL


def is_retryable(error: BaseException, config: RetryConfig | None = None) -> bool:
    """Whether retrying ``error`` may help (see :func:`classify_error`)."""
    return classify_error(error, config) is not ErrorKind.FATAL


def retry_after_hint(error: BaseException) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return max(0.0, float(value))
    return None


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """Overrides for one error kind or type; ``None`` keeps the config's value.

    ``retry=False`` never retries it; ``max_attempts`` counts the first attempt too.
    """

    max_attempts: int | None = None
    base_delay: float | None = None
    max_delay: float | None = None
    retry: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigurationError("ErrorPolicy.max_attempts must be >= 1")
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigurationError(f"ErrorPolicy.{name} must be >= 0")


_NO_POLICY = ErrorPolicy()


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """How many times and how long to retry.

    ``max_attempts`` includes the first attempt (``LLM_MAX_RETRIES`` + 1). ``jitter`` is
    ``"full"``, ``"equal"``, ``"decorrelated"`` or ``"none"`` (``True``/``False`` mean full/none).
    ``retry_after_cap``: the longest server hint honoured; a longer one ends the retries.
    ``deadline``: seconds from the first attempt after which no retry starts (``None``: none).
    ``policies``: per error kind (:class:`ErrorKind` or its value) or exception type,
    an :class:`ErrorPolicy`; the most specific exception type wins, then the kind.
    ``retry_on``: extra exception types :class:`RetryExecutor` retries (for plain callables).
    """

    max_attempts: int = 7
    base_delay: float = 0.5
    max_delay: float = 20.0
    exponential_base: float = 2.0
    jitter: Jitter | bool = "full"
    retry_after_cap: float = 60.0
    deadline: float | None = None
    policies: Mapping[Any, ErrorPolicy] = field(default_factory=dict)
    retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if not self.base_delay >= 0:
            raise ConfigurationError(f"base_delay must be >= 0, got {self.base_delay!r}")
        if not self.max_delay >= self.base_delay:
            raise ConfigurationError("max_delay must be >= base_delay")
        if not self.exponential_base >= 1:
            raise ConfigurationError("exponential_base must be >= 1")
        if not self.retry_after_cap >= 0:
            raise ConfigurationError("retry_after_cap must be >= 0")
        if self.deadline is not None and not self.deadline > 0:
            raise ConfigurationError("deadline must be > 0 or None")
        jitter: Any = self.jitter
        if jitter is True:
            object.__setattr__(self, "jitter", "full")
        elif jitter is False:
            object.__setattr__(self, "jitter", "none")
        elif jitter not in _JITTERS:
            raise ConfigurationError(f"jitter must be one of {_JITTERS}, got {jitter!r}")
        policies: dict[Any, ErrorPolicy] = {}
        for key, policy in dict(self.policies).items():
            if not isinstance(policy, ErrorPolicy):
                raise ConfigurationError(f"policies[{key!r}] must be an ErrorPolicy")
            if isinstance(key, str) and not isinstance(key, ErrorKind):
                try:
                    key = ErrorKind(key)
                except ValueError:
                    raise ConfigurationError(f"unknown error kind {key!r}") from None
            elif not isinstance(key, ErrorKind) and not (
                    isinstance(key, type) and issubclass(key, BaseException)):
                raise ConfigurationError(f"policies key {key!r} is not an ErrorKind or exception")
            policies[key] = policy
        object.__setattr__(self, "policies", policies)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RetryConfig:
        """From :class:`~llm_async.config.Settings`: ``LLM_MAX_RETRIES`` and
        ``LLM_RETRY_BACKOFF_BASE``."""
        values: dict[str, Any] = {
            "max_attempts": int(settings.max_retries) + 1,
            "exponential_base": float(settings.retry_backoff_base),
        }
        values.update(overrides)
        return cls(**values)

    def policy_for(self, error: BaseException, kind: ErrorKind) -> ErrorPolicy:
        """The :class:`ErrorPolicy` that applies to ``error`` (an empty one when none does)."""
        if not self.policies:
            return _NO_POLICY
        for klass in type(error).__mro__:
            policy = self.policies.get(klass)
            if policy is not None:
                return policy
        return self.policies.get(kind, _NO_POLICY)
