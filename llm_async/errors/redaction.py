"""Secrets never leave: the registry of known secrets and :func:`redact`, which scrubs them
(and anything key-shaped) from a text."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping

__all__ = [
    "is_secret_header",
    "redact",
    "register_header_secrets",
    "register_secret",
]


# Secrets that look like API keys: "sk-...", "sk-ant-...", "sk-or-...", bearer tokens.
_SECRET_RE = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|(?i:bearer)\s+[A-Za-z0-9_\-\.]{8,})")
#: Header names whose values are credentials wherever they come from (client or per call).
_SECRET_HEADER_RE = re.compile(
    r"auth|cookie|api[-_]?key|access[-_]?key|secret|token|password|credential", re.IGNORECASE)
_PLACEHOLDER = "***"


class _Secrets:
    """The registered secrets: the most recent ``limit`` of them, found in a text fast.

    A few secrets (the usual case) are searched one by one; many (a key per tenant, passed per
    call) through an index of their first characters, so the cost of a search grows with the
    text, not with the number of keys.
    """

    limit = 4096
    _prefix = 8

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()
        self._short: set[str] = set()
        self._by_prefix: dict[str, set[str]] = {}
        self._min = 0

    def __len__(self) -> int:
        return len(self._order)

    def add(self, value: str) -> None:
        if value in self._order:
            self._order.move_to_end(value)
            return
        self._order[value] = None
        if len(value) < self._prefix:
            self._short.add(value)
        else:
            self._by_prefix.setdefault(value[:self._prefix], set()).add(value)
        if len(self._order) > self.limit:
            self._discard(next(iter(self._order)))
        self._min = min(len(s) for s in self._short) if self._short else self._prefix

    def _discard(self, value: str) -> None:
        del self._order[value]
        if len(value) < self._prefix:
            self._short.discard(value)
            return
        bucket = self._by_prefix.get(value[:self._prefix])
        if bucket is not None:
            bucket.discard(value)
            if not bucket:
                del self._by_prefix[value[:self._prefix]]

    def found_in(self, text: str) -> list[str]:
        """The secrets that occur in ``text``, longest first."""
        if not self._order or len(text) < self._min:
            return []
        if len(self._order) <= 32:
            found = [s for s in self._order if s in text]
        else:
            found = [s for s in self._short if s in text]
            seen: set[str] = set()
            by_prefix, width = self._by_prefix, self._prefix
            for i in range(len(text) - width + 1):
                bucket = by_prefix.get(text[i:i + width])
                if bucket:
                    for secret in bucket:
                        if secret not in seen and text.startswith(secret, i):
                            seen.add(secret)
                            found.append(secret)
        found.sort(key=len, reverse=True)
        return found


_known_secrets = _Secrets()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` scrubs it from any text, whatever its shape."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _known_secrets.add(value)


def is_secret_header(name: str) -> bool:
    """Whether a header of this name carries a credential (``Authorization``, ``x-api-key``,
    anything naming a key, token, secret or password)."""
    return _SECRET_HEADER_RE.search(name) is not None


def register_header_secrets(headers: Mapping[str, str]) -> None:
    """Register the values of every credential header in ``headers`` as secrets (for an
    ``Authorization: Bearer X`` header both the whole value and ``X``)."""
    for name, value in headers.items():
        if not isinstance(value, str) or not is_secret_header(str(name)):
            continue
        register_secret(value)
        scheme, _, token = value.strip().partition(" ")
        if token and scheme.isalpha():
            register_secret(token.strip())


def redact(text: str) -> str:
    """Replace every API key (registered or key-shaped) in ``text`` with ``***``."""
    for secret in _known_secrets.found_in(text):
        text = text.replace(secret, _PLACEHOLDER)
    return _SECRET_RE.sub(_PLACEHOLDER, text)
