"""``PromptOptimizer``: fewer prompt tokens without changing what matters.

Three steps, each optional: whitespace normalisation, removal of repeated lines and sentences,
and truncation to a token budget keeping the head, the tail, or both ends (cutting the middle).
Code (fenced blocks and inline ```code```) and quoted text (``>`` block quotes and text in double
quotes) are never changed unless ``protect_code=False`` / ``protect_quotes=False``: they are not
re-spaced, never count as duplicates, and truncation keeps or drops them whole.

::

    optimized = PromptOptimizer().optimize(text=long_prompt, max_tokens=1000,
                                           remove_redundancy=True)
    send(optimized)                      # a str: the optimized text
    optimized.report.tokens_saved        # what it saved
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidRequestError

__all__ = ["OptimizationReport", "OptimizedPrompt", "PromptOptimizer", "estimate_tokens"]

Strategy = Literal["head", "tail", "middle"]

def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` by the library's offline token estimator."""
    from ..application.cost_manager.tokens import estimate_tokens as shared

    return shared(text)


@dataclass(frozen=True, slots=True)
class OptimizationReport:
    """What :meth:`PromptOptimizer.optimize` did."""

    original_tokens: int
    optimized_tokens: int
    original_chars: int
    optimized_chars: int
    duplicates_removed: int
    truncated: bool
    strategy: str | None

    @property
    def tokens_saved(self) -> int:
        return self.original_tokens - self.optimized_tokens

    @property
    def ratio(self) -> float:
        """Optimized tokens over original tokens (1.0 when nothing was saved)."""
        return self.optimized_tokens / self.original_tokens if self.original_tokens else 1.0


class OptimizedPrompt(str):
    """The optimized text (a ``str``), with the :class:`OptimizationReport` in ``.report``."""

    report: OptimizationReport

    def __new__(cls, text: str, report: OptimizationReport) -> OptimizedPrompt:
        obj = super().__new__(cls, text)
        obj.report = report
        return obj

    @property
    def text(self) -> str:
        """The optimized text as a plain ``str``."""
        return str.__str__(self)

    @property
    def tokens_saved(self) -> int:
        return self.report.tokens_saved


# -- segmentation -------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\1[ \t]*$\n?", re.DOTALL | re.MULTILINE)
_QUOTE_BLOCK_RE = re.compile(r"(?:^[ \t]*>[^\n]*(?:\n|$))+", re.MULTILINE)
_INLINE_CODE_RE = re.compile(r"`[^`\n]+`")
_INLINE_QUOTE_RE = re.compile(r'"[^"\n]+"|\u201c[^\u201d\n]+\u201d')
_SENTINEL_RE = re.compile(r"\x00(\d+)\x00")
_SPACES_RE = re.compile(r"(?<=\S)[ \t]{2,}")
_BLANKS_RE = re.compile(r"\n{3,}")
_SENTENCE_RE = re.compile(r"(?<=[.!?])[ \t]+")
_UNIT_RE = re.compile(r"\s*\S+")


@dataclass(slots=True)
class _Block:
    text: str
    protected: bool


class _Protector:
    """Swaps protected inline spans for sentinels and back."""

    def __init__(self) -> None:
        self.spans: list[str] = []

    def hide(self, text: str, patterns: list[re.Pattern[str]]) -> str:
        for pattern in patterns:
            text = pattern.sub(self._sub, text)
        return text

    def _sub(self, match: re.Match[str]) -> str:
        self.spans.append(match.group(0))
        return f"\x00{len(self.spans) - 1}\x00"

    def restore(self, text: str) -> str:
        # spans may nest (a quote holding inline code), so restore what a span holds too
        return _SENTINEL_RE.sub(lambda m: self.restore(self.spans[int(m.group(1))]), text)


