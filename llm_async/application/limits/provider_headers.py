"""What providers' rate-limit headers say (OpenAI, Anthropic, OpenRouter)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "RateLimitInfo",
    "parse_duration",
    "parse_rate_limit_headers",
]


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str) -> float | None:
    """Seconds in a Go-style duration (``"6m0s"``, ``"12ms"``, ``"1.5s"``) or a plain number of
    seconds; ``None`` when it is neither."""
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                return None
            seconds += float(match.group(1)) * _UNIT[match.group(2)]
            pos = match.end()
        if pos != len(text):
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _parse_reset(value: str | None, wall_now: float) -> float | None:
    """A reset header as seconds from now: a duration, or an RFC 3339 timestamp (Anthropic),
    or epoch seconds / milliseconds (OpenRouter)."""
    if value is None:
        return None
    text = value.strip()
    if "T" in text and "-" in text:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, when.timestamp() - wall_now)
    seconds = parse_duration(text)
    if seconds is None:
        return None
    if seconds > 1e12:  # epoch milliseconds
        return max(0.0, seconds / 1000.0 - wall_now)
    if seconds > 1e9:  # epoch seconds
        return max(0.0, seconds - wall_now)
    return seconds


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(float(value))
    except ValueError:
        return None
    return number if number >= 0 else None  # Azure sends -1: unknown


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What a response's rate-limit headers say; every field may be unknown (``None``).
    ``reset_*`` are seconds from now until the limit is fully replenished."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


def parse_rate_limit_headers(headers: Mapping[str, str] | None,
                             wall_now: float | None = None) -> RateLimitInfo | None:
    """Read OpenAI (``x-ratelimit-*-requests/tokens``), Anthropic (``anthropic-ratelimit-*``)
    or OpenRouter (``x-ratelimit-limit/remaining/reset``) headers; ``None`` when there are
    none."""
    if not headers:
        return None
    now = time.time() if wall_now is None else wall_now
    get = headers.get
    if get("x-ratelimit-remaining-requests") is not None or \
            get("x-ratelimit-remaining-tokens") is not None:
        return RateLimitInfo(
            limit_requests=_int(get("x-ratelimit-limit-requests")),
            remaining_requests=_int(get("x-ratelimit-remaining-requests")),
            reset_requests=_parse_reset(get("x-ratelimit-reset-requests"), now),
            limit_tokens=_int(get("x-ratelimit-limit-tokens")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
            reset_tokens=_parse_reset(get("x-ratelimit-reset-tokens"), now),
        )
    prefix = "anthropic-ratelimit-"
    if get(prefix + "requests-remaining") is not None or \
            get(prefix + "tokens-remaining") is not None or \
            get(prefix + "input-tokens-remaining") is not None:
        tokens = "tokens"
        if get(prefix + "tokens-remaining") is None:
            ins = _int(get(prefix + "input-tokens-remaining"))
            outs = _int(get(prefix + "output-tokens-remaining"))
            tokens = "output-tokens" if (outs is not None and (ins is None or outs < ins)) \
                else "input-tokens"
        return RateLimitInfo(
            limit_requests=_int(get(prefix + "requests-limit")),
            remaining_requests=_int(get(prefix + "requests-remaining")),
            reset_requests=_parse_reset(get(prefix + "requests-reset"), now),
            limit_tokens=_int(get(prefix + f"{tokens}-limit")),
            remaining_tokens=_int(get(prefix + f"{tokens}-remaining")),
            reset_tokens=_parse_reset(get(prefix + f"{tokens}-reset"), now),
        )
    if get("x-ratelimit-remaining") is not None:
        return RateLimitInfo(
            limit_requests=_int(get("x-ratelimit-limit")),
            remaining_requests=_int(get("x-ratelimit-remaining")),
            reset_requests=_parse_reset(get("x-ratelimit-reset"), now),
        )
    return None
