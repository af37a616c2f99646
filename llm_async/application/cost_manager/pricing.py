"""A model's price, and the exact bill of an attempt in integer nano-dollars.

A :class:`ModelPrice` holds a model's prices in USD per million tokens (as :class:`Decimal`)
and resolves them once into integer rates (nano-dollars per million tokens), so billing an
attempt is integer arithmetic, rounded once (half-even) to the nano-dollar; its worst case is
rounded up. Where prices come from is :mod:`.catalogue` (lookup and overrides) and
:mod:`.genai` (the maintained price database)::

    price = get_pricing_catalog().lookup("gpt-4o", provider="openai")
    price.cost(Usage(input_tokens=1000, output_tokens=500))   # Decimal('0.0075')
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...types import Usage
from .money import ZERO, from_nano, plain, to_decimal, to_nano

__all__ = ["LongContextTier", "ModelPrice", "plain", "to_decimal"]

MILLION = Decimal(1_000_000)
# Bills computed in Decimal (only for prices finer than a nano-dollar per million tokens) use
# 50 significant digits: exact for any realistic usage.
_CTX = Context(prec=50, rounding=ROUND_HALF_EVEN)
_ONE = Decimal(1)
_NANO = 10**9


class _Priced(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    @field_validator("*", mode="before")
    @classmethod
    def _money(cls, value: Any, info: Any) -> Any:
        if isinstance(value, float | str) and info.field_name in _MONEY_FIELDS:
            return to_decimal(value)
        return value


_MONEY_FIELDS = frozenset({"input", "cached_input", "cache_write", "output", "reasoning",
                           "per_request", "per_image"})


class LongContextTier(_Priced):
    """Higher prices for the whole request once its input exceeds ``threshold`` tokens."""

    threshold: int = Field(gt=0)
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    cache_write: Decimal | None = Field(default=None, ge=0)
    reasoning: Decimal | None = Field(default=None, ge=0)


#: ``(uncached input, cache read, cache write, output, reasoning)`` per million tokens.
_Rates = tuple[Decimal, Decimal, Decimal, Decimal, Decimal]
_IntRates = tuple[int, int, int, int, int]
#: Integer rates of a price: (base, long-context tier or None, its threshold, per request, per
#: image), or None when a price is finer than one nano-dollar per million tokens.
_Ints = tuple[_IntRates, _IntRates | None, int, int, int]
# The integer rates of each price, resolved once (keyed by id, holding the price so the id
# stays its own).
_INTS: dict[int, tuple[ModelPrice, _Ints | None]] = {}


def _whole(value: Decimal) -> int | None:
    """``value`` USD in nano-dollars if that is a whole number, else ``None``."""
    scaled = value * _NANO
    return int(scaled) if scaled == scaled.to_integral_value() else None


class ModelPrice(_Priced):
    """One model's prices, in USD per million tokens (fees per request or image in USD).

    ``cached_input`` (a prompt-cache read) and ``cache_write`` default to ``input``;
    ``reasoning`` defaults to ``output``. ``max_output_tokens`` is the model's documented
    maximum output (the cost layer sends it as the cap when a hard budget applies and the
    caller set none, if it is below the layer's default cap).
    """

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    openrouter: tuple[str, ...] = ()
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    cache_write: Decimal | None = Field(default=None, ge=0)
    reasoning: Decimal | None = Field(default=None, ge=0)
    long_context: LongContextTier | None = None
    per_request: Decimal = Field(default=ZERO, ge=0)
    per_image: Decimal = Field(default=ZERO, ge=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    alternative: str | None = None
    source: str = Field(min_length=1)
    as_of: date
    notes: str | None = None

    @property
    def key(self) -> str:
        """``provider/model``."""
        return f"{self.provider}/{self.model}"

    def _rates(self, input_tokens: int) -> _Rates:
        """(uncached input, cache read, cache write, output, reasoning) for a request's size."""
        tier = self.long_context
        if tier is not None and input_tokens > tier.threshold:
            return _tier_rates(tier)
        return _base_rates(self)

    def _int_rates(self) -> _Ints | None:
        found = _INTS.get(id(self))
        if found is not None and found[0] is self:
            return found[1]
        base = _ints_of(_base_rates(self))
        tier = _ints_of(_tier_rates(self.long_context)) if self.long_context else None
        fees = _whole(self.per_request), _whole(self.per_image)
        ints: _Ints | None = None
        if base is not None and (self.long_context is None or tier is not None) \
                and fees[0] is not None and fees[1] is not None:
            ints = (base, tier, self.long_context.threshold if self.long_context else 0,
                    fees[0], fees[1])
        if len(_INTS) >= 65536:
            _INTS.clear()
        _INTS[id(self)] = (self, ints)
        return ints

    def cost_nano(self, usage: Usage, *, images: int = 0) -> int:
        """The bill of one attempt with this usage in nano-dollars, rounded once (half-even):
        uncached, cache-read, cache-write, output and reasoning tokens each at their price,
        plus the fees."""
        ints = self._int_rates()
        if ints is None:
            return to_nano(self.cost(usage, images=images))
        base, tier, threshold, per_request, per_image = ints
        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        inp, cached, write, out, reasoning = (
            tier if tier is not None and input_tokens > threshold else base)
        read_tokens, write_tokens = usage.cache_read_tokens, usage.cache_write_tokens
        reasoning_tokens = usage.reasoning_tokens
        if read_tokens or write_tokens or reasoning_tokens:
            reasoning_tokens = min(reasoning_tokens, output_tokens)
            total = (max(0, input_tokens - read_tokens - write_tokens) * inp
                     + read_tokens * cached + write_tokens * write
                     + (output_tokens - reasoning_tokens) * out + reasoning_tokens * reasoning)
        else:
            total = max(0, input_tokens) * inp + output_tokens * out
        whole, rest = divmod(total, 1_000_000)
        if rest > 500_000 or (rest == 500_000 and whole & 1):
            whole += 1
        return whole + per_request + images * per_image

    def cost(self, usage: Usage, *, images: int = 0) -> Decimal:
        """The exact bill of one attempt with this usage, in USD."""
        if self._int_rates() is not None:
            return from_nano(self.cost_nano(usage, images=images))
        inp, cached, write, out, reasoning = self._rates(usage.input_tokens)
        reasoning_tokens = min(usage.reasoning_tokens, usage.output_tokens)
        add = _CTX.add
        total = ZERO
        for tokens, rate in ((usage.uncached_input_tokens, inp),
                             (usage.cache_read_tokens, cached),
                             (usage.cache_write_tokens, write),
                             (usage.output_tokens - reasoning_tokens, out),
                             (reasoning_tokens, reasoning)):
            if tokens:
                total = add(total, _CTX.divide(_CTX.multiply(Decimal(tokens), rate), MILLION))
        total = add(total, self.per_request)
        if images:
            total = add(total, _CTX.multiply(self.per_image, images))
        return _plain50(total) if total else ZERO

    def worst_case_nano(self, input_tokens: int, output_tokens: int, *,
                        images: int = 0) -> int:
        """The most an attempt can cost, in nano-dollars, rounded up: every input token at the
        dearest input price (uncached or cache write), every output token at the dearer of the
        output and reasoning prices, at the long-context prices if ``input_tokens`` reaches
        them, plus the fees."""
        ints = self._int_rates()
        if ints is None:
            rates = self._rates(input_tokens)
            exact = (Decimal(input_tokens) * max(rates[0], rates[2])
                     + Decimal(output_tokens) * max(rates[3], rates[4])) / MILLION
            exact += self.per_request + self.per_image * images
            return int((exact * _NANO).to_integral_value(rounding="ROUND_CEILING"))
        base, tier, threshold, per_request, per_image = ints
        inp, _cached, write, out, reasoning = (
            tier if tier is not None and input_tokens > threshold else base)
        total = input_tokens * max(inp, write) + output_tokens * max(out, reasoning)
        return -(-total // 1_000_000) + per_request + images * per_image

    def worst_case(self, input_tokens: int, output_tokens: int, *, images: int = 0) -> Decimal:
        """:meth:`worst_case_nano` in USD."""
        return from_nano(self.worst_case_nano(input_tokens, output_tokens, images=images))


def _base_rates(price: ModelPrice) -> _Rates:
    cached = price.cached_input if price.cached_input is not None else price.input
    write = price.cache_write if price.cache_write is not None else price.input
    reasoning = price.reasoning if price.reasoning is not None else price.output
    return price.input, cached, write, price.output, reasoning


def _tier_rates(tier: LongContextTier) -> _Rates:
    cached = tier.cached_input if tier.cached_input is not None else tier.input
    write = tier.cache_write if tier.cache_write is not None else tier.input
    reasoning = tier.reasoning if tier.reasoning is not None else tier.output
    return tier.input, cached, write, tier.output, reasoning


def _ints_of(rates: _Rates) -> _IntRates | None:
    out = [_whole(r) for r in rates]
    if any(v is None for v in out):
        return None
    return out[0], out[1], out[2], out[3], out[4]  # type: ignore[return-value]


def _plain50(amount: Decimal) -> Decimal:
    """:func:`plain` in the 50-digit context."""
    value = amount.normalize(_CTX)
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        value = value.quantize(_ONE, context=_CTX)
    return value


