"""Token estimates that work offline: close to the real count, for display, the prompt
optimizer and the rate limiter (budgets reserve with the upper bound of :mod:`.bounds`, which no
text can beat). :class:`TokenEstimator` makes them two ways:

* **exactly**, when you opt in (``TokenEstimator(use_exact=True)``) and a tokenizer and its
  data are already on this machine: the ``bpe-openai`` package (it embeds OpenAI's
  ``o200k_base`` and ``cl100k_base`` tables; ``pip install 'llm-async-client[tokens]'``), or
  ``tiktoken`` when its encoding file is already in its local cache. Nothing is ever
  downloaded: a tokenizer whose data is missing is skipped;
* **by estimation** otherwise (the default): the text is split the way byte-pair tokenizers
  pre-split it (words, digit groups of up to three, punctuation runs, whitespace runs, CJK
  characters), and each piece is costed with rules calibrated against ``o200k_base`` and
  ``cl100k_base``. The error on a sample of texts is measured by the test suite and
  documented in ``docs/cost/04-tokens.md``.

Exact counts exist only for OpenAI's tokenizers; other providers' models (Claude, Gemini) are
estimated with the ``o200k`` profile. Chat requests add a few tokens per message
(:data:`MESSAGE_OVERHEAD`) and a fixed allowance per image (:data:`IMAGE_TOKENS`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import math
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ...types import ChatRequest, ImagePart, Message

__all__ = [
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD",
    "TokenEstimator",
    "encoding_for_model",
    "estimate_tokens",
    "get_token_estimator",
]

#: Tokens a chat format adds around each message (role and separators), and for the reply's
#: priming, in OpenAI's published accounting.
MESSAGE_OVERHEAD = 3
REPLY_PRIMING = 3
#: Input tokens assumed per image: a 1024×1024 high-detail image on GPT-4o-class models.
IMAGE_TOKENS = 765

# The pre-split (the shape of OpenAI's): a word may carry one leading space or symbol; digits go
# in groups of up to three; a punctuation run may carry one leading space and trailing newlines;
# newline runs and space runs stand alone.
_PIECE_RE = re.compile(
    r"(?:[^\r\n\w]|_)?[^\W\d_]+(?:'[a-z]{1,2})?"
    r"|\d{1,3}"
    r"| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|[^\S\r\n]+",
    re.UNICODE,
)
_CAMEL_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[^A-Za-z]+")


@dataclass(frozen=True, slots=True)
class _Profile:
    """Costs of the pieces of the pre-split, per tokenizer family."""

    ascii_word_chars: float      # characters per token beyond the first token of a long word
    ascii_word_free: int         # a word up to this long (with its space) is one token
    latin_extra: float           # extra tokens per accented Latin letter in a word
    cyrillic_chars: float
    arabic_chars: float
    cjk_per_char: float          # tokens per CJK / kana / hangul character
    other_chars: float           # characters per token for other scripts
    punct_chars: float           # characters per token in punctuation runs
    emoji: float                 # tokens per emoji / symbol outside the BMP


_PROFILES: dict[str, _Profile] = {
    "o200k_base": _Profile(ascii_word_chars=3.6, ascii_word_free=8, latin_extra=0.15,
                           cyrillic_chars=3.6, arabic_chars=4.2, cjk_per_char=0.8,
                           other_chars=2.5, punct_chars=3.0, emoji=1.7),
    "cl100k_base": _Profile(ascii_word_chars=3.2, ascii_word_free=7, latin_extra=1.0,
                            cyrillic_chars=2.0, arabic_chars=1.5, cjk_per_char=1.3,
                            other_chars=1.5, punct_chars=3.0, emoji=2.2),
}

# Exact-tokenizer model prefixes → encoding (newest first).
_ENCODINGS: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "o200k_base"), ("gpt-4.1", "o200k_base"), ("gpt-4.5", "o200k_base"),
    ("gpt-5", "o200k_base"), ("o1", "o200k_base"), ("o3", "o200k_base"), ("o4", "o200k_base"),
    ("chatgpt-4o", "o200k_base"), ("gpt-oss", "o200k_base"),
    ("gpt-4", "cl100k_base"), ("gpt-3.5", "cl100k_base"),
)

# tiktoken's download locations, used only to find an already-cached file (never to fetch).
_TIKTOKEN_BLOBS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


@functools.lru_cache(maxsize=256)
def encoding_for_model(model: str | None) -> str:
    """The tokenizer family of ``model`` (``o200k_base`` unless it is an older OpenAI model).

    OpenRouter ids (``openai/gpt-4``) are understood; every non-OpenAI model gets ``o200k_base``.
    """
    if not model:
        return "o200k_base"
    name = model.lower()
    vendor, sep, rest = name.partition("/")
    if sep:
        if vendor != "openai":
            return "o200k_base"
        name = rest
    for prefix, encoding in _ENCODINGS:
        if name.startswith(prefix):
            return encoding
    return "o200k_base"


def _is_openai_model(model: str | None) -> bool:
    if not model:
        return False
    name = model.lower()
    vendor, sep, rest = name.partition("/")
    if sep:
        if vendor != "openai":
            return False
        name = rest
    return any(name.startswith(prefix) for prefix, _ in _ENCODINGS)


def _script(ch: str) -> str:
    code = ord(ch)
    if code < 0x80:
        return "ascii"
    if code < 0x250 or 0x1E00 <= code < 0x1F00:
        return "latin"
    if 0x400 <= code < 0x530:
        return "cyrillic"
    if 0x600 <= code < 0x700 or 0x750 <= code < 0x780:
        return "arabic"
    if (0x3040 <= code < 0x3100 or 0x3400 <= code < 0xA000 or 0xAC00 <= code < 0xD7B0
            or 0xF900 <= code < 0xFB00 or 0xFF00 <= code < 0xFFF0 or 0x1100 <= code < 0x1200):
        return "cjk"
    return "other"


def _ascii_tokens(word: str, p: _Profile) -> float:
    if len(word) == 1 or word[1:].islower() or word.isupper():
        # One camel-case part (``hello``, ``Hello``, ``HELLO``): the common case, costed
        # exactly as the general path below would.
        n = len(word)
        return 1.0 + (n - p.ascii_word_free) / p.ascii_word_chars if n > p.ascii_word_free \
            else 1.0
    total = 0.0
    for part in _CAMEL_RE.findall(word):
        n = len(part)
        extra = max(0, n - p.ascii_word_free) / p.ascii_word_chars
        total += 1.0 + extra
    return total


def _word_tokens(word: str, p: _Profile) -> float:
    """Tokens of a run of letters (without its leading space)."""
    if word.isascii():
        return _ascii_tokens(word, p)
    cjk = 0
    counts: dict[str, int] = {}
    for ch in word:
        s = _script(ch)
        if s == "cjk":
            cjk += 1
        else:
            counts[s] = counts.get(s, 0) + 1
    tokens = cjk * p.cjk_per_char
    accented = counts.get("latin", 0)
    plain = counts.get("ascii", 0)
    if plain or accented:
        tokens += (1.0 + (plain + accented - p.ascii_word_free) / p.ascii_word_chars
                   if plain + accented > p.ascii_word_free else 1.0) + accented * p.latin_extra
    cyr = counts.get("cyrillic", 0)
    arab = counts.get("arabic", 0)
    other = counts.get("other", 0)
    if cyr or arab or other:
        tokens += max(1.0, cyr / p.cyrillic_chars + arab / p.arabic_chars
                      + other / p.other_chars)
    return tokens


def _symbols_tokens(run: str, p: _Profile) -> float:
    wide = sum(1 for ch in run if ord(ch) > 0xFFFF or 0x2600 <= ord(ch) < 0x2800)
    narrow = len(run) - wide
    return wide * p.emoji + (math.ceil(narrow / p.punct_chars) if narrow else 0)


def _heuristic(text: str, p: _Profile) -> int:
    if not text:
        return 0
    total = 0.0
    covered = 0
    for match in _PIECE_RE.finditer(text):
        piece = match.group()
        covered += len(piece)
        head = piece[0]
        if head.isdigit():
            total += 1.0
        elif head in "\r\n" or (head.isspace() and piece.rstrip(" \t") != piece.rstrip()):
            total += math.ceil(piece.count("\n") / 4) or 1
        elif head.isspace() and (len(piece) == 1 or piece.isspace()):
            total += 1.0
        else:
            # A word (maybe after one space or symbol), or a run of symbols.
            lead = piece[0] if not piece[0].isalpha() else ""
            body = piece[len(lead):]
            if body and body[0].isalpha():
                word, _, suffix = body.partition("'")
                total += _word_tokens(word, p) + (1.0 if suffix else 0.0)
                if lead and not lead.isspace() and _symbols_tokens(lead, p) > 1:
                    total += _symbols_tokens(lead, p) - 1
            else:
                total += max(1.0, _symbols_tokens(piece.strip(), p))
    # Characters the pre-split skipped cost about half a token each.
    total += max(0, len(text) - covered) * 0.5
    return max(1, round(total))


#: Texts up to this long have their estimate memoised (bounded: at most _MEMO_SIZE entries), so
#: the system prompt and history resent with every turn of a chat are costed once.
_MEMO_MAX_CHARS = 2048
_MEMO_SIZE = 1024


@functools.lru_cache(maxsize=_MEMO_SIZE)
def _memo_heuristic(text: str, encoding: str) -> int:
    return _heuristic(text, _PROFILES[encoding])


#: Texts longer than this are estimated from their first :data:`_SAMPLE_CHARS` characters,
#: scaled by length, so that no estimate holds the event loop (a megabyte takes about 0.3 s to
#: estimate in full).
_LARGE_CHARS = 1 << 16
_SAMPLE_CHARS = 8192


def _estimate(text: str, encoding: str) -> int:
    if len(text) <= _MEMO_MAX_CHARS:
        return _memo_heuristic(text, encoding)
    if len(text) > _LARGE_CHARS:
        sample = text[:_SAMPLE_CHARS]
        return max(1, round(_heuristic(sample, _PROFILES[encoding]) * len(text) / len(sample)))
    return _heuristic(text, _PROFILES[encoding])


def _tiktoken_cached(encoding: str) -> bool:
    """Whether tiktoken's file for ``encoding`` is already in its local cache."""
    blob = _TIKTOKEN_BLOBS.get(encoding)
    if blob is None:
        return False
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir:
        return False
    name = hashlib.sha1(blob.encode()).hexdigest()
    return os.path.isfile(os.path.join(cache_dir, name))


