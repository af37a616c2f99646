"""Request keys: the canonical form of a request, tenant scoping, normalised keys, and an
optional similarity index behind a pluggable embedder.

* :func:`canonical_request` keeps exactly what changes the answer — provider, model, messages,
  sampling parameters, tools, tool choice, response format, seed, penalties and ``extra_body`` —
  and drops what does not (metadata, timeouts, extra headers, per-call layer options, the
  ``stream`` flag: a cached answer replays as a stream).
* :func:`request_key` hashes it (BLAKE2b, 128 bits) under a tenant namespace, so one tenant
  never reads another's entry.
* ``normalize=True`` hashes message text through :func:`normalize_text` instead: differences of
  whitespace, letter case, typographic quotes and Markdown emphasis give the same key.
* :class:`SimilarityIndex` maps a prompt to the key of a stored near-identical prompt, using any
  :class:`Embedder` (a local :class:`HashingEmbedder` ships for tests and for lexical
  near-duplicates). Both are off by default; docs/optimization explains the trade-offs.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote

from pydantic import BaseModel

from ..errors import InvalidRequestError
from ..types import ChatRequest

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "SimilarityIndex",
    "TenantSpec",
    "canonical_bytes",
    "canonical_request",
    "credential_hash",
    "fingerprint",
    "normalize_text",
    "request_key",
    "tenant_of",
]

#: How a key is scoped to a tenant: ``"auto"`` (``metadata.tenant_id``, else ``user_id``, else
#: the API-key hash), ``"user"``, ``"project"``, ``"api_key"``, ``"global"`` (one namespace for
#: everybody), or a function of the request returning the tenant (``None`` = global).
TenantSpec = Literal["auto", "user", "project", "api_key", "global"] | Callable[
    [ChatRequest], str | None]

_KEY_FIELDS: set[str] = set({
    "provider", "model", "messages", "temperature", "top_p", "max_tokens", "stop", "tools",
    "tool_choice", "seed", "presence_penalty", "frequency_penalty", "extra_body",
})

try:  # orjson sorts keys natively and is much faster; json is the fallback.
    import orjson

    def canonical_bytes(obj: Any) -> bytes:
        """Canonical JSON: sorted keys, no whitespace."""
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)

except ImportError:  # pragma: no cover - depends on the environment
    import json

    def canonical_bytes(obj: Any) -> bytes:
        """Canonical JSON: sorted keys, no whitespace."""
        return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()


def _response_format_form(value: Any) -> Any:
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {"pydantic": value.__name__, "schema": value.model_json_schema()}
    return value


def canonical_request(request: ChatRequest, *, normalize: bool = False) -> dict[str, Any]:
    """The parts of ``request`` that change the answer, as plain JSON data."""
    data = request.model_dump(include=_KEY_FIELDS, exclude_none=True, mode="json")
    data["model"] = request.model
    if request.response_format is not None:
        data["response_format"] = _response_format_form(request.response_format)
    if normalize:
        for message in data["messages"]:
            content = message.get("content")
            if isinstance(content, str):
                message["content"] = normalize_text(content)
            elif isinstance(content, list):
                message["content"] = [
                    {**part, "text": normalize_text(part["text"])}
                    if part.get("type") == "text" else part for part in content
                ]
    return data


def fingerprint(request: ChatRequest, *, normalize: bool = False) -> str:
    """A 32-hex-digit hash of :func:`canonical_request`."""
    return hashlib.blake2b(canonical_bytes(canonical_request(request, normalize=normalize)),
                           digest_size=16).hexdigest()


def credential_hash(secret_material: Any) -> str | None:
    """A short, non-reversible id of a credential (``None`` when there is none)."""
    if not secret_material:
        return None
    return "k" + hashlib.sha256(canonical_bytes(secret_material)).hexdigest()[:16]


def tenant_of(request: ChatRequest, tenant: TenantSpec = "auto",
              credential: str | None = None) -> str:
    """The tenant namespace of ``request`` (``"-"`` for the global one)."""
    value: Any
    if callable(tenant):
        value = tenant(request)
    elif tenant == "auto":
        meta = request.metadata
        value = meta.extra_value("tenant_id") or meta.user_id
        value = f"u:{value}" if value else credential
    elif tenant == "user":
        value = f"u:{request.metadata.user_id}" if request.metadata.user_id else None
    elif tenant == "project":
        value = f"p:{request.metadata.project_id}" if request.metadata.project_id else None
    elif tenant == "api_key":
        value = credential
    elif tenant == "global":
        value = None
    else:
        raise InvalidRequestError(f"unknown tenant mode {tenant!r}", field="tenant")
    if not value:
        return "-"
    text = str(value)
    quoted = _QUOTED.get(text)
    if quoted is None:
        if len(_QUOTED) >= 1024:
            _QUOTED.clear()
        quoted = _QUOTED[text] = quote(text, safe="")
    return quoted


# The quoted form of recent tenant names (most calls name the same few).
_QUOTED: dict[str, str] = {}


def request_key(request: ChatRequest, *, tenant: TenantSpec = "auto",
                credential: str | None = None, normalize: bool = False,
                prefix: str = "") -> str:
    """``{prefix}{tenant}:{fingerprint}`` — the cache or dedup key of ``request``."""
    return (f"{prefix}{tenant_of(request, tenant, credential)}:"
            f"{fingerprint(request, normalize=normalize)}")


# -- normalisation ------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"(```.*?```|~~~.*?~~~)", re.DOTALL)
_EMPHASIS_RE = re.compile(r"(\*\*|__|\*|_)(?=\S)(.+?)(?<=\S)\1")
_SPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r" ([,.;:!?)])")
_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u00a0": " ",
    "\u2026": "...",
})


def _normalize_prose(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    text = _EMPHASIS_RE.sub(r"\2", text)
    text = _SPACE_RE.sub(" ", text.casefold()).strip()
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    return text.rstrip(".").rstrip()


def normalize_text(text: str) -> str:
    """Text with meaning-preserving formatting removed, for normalised keys.

    Unicode compatibility forms, typographic quotes and dashes, Markdown emphasis markers, case,
    runs of whitespace, spaces before punctuation and a trailing full stop are normalised.
    Fenced code blocks are kept verbatim (case and spacing matter in code).
    """
    parts = _FENCE_RE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part)
        elif part.strip():
            out.append(_normalize_prose(part))
    return " ".join(out)


# -- similarity -----------------------------------------------------------------------------


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; similar meanings should give a high cosine similarity."""

    async def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """One vector per text, in order."""
        ...


