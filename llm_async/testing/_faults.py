"""Programmable faults for the embedded mock provider server.

A :class:`Fault` describes *what goes wrong* (an HTTP error status, a slow answer, a stream
that is cut, garbled or ends with an in-stream error, a connection reset) and *which requests
it applies to* (model / path / stream filters, how many times, with which probability).

A :class:`FaultQueue` holds the pending faults of one server.  For each chat request the first
matching fault whose probability draw succeeds is applied and its remaining count decremented.
The queue never mutates the :class:`Fault` objects it is given, so one ``Fault`` instance can be
added several times or reused across servers.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STREAM_LIMIT_BYTES", "STREAM_LIMIT_SECONDS", "STREAM_ONLY_FIELDS", "Fault",
           "FaultQueue", "stream_positions"]

#: An endless stream stops by itself after this many bytes, a keep-alive-only one after this
#: many seconds, if the client has not hung up before.
STREAM_LIMIT_BYTES = 1 << 30
STREAM_LIMIT_SECONDS = 300.0

#: Fields whose effect only exists for streamed responses.  A fault that sets any of them and
#: leaves ``stream`` unset only matches streaming requests.
STREAM_ONLY_FIELDS: tuple[str, ...] = (
    "token_delay", "cut_after", "malformed_after", "error_after", "keepalive_after",
    "endless_after",
)
_USAGE_KEYS = frozenset({"prompt_tokens", "completion_tokens", "cached_tokens"})


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_non_negative_number(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not _is_number(value):
        raise ValueError(f"Fault.{name} must be a number, got {value!r}")
    assert isinstance(value, (int, float))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Fault.{name} must be a finite number >= 0, got {value!r}")


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"Fault.{name} must be an integer or None, got {value!r}")
    if value < minimum:
        raise ValueError(f"Fault.{name} must be >= {minimum}, got {value!r}")


@dataclass
class Fault:
    """One programmable failure of the mock provider server.

    Effects (what happens to a matching request):

    * ``status`` -- answer with this HTTP status.  ``body`` is the response body: a JSON-able
      object, or a ``str`` sent verbatim (``text/html`` if it starts with ``<``, else
      ``text/plain``).  When ``body`` is ``None`` a provider-shaped error body matching the
      status is generated.  ``body`` requires ``status``; a status below 400 requires ``body``.
    * ``headers`` -- extra response headers (added to error *and* normal responses).
    * ``retry_after`` / ``retry_after_ms`` -- set the ``Retry-After`` / ``retry-after-ms``
      headers (whole numbers are formatted as integers).
    * ``latency`` -- seconds to sleep before answering (applies to every effect).
    * ``token_delay`` -- per content chunk delay of a streamed answer (overrides the server's).
    * ``cut_after`` -- stream: after N content chunks close the connection abruptly (no final
      chunk, no ``[DONE]``, no terminating HTTP chunk).
    * ``malformed_after`` -- stream: after N content chunks send one ``data:`` line carrying
      truncated JSON, then continue normally.
    * ``error_after`` / ``error_body`` -- stream (HTTP 200): after N content chunks send an
      in-stream ``{"error": ...}`` event and end the stream.
    * ``reset`` -- drop the connection without sending any response.
    * ``usage`` -- report this usage instead of the real one (keys ``prompt_tokens``,
      ``completion_tokens``, ``cached_tokens``; any integer, negative ones included): the
      server still bills the real usage, as a provider with a reporting bug would.
    * ``redirect`` -- answer ``307 Temporary Redirect`` with this ``Location`` (any request).
    * ``gzip_bomb`` -- answer 200 with a gzip-encoded body that inflates to this many bytes
      (zeros for a unary call, SSE comment lines for a stream; a few KiB on the wire per MiB).
    * ``keepalive_after`` -- stream: after N content chunks send nothing but keep-alives (an SSE
      comment, or the dialect's ``ping`` event) every ``keepalive_interval`` seconds, until the
      client hangs up (at most ``STREAM_LIMIT_SECONDS``).
    * ``endless_after`` -- stream: after N content chunks repeat the content chunks without end,
      until the client hangs up (at most ``STREAM_LIMIT_BYTES``).

    If a stream effect position is larger than the number of content chunks, it happens right
    after the last content chunk.

    Selection:

    * ``times`` -- number of matching requests the fault applies to (``None``: unlimited).
    * ``probability`` -- applies with this probability, drawn from the server's seeded RNG.
    * ``model`` -- only requests for exactly this model.
    * ``path`` -- only requests whose URL path contains this string.
    * ``stream`` -- only streaming (``True``) or only non-streaming (``False``) requests.  When
      left ``None`` and a stream-only effect (``token_delay``, ``cut_after``,
      ``malformed_after``, ``error_after``, ``keepalive_after``, ``endless_after``) is set,
      the fault only matches streaming requests.
    """

    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None
    retry_after_ms: float | None = None
    latency: float = 0.0
    token_delay: float | None = None
    cut_after: int | None = None
    malformed_after: int | None = None
    error_after: int | None = None
    error_body: dict[str, Any] | None = None
    reset: bool = False
    usage: dict[str, int] | None = None
    redirect: str | None = None
    gzip_bomb: int | None = None
    keepalive_after: int | None = None
    keepalive_interval: float = 0.01
    endless_after: int | None = None
    times: int | None = 1
    probability: float = 1.0
    model: str | None = None
    path: str | None = None
    stream: bool | None = None

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        status = self.status
        if status is not None:
            if not isinstance(status, int) or isinstance(status, bool):
                raise ValueError(f"Fault.status must be an integer, got {status!r}")
            if not 200 <= status <= 599:
                raise ValueError(f"Fault.status must be in 200..599, got {status!r}")
            if status < 400 and self.body is None:
                raise ValueError("Fault.status below 400 requires an explicit body")
        elif self.body is not None:
            raise ValueError("Fault.body requires Fault.status")

        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ValueError("Fault.headers must be a mapping of str to str")
        self.headers = dict(self.headers)

        _check_non_negative_number("retry_after", self.retry_after, optional=True)
        _check_non_negative_number("retry_after_ms", self.retry_after_ms, optional=True)
        _check_non_negative_number("latency", self.latency, optional=False)
        _check_non_negative_number("token_delay", self.token_delay, optional=True)
        _check_count("cut_after", self.cut_after, minimum=0)
        _check_count("malformed_after", self.malformed_after, minimum=0)
        _check_count("error_after", self.error_after, minimum=0)
        _check_count("keepalive_after", self.keepalive_after, minimum=0)
        _check_count("endless_after", self.endless_after, minimum=0)
        _check_count("gzip_bomb", self.gzip_bomb, minimum=1)
        _check_count("times", self.times, minimum=1)
        _check_non_negative_number("keepalive_interval", self.keepalive_interval, optional=False)
        if self.redirect is not None and not isinstance(self.redirect, str):
            raise ValueError(f"Fault.redirect must be a str or None, got {self.redirect!r}")

        if self.error_body is not None:
            if not isinstance(self.error_body, dict):
                raise ValueError("Fault.error_body must be a dict")
            if self.error_after is None:
                raise ValueError("Fault.error_body requires Fault.error_after")
        if self.cut_after is not None and self.error_after is not None:
            raise ValueError("Fault.cut_after and Fault.error_after are mutually exclusive")
        endings = [name for name in ("cut_after", "error_after", "keepalive_after",
                                     "endless_after") if getattr(self, name) is not None]
        if len(endings) > 1:
            raise ValueError(f"Fault.{' and Fault.'.join(endings)} are mutually exclusive")

        if self.usage is not None:
            if not isinstance(self.usage, Mapping) or not all(
                k in _USAGE_KEYS and isinstance(v, int) and not isinstance(v, bool)
                for k, v in self.usage.items()
            ):
                raise ValueError(
                    f"Fault.usage must map {sorted(_USAGE_KEYS)} to integers, got {self.usage!r}"
                )
            if self.status is not None or self.reset:
                raise ValueError("Fault.usage cannot be combined with status or reset")
            self.usage = dict(self.usage)
        if not isinstance(self.reset, bool):
            raise ValueError(f"Fault.reset must be a bool, got {self.reset!r}")
        if not _is_number(self.probability) or not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"Fault.probability must be in [0, 1], got {self.probability!r}")
        for name in ("model", "path"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"Fault.{name} must be a str or None, got {value!r}")
        if self.stream is not None and not isinstance(self.stream, bool):
            raise ValueError(f"Fault.stream must be a bool or None, got {self.stream!r}")

        stream_effects = [name for name in STREAM_ONLY_FIELDS if getattr(self, name) is not None]
        if stream_effects and self.status is not None:
            raise ValueError(
                f"Fault.status cannot be combined with stream effects {stream_effects}"
            )
        if stream_effects and self.stream is False:
            raise ValueError(f"stream effects {stream_effects} cannot apply to stream=False")
        if self.reset and (self.status is not None or stream_effects):
            raise ValueError("Fault.reset cannot be combined with status or stream effects")
        whole = [name for name in ("status", "redirect", "gzip_bomb") if getattr(self, name)
                 is not None] + (["reset"] if self.reset else [])
        if len(whole) > 1 or (whole and whole != ["status"] and stream_effects):
            raise ValueError(f"Fault.{', '.join(whole + stream_effects)} cannot be combined")

    # -- derived properties -------------------------------------------------------------------

    @property
    def stream_only(self) -> bool:
        """True when the fault only matches streaming requests."""
        if self.stream is not None:
            return self.stream
        return any(getattr(self, name) is not None for name in STREAM_ONLY_FIELDS)

    @property
    def has_stream_effect(self) -> bool:
        """True when the fault changes how a stream is delivered (cut, garbled or errored)."""
        return (
            self.cut_after is not None
            or self.malformed_after is not None
            or self.error_after is not None
            or self.keepalive_after is not None
            or self.endless_after is not None
        )

    def matches(self, *, model: str | None, path: str, stream: bool) -> bool:
        """Whether the model / path / stream filters of this fault accept the request."""
        if self.model is not None and self.model != model:
            return False
        if self.path is not None and self.path not in path:
            return False
        if self.stream_only:
            return stream
        return self.stream is None or self.stream == stream

    # -- (de)serialisation --------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from a JSON object (as sent to ``POST /_mock/faults``).

        Raises :class:`ValueError` for a non-object, unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown Fault field(s): {', '.join(unknown)}")
        kwargs = dict(data)
        if kwargs.get("headers") is None:
            kwargs.pop("headers", None)
        try:
            return cls(**kwargs)
        except TypeError as exc:  # pragma: no cover - defensive, keys are checked above
            raise ValueError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """The fault as a JSON-able dict (inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Entry:
    fault: Fault
    remaining: int | None


class FaultQueue:
    """Ordered queue of pending faults with seeded, reproducible selection."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, fault: Fault) -> None:
        """Append ``fault``; it applies to its next ``fault.times`` matching requests."""
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        self._entries.append(_Entry(fault, fault.times))

    def clear(self) -> int:
        """Remove every pending fault and return how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count

    def pending(self) -> list[tuple[Fault, int | None]]:
        """The pending faults with their remaining application count (``None``: unlimited)."""
        return [(entry.fault, entry.remaining) for entry in self._entries]

    def select(
        self, *, model: str | None, path: str, stream: bool, rng: random.Random,
        accept: Callable[[Fault], bool] | None = None,
    ) -> Fault | None:
        """Pick the fault to apply to a request, consuming one of its applications.

        The first fault whose filters match (and that ``accept``, when given, accepts) and
        whose probability draw succeeds wins.  A draw is only made for faults with
        ``0 < probability < 1``, so runs are reproducible for a given RNG seed and request
        order.
        """
        entries = self._entries
        for index, entry in enumerate(entries):
            fault = entry.fault
            if not fault.matches(model=model, path=path, stream=stream):
                continue
            if accept is not None and not accept(fault):
                continue
            probability = fault.probability
            if probability <= 0.0:
                continue
            if probability < 1.0 and rng.random() >= probability:
                continue
            if entry.remaining is not None:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    del entries[index]
            return fault
        return None


def stream_positions(fault: Fault | None, count: int) -> tuple[int, int, int]:
    """Where ``fault``'s stream effects happen in a stream of ``count`` content chunks:
    ``(cut, malformed, error)``, each a chunk index in ``0..count`` or ``-1`` for none.

    An effect at index ``i`` happens right before content chunk ``i`` (``count``: after the
    last); a position beyond the stream is clamped to its end.
    """
    if fault is None:
        return -1, -1, -1

    def clamp(value: int | None) -> int:
        return -1 if value is None else min(value, count)

    return clamp(fault.cut_after), clamp(fault.malformed_after), clamp(fault.error_after)