def _load_exact(encoding: str) -> Callable[[str], int] | None:
    """A counting function from a locally available tokenizer, or ``None``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            bpe = importlib.import_module("bpe_openai")
            enc = bpe.get_encoding(encoding)
            enc.encode_ordinary("warm up")  # loads the tables now, inside this filter
        return lambda text: len(enc.encode_ordinary(text))
    except Exception:
        pass
    if _tiktoken_cached(encoding):
        try:
            tiktoken = importlib.import_module("tiktoken")
            tk = tiktoken.get_encoding(encoding)
            return lambda text: len(tk.encode_ordinary(text))
        except Exception:
            return None
    return None


class TokenEstimator:
    """Counts tokens of texts and chat requests with the calibrated offline heuristic, or
    exactly when you opt in.

    By default (``use_exact=False``) every count is the heuristic's: nothing is loaded, and the
    cost layer reserves the input with its safety margin. ``use_exact=True`` opts in to exact
    counts for OpenAI models from a local tokenizer (``bpe-openai``, or ``tiktoken`` with a
    cached file); loading its tables costs about 130 MiB of memory and a second of CPU, once.
    ``exact`` maps an encoding name to a counting function, to plug in a tokenizer of your own
    (counters passed there are always used).
    """

    def __init__(self, *, use_exact: bool = False,
                 exact: Mapping[str, Callable[[str], int]] | None = None) -> None:
        self.use_exact = use_exact
        self._exact: dict[str, Callable[[str], int] | None] = dict(exact or {})
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loading: set[str] = set()

    def exact_counter(self, encoding: str, *, wait: bool = True) -> Callable[[str], int] | None:
        """The exact counter for ``encoding`` if one is available here, else ``None``.

        Loading a tokenizer's tables takes a second or so; with ``wait=False`` a counter that
        is not loaded yet is loaded in a background thread and ``None`` is returned meanwhile
        (the cost layer uses this, so no call waits for it).
        """
        if encoding in self._exact:
            return self._exact[encoding]
        if not self.use_exact:
            return None
        if not wait:
            with self._lock:
                if encoding not in self._loading:
                    self._loading.add(encoding)
                    threading.Thread(target=self._load, args=(encoding,), daemon=True,
                                     name=f"llm_async-tokenizer-{encoding}").start()
            return None
        return self._load(encoding)

    def _load(self, encoding: str) -> Callable[[str], int] | None:
        with self._load_lock:
            if encoding not in self._exact:
                self._exact[encoding] = _load_exact(encoding)
            return self._exact[encoding]

    def is_exact(self, model: str | None, *, wait: bool = True) -> bool:
        """Whether counts for ``model`` are exact (an OpenAI model and a local tokenizer)."""
        if not self.use_exact and not self._exact:
            return False
        return (_is_openai_model(model)
                and self.exact_counter(encoding_for_model(model), wait=wait) is not None)

    def count(self, text: str, model: str | None = None, *, wait: bool = True) -> int:
        """Tokens of ``text`` for ``model`` (exact when possible)."""
        if not text:
            return 0
        encoding = encoding_for_model(model)
        if not self.use_exact and not self._exact:
            return _estimate(text, encoding)
        if _is_openai_model(model) or model is None:
            counter = self.exact_counter(encoding, wait=wait)
            if counter is not None:
                return counter(text)
        return _estimate(text, encoding)

    def estimate(self, text: str, encoding: str = "o200k_base") -> int:
        """The heuristic estimate alone, for ``encoding``'s profile."""
        if encoding not in _PROFILES:
            raise KeyError(encoding)
        return _estimate(text, encoding) if text else 0

    def count_messages(self, messages: Iterable[Message], model: str | None = None, *,
                       wait: bool = True) -> int:
        """Input tokens of a conversation: texts, tool calls, per-message overhead, images."""
        total = REPLY_PRIMING
        for message in messages:
            total += MESSAGE_OVERHEAD + self.count(message.text, model, wait=wait)
            if message.name:
                total += 1 + self.count(message.name, model, wait=wait)
            if isinstance(message.content, list):
                total += IMAGE_TOKENS * sum(isinstance(p, ImagePart) for p in message.content)
            for call in message.tool_calls or ():
                total += 3 + self.count(call.function.name, model, wait=wait)
                total += self.count(call.function.arguments, model, wait=wait)
        return total

    def count_request(self, request: ChatRequest, *, wait: bool = True) -> int:
        """Input tokens of a whole request (messages, tool definitions, a response schema)."""
        model = request.model
        total = self.count_messages(request.messages, model, wait=wait)
        if request.tools:
            schema = json.dumps([t.model_dump(exclude_none=True) for t in request.tools])
            total += 10 + self.count(schema, model, wait=wait)
        fmt = request.response_format
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            total += self.count(json.dumps(fmt.get("json_schema")), model, wait=wait)
        elif isinstance(fmt, type):
            try:
                schema = json.dumps(fmt.model_json_schema())  # type: ignore[attr-defined]
            except Exception:
                total += 200
            else:
                total += self.count(schema, model, wait=wait)
        return total

    def prefix_tokens(self, request: ChatRequest, *, wait: bool = True) -> int:
        """Tokens of every message but the last (the part prompt caching can reuse)."""
        return self.count_messages(request.messages[:-1], request.model,
                                   wait=wait) - REPLY_PRIMING

    def __repr__(self) -> str:
        found = sorted(k for k, v in self._exact.items() if v is not None)
        return f"TokenEstimator(exact={found or 'none loaded'})"


_default_estimator: TokenEstimator | None = None


def get_token_estimator() -> TokenEstimator:
    """The process-wide estimator (the offline heuristic; to count OpenAI models exactly, give
    a :class:`~llm_async.application.cost_manager.CostManager` a
    ``TokenEstimator(use_exact=True)``)."""
    global _default_estimator
    if _default_estimator is None:
        _default_estimator = TokenEstimator()
    return _default_estimator


def estimate_tokens(text: str, model: str | None = None) -> int:
    """Tokens of ``text`` for ``model`` with the process-wide estimator."""
    return get_token_estimator().count(text, model)