class HashingEmbedder:
    """A local, dependency-free embedder: hashed character n-grams, L2-normalised.

    It captures lexical closeness (typos, word order, punctuation), not meaning: "capital of
    France" and "France's capital city" score high, a paraphrase with other words scores low.
    Plug a real embedding model behind :class:`Embedder` for semantic matches.
    """

    def __init__(self, dim: int = 512, n: int = 3) -> None:
        if dim < 8 or n < 1:
            raise InvalidRequestError("HashingEmbedder needs dim >= 8 and n >= 1")
        self.dim = dim
        self.n = n

    def vector(self, text: str) -> list[float]:
        """The embedding of one text."""
        text = f" {normalize_text(text)} "
        vec = [0.0] * self.dim
        n = self.n
        for i in range(max(1, len(text) - n + 1)):
            gram = text[i:i + n].encode()
            h = int.from_bytes(hashlib.blake2b(gram, digest_size=8).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, n={self.n})"


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@dataclass(frozen=True, slots=True)
class SimilarMatch:
    """A stored key whose prompt is within the threshold, and its similarity."""

    key: str
    score: float


def prompt_text(request: ChatRequest) -> str:
    """The text compared by similarity: the last user message."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.text
    return request.messages[-1].text


def similarity_scope(request: ChatRequest, tenant: str) -> str:
    """Everything but the last user message: only requests that agree on it are compared."""
    data = canonical_request(request)
    messages = data["messages"]
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            messages[i] = {"role": "user"}
            break
    return tenant + ":" + hashlib.blake2b(canonical_bytes(data), digest_size=16).hexdigest()


class SimilarityIndex:
    """Near-identical prompt lookup: ``find`` returns the key of a stored prompt whose embedding
    has a cosine similarity ``>= threshold`` with the new one, within the same scope (tenant,
    model, parameters, earlier messages).

    Bounded to ``max_entries`` (least recently used first out). Lookups cost one embedding call
    plus a scan of the scope's entries.
    """

    def __init__(self, embedder: Embedder, *, threshold: float = 0.95,
                 max_entries: int = 10_000) -> None:
        if not 0.0 < threshold <= 1.0:
            raise InvalidRequestError("threshold must be in (0, 1]", field="threshold")
        if max_entries < 1:
            raise InvalidRequestError("max_entries must be >= 1", field="max_entries")
        self.embedder = embedder
        self.threshold = threshold
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], Sequence[float]] = OrderedDict()
        self._scopes: dict[str, dict[str, Sequence[float]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def _vector(self, request: ChatRequest) -> Sequence[float]:
        vectors = await self.embedder.embed([prompt_text(request)])
        return vectors[0]

    async def find(self, request: ChatRequest, tenant: str) -> SimilarMatch | None:
        """The best stored match at or above the threshold, or ``None``."""
        scope = similarity_scope(request, tenant)
        entries = self._scopes.get(scope)
        if not entries:
            return None
        vector = await self._vector(request)
        best: SimilarMatch | None = None
        for key, other in entries.items():
            score = _cosine(vector, other)
            if score >= self.threshold and (best is None or score > best.score):
                best = SimilarMatch(key, score)
        if best is not None:
            self._entries.move_to_end((scope, best.key))
        return best

    async def add(self, request: ChatRequest, tenant: str, key: str) -> None:
        """Remember that ``key`` holds the answer to ``request``."""
        scope = similarity_scope(request, tenant)
        vector = await self._vector(request)
        self._entries[(scope, key)] = vector
        self._entries.move_to_end((scope, key))
        self._scopes.setdefault(scope, {})[key] = vector
        while len(self._entries) > self.max_entries:
            (old_scope, old_key), _ = self._entries.popitem(last=False)
            self._drop(old_scope, old_key)

    def discard(self, request: ChatRequest, tenant: str, key: str) -> None:
        """Forget ``key`` (its cache entry expired)."""
        scope = similarity_scope(request, tenant)
        self._entries.pop((scope, key), None)
        self._drop(scope, key)

    def _drop(self, scope: str, key: str) -> None:
        bucket = self._scopes.get(scope)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._scopes[scope]

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._scopes.clear()

    def __repr__(self) -> str:
        return (f"SimilarityIndex(entries={len(self._entries)}, threshold={self.threshold}, "
                f"embedder={self.embedder!r})")