def _split_blocks(text: str, patterns: list[re.Pattern[str]]) -> list[_Block]:
    blocks = [_Block(text, False)]
    for pattern in patterns:
        out: list[_Block] = []
        for block in blocks:
            if block.protected:
                out.append(block)
                continue
            pos = 0
            for match in pattern.finditer(block.text):
                if match.start() > pos:
                    out.append(_Block(block.text[pos:match.start()], False))
                out.append(_Block(match.group(0), True))
                pos = match.end()
            if pos < len(block.text):
                out.append(_Block(block.text[pos:], False))
        blocks = out
    return blocks


def _normalize_whitespace(text: str) -> str:
    lines = [_SPACES_RE.sub(" ", line.rstrip()) for line in text.split("\n")]
    return _BLANKS_RE.sub("\n\n", "\n".join(lines))


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _words(text: str) -> int:
    return sum(1 for w in text.split() if any(c.isalnum() for c in w))


class PromptOptimizer:
    """Shrink prompts: whitespace, repeated lines and sentences, and a token budget.

    ``estimator`` counts tokens (default :func:`estimate_tokens`). ``strategy`` is the default
    truncation: ``"head"`` keeps the beginning, ``"tail"`` keeps the end, ``"middle"`` keeps both
    ends and cuts the middle. ``marker`` replaces the cut text (``""`` for none).
    ``min_duplicate_words``: lines and sentences shorter than this are never treated as
    duplicates (a repeated "Yes." or a table rule may be intended).
    """

    def __init__(self, *, estimator: Callable[[str], int] | None = None,
                 strategy: Strategy = "head", marker: str = "[…]",
                 min_duplicate_words: int = 3) -> None:
        _check_strategy(strategy)
        self.estimator = estimator or estimate_tokens
        self.strategy: Strategy = strategy
        self.marker = marker
        self.min_duplicate_words = min_duplicate_words

    def estimate(self, text: str) -> int:
        """Tokens in ``text`` by this optimizer's estimator."""
        return self.estimator(text)

    def optimize(self, text: str, max_tokens: int | None = None, *,
                 remove_redundancy: bool = True, normalize_whitespace: bool = True,
                 strategy: Strategy | None = None, protect_code: bool = True,
                 protect_quotes: bool = True) -> OptimizedPrompt:
        """The optimized ``text`` (an :class:`OptimizedPrompt`, a ``str`` with a ``.report``).

        ``max_tokens`` is the budget (``None``: no truncation); the result never exceeds it,
        marker included, unless a protected block that must stay whole does not fit at all, in
        which case it is dropped whole.
        """
        if not isinstance(text, str):
            raise InvalidRequestError("text must be a string", field="text")
        if max_tokens is not None and (isinstance(max_tokens, bool) or max_tokens < 0):
            raise InvalidRequestError("max_tokens must be a non-negative integer",
                                      field="max_tokens")
        strategy = strategy or self.strategy
        _check_strategy(strategy)
        original_tokens = self.estimate(text)

        block_patterns = ([_FENCE_RE] if protect_code else []) + (
            [_QUOTE_BLOCK_RE] if protect_quotes else [])
        inline_patterns = ([_INLINE_CODE_RE] if protect_code else []) + (
            [_INLINE_QUOTE_RE] if protect_quotes else [])
        protector = _Protector()
        blocks = _split_blocks(text, block_patterns)
        for block in blocks:
            if not block.protected:
                block.text = protector.hide(block.text, inline_patterns)

        if normalize_whitespace:
            for block in blocks:
                if not block.protected:
                    block.text = _normalize_whitespace(block.text)
        removed = 0
        if remove_redundancy:
            removed = self._dedupe(blocks)
            if removed and normalize_whitespace:
                for block in blocks:
                    if not block.protected:
                        block.text = _normalize_whitespace(block.text)
        result = "".join(protector.restore(b.text) if not b.protected else b.text
                         for b in blocks)
        if normalize_whitespace:
            result = result.strip()

        truncated = False
        if max_tokens is not None and self.estimate(result) > max_tokens:
            units = self._units(_split_blocks(result, block_patterns), inline_patterns)
            result = self._truncate(units, max_tokens, strategy)
            truncated = True
        report = OptimizationReport(
            original_tokens=original_tokens, optimized_tokens=self.estimate(result),
            original_chars=len(text), optimized_chars=len(result), duplicates_removed=removed,
            truncated=truncated, strategy=strategy if truncated else None)
        return OptimizedPrompt(result, report)

    # -- redundancy -----------------------------------------------------------------------

    def _dedupe(self, blocks: list[_Block]) -> int:
        seen: set[str] = set()
        removed = 0
        for block in blocks:
            if block.protected:
                continue
            lines_out: list[str] = []
            for line in block.text.split("\n"):
                if _SENTINEL_RE.search(line) is None and _words(line) >= self.min_duplicate_words:
                    key = _key(line)
                    if key in seen:
                        removed += 1
                        continue
                    seen.add(key)
                sentences = _SENTENCE_RE.split(line)
                if len(sentences) > 1:
                    kept: list[str] = []
                    for sentence in sentences:
                        if (_SENTINEL_RE.search(sentence) is None
                                and _words(sentence) >= self.min_duplicate_words):
                            key = _key(sentence)
                            if key in seen:
                                removed += 1
                                continue
                            seen.add(key)
                        kept.append(sentence)
                    line = " ".join(kept)
                lines_out.append(line)
            block.text = "\n".join(lines_out)
        return removed

    # -- truncation -----------------------------------------------------------------------

    def _units(self, blocks: list[_Block], inline: list[re.Pattern[str]]) -> list[str]:
        """Pieces that truncation keeps or drops whole: words (with their leading space),
        protected blocks, protected inline spans."""
        units: list[str] = []
        for block in blocks:
            if block.protected:
                units.append(block.text)
                continue
            protector = _Protector()
            hidden = protector.hide(block.text, inline)
            units.extend(protector.restore(u) for u in _UNIT_RE.findall(hidden))
            trailing = len(hidden) - len(hidden.rstrip())
            if trailing:
                units.append(hidden[len(hidden) - trailing:])
        return units

    def _truncate(self, units: list[str], budget: int, strategy: Strategy) -> str:
        marker = self.marker
        room = budget - (self.estimate(marker) if marker else 0)
        if room <= 0:
            return ""
        costs = [self.estimate(u) for u in units]

        def take(order: list[int], limit: int) -> list[int]:
            chosen, used = [], 0
            for i in order:
                if used + costs[i] > limit:
                    break
                chosen.append(i)
                used += costs[i]
            return chosen

        forward = list(range(len(units)))
        while True:
            if strategy == "head":
                head, tail = take(forward, room), []
            elif strategy == "tail":
                head, tail = [], sorted(take(forward[::-1], room))
            else:
                head = take(forward, room // 2)
                taken = set(head)
                tail = sorted(take([i for i in forward[::-1] if i not in taken],
                                   room - sum(costs[i] for i in head)))
            text = self._join(units, head, tail, marker)
            if self.estimate(text) <= budget or room <= 0:
                return text if self.estimate(text) <= budget else ""
            room -= max(1, self.estimate(text) - budget)

    @staticmethod
    def _join(units: list[str], head: list[int], tail: list[int], marker: str) -> str:
        first = "".join(units[i] for i in head).strip()
        last = "".join(units[i] for i in tail).strip()
        parts = [p for p in (first, marker, last) if p]
        return "\n".join(parts) if any("\n" in units[i] for i in head + tail) else " ".join(parts)

    def __repr__(self) -> str:
        return f"PromptOptimizer(strategy={self.strategy!r}, marker={self.marker!r})"


def _check_strategy(strategy: str) -> None:
    if strategy not in ("head", "tail", "middle"):
        raise InvalidRequestError("strategy must be 'head', 'tail' or 'middle'",
                                  field="strategy")
