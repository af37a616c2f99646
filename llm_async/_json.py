"""JSON encode/decode: orjson when installed (the ``speed`` extra), else the standard library.

Both raise only :class:`ValueError` for a document they cannot read (orjson's
``JSONDecodeError`` is one) — also for one nested too deeply, where the standard library's
recursive parser would raise :class:`RecursionError` — and :class:`TypeError` or
:class:`ValueError` for an object they cannot write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "loads", "stdlib_dumps", "stdlib_loads"]

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def stdlib_loads(data: bytes | str) -> Any:
    """:func:`json.loads`, with a document nested too deeply reported as a ``ValueError``."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON document is nested too deeply") from None


def stdlib_dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; an object nested too deeply is a ``ValueError``."""
    try:
        return _encoder.encode(obj).encode()
    except RecursionError:
        raise ValueError("object is nested too deeply to encode as JSON") from None


loads: Callable[[bytes | str], Any]
dumps: Callable[[Any], bytes]

try:
    import orjson

    loads = orjson.loads

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - depends on the environment
    loads = stdlib_loads
    dumps = stdlib_dumps
