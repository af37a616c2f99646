"""The pricing catalogue: what a model charges per million tokens, and the exact bill of a call.

The catalogue ships as ``llm_async/data/pricing.json`` and is validated when loaded. Every entry
names its provider and model, its prices (decimal strings, USD per million tokens) for uncached
input, cache reads (``cached_input``), cache writes, output and reasoning output, an optional
long-context tier, per-request and per-image fees, the OpenRouter ids billed at the same price,
a cheaper ``alternative`` used by the cost recommendations, and its ``source`` and ``as_of`` date.

Money is :class:`~decimal.Decimal` throughout; nothing is ever rounded through a float::

    catalog = get_pricing_catalog()
    price = catalog.lookup("gpt-4o", provider="openai")
    price.cost(Usage(input_tokens=1000, output_tokens=500))   # Decimal('0.0075')

Add or override prices in code (:meth:`PricingCatalog.set_price`, :meth:`PricingCatalog.add`)
or from a JSON file of the same shape (:meth:`PricingCatalog.load_file`). A model the catalogue
does not know has no price: :meth:`PricingCatalog.cost` returns ``None`` and logs one warning per
model on the ``llm_async.cost`` logger — never a silent zero.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigurationError
from ..types import Usage

__all__ = [
    "LongContextTier",
    "ModelPrice",
    "PricingCatalog",
    "get_pricing_catalog",
    "plain",
    "to_decimal",
]

logger = logging.getLogger("llm_async.cost")

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
# Bills are computed with 50 significant digits (exact for any realistic usage), through this
# context's methods rather than a ``localcontext()`` per call.
_CTX = Context(prec=50, rounding=ROUND_HALF_EVEN)
_ONE = Decimal(1)

#: Snapshot suffixes stripped when looking a model up: ``-2024-08-06``, ``-20241022``, ``-0613``,
#: ``-latest``.
_SNAPSHOT_RE = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")
#: OpenRouter's dotted versions (``claude-3.5-sonnet``) → Anthropic's (``claude-3-5-sonnet``).
_DOTTED_VERSION_RE = re.compile(r"(?<=\d)\.(?=\d)")
_VENDORS = ("openai", "anthropic")


def to_decimal(value: Any) -> Decimal:
    """An exact :class:`Decimal` from a ``Decimal``, ``int``, decimal string or ``float``.

    Floats go through ``repr`` (``0.1`` → ``Decimal('0.1')``), so no binary rounding noise
    enters the ledger.
    """
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a money amount cannot be a bool")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    raise TypeError(f"cannot convert {type(value).__name__} to a money amount")


def plain(amount: Decimal) -> Decimal:
    """``amount`` without trailing zeros and never in exponent form (``80``, not ``8E+1``)."""
    value = amount.normalize()
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        value = value.quantize(Decimal(1))
    return value


class _Priced(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

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


class ModelPrice(_Priced):
    """One model's prices, in USD per million tokens (fees per request or image in USD).

    ``cached_input`` (a prompt-cache read) and ``cache_write`` default to ``input``;
    ``reasoning`` defaults to ``output``.
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
    alternative: str | None = None
    source: str = Field(min_length=1)
    as_of: date
    notes: str | None = None

    @property
    def key(self) -> str:
        """``provider/model``."""
        return f"{self.provider}/{self.model}"

    def _rates(self, input_tokens: int) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(uncached input, cache read, cache write, output, reasoning) for a request's size."""
        tier = self.long_context
        if tier is not None and input_tokens > tier.threshold:
            cached = tier.cached_input if tier.cached_input is not None else tier.input
            write = tier.cache_write if tier.cache_write is not None else tier.input
            reasoning = tier.reasoning if tier.reasoning is not None else tier.output
            return tier.input, cached, write, tier.output, reasoning
        cached = self.cached_input if self.cached_input is not None else self.input
        write = self.cache_write if self.cache_write is not None else self.input
        reasoning = self.reasoning if self.reasoning is not None else self.output
        return self.input, cached, write, self.output, reasoning

    def cost(self, usage: Usage, *, images: int = 0) -> Decimal:
        """The exact bill of one call with this usage (uncached, cache-read, cache-write,
        output and reasoning tokens each at their own price, plus the fees)."""
        inp, cached, write, out, reasoning = self._rates(usage.input_tokens)
        reasoning_tokens = min(usage.reasoning_tokens, usage.output_tokens)
        add = _CTX.add
        total = ZERO
        # Buckets with no tokens add exactly nothing, so they are skipped.
        for tokens, rate in ((usage.uncached_input_tokens, inp),
                             (usage.cache_read_tokens, cached),
                             (usage.cache_write_tokens, write),
                             (usage.output_tokens - reasoning_tokens, out),
                             (reasoning_tokens, reasoning)):
            if tokens:
                total = add(total, _exact_per_token(tokens, rate))
        total = add(total, self.per_request)
        if images:
            total = add(total, _CTX.multiply(self.per_image, images))
        return _plain50(total) if total else ZERO

    def worst_case(self, input_tokens: int, output_tokens: int, *, images: int = 0) -> Decimal:
        """The most a call can cost: every input token uncached (or written to the cache, if
        that is dearer) and every output token at the dearer of the output and reasoning prices."""
        inp, _cached, write, out, reasoning = self._rates(input_tokens)
        add = _CTX.add
        total = add(_exact_per_token(input_tokens, max(inp, write)),
                    _exact_per_token(output_tokens, max(out, reasoning)))
        total = add(total, self.per_request)
        if images:
            total = add(total, _CTX.multiply(self.per_image, images))
        return _plain50(total) if total else ZERO


def _exact_per_token(tokens: int, price_per_million: Decimal) -> Decimal:
    return _CTX.divide(_CTX.multiply(Decimal(tokens), price_per_million), MILLION)


def _plain50(amount: Decimal) -> Decimal:
    """:func:`plain` in the 50-digit context."""
    value = amount.normalize(_CTX)
    if value.as_tuple().exponent > 0:  # type: ignore[operator]
        value = value.quantize(_ONE, context=_CTX)
    return value


def _normalise(model: str) -> str:
    name = model.strip().lower()
    while True:
        stripped = _SNAPSHOT_RE.sub("", name)
        if stripped == name:
            return name
        name = stripped


_FREE_NOTE = "OpenRouter :free variant"
_CACHE_SIZE = 4096


class PricingCatalog:
    """A validated set of :class:`ModelPrice` entries with lookup by provider and model.

    Lookup accepts the catalogue id, an alias, a dated snapshot (``gpt-4o-2024-08-06``,
    ``claude-3-5-haiku-20241022``), an OpenRouter id (``openai/gpt-4o``,
    ``anthropic/claude-3.5-sonnet``; ``…:free`` variants cost nothing) and, when the provider is
    not one the catalogue prices (an OpenAI-compatible server, the mock), the bare model id.
    Thread-safe: prices can be changed while calls are running.
    """

    def __init__(self, prices: Iterable[ModelPrice] = ()) -> None:
        self._lock = threading.RLock()
        self._entries: dict[tuple[str, str], ModelPrice] = {}
        self._index: dict[tuple[str, str], ModelPrice] = {}
        self._by_model: dict[str, ModelPrice] = {}
        self._providers: set[str] = set()
        self._warned: set[tuple[str | None, str]] = set()
        # Lookup results by (model, provider), dropped whenever an entry changes.
        self._cache: dict[tuple[str, str | None], ModelPrice | None] = {}
        for price in prices:
            self.add(price)

    # -- loading --------------------------------------------------------------------------

    @staticmethod
    def parse(document: Any, *, origin: str = "<data>") -> list[ModelPrice]:
        """Validate a catalogue document (``{"models": [...]}`` or a bare list) into prices.

        Raises :class:`~llm_async.errors.ConfigurationError` naming the bad entry.
        """
        items = document.get("models") if isinstance(document, Mapping) else document
        if not isinstance(items, list):
            raise ConfigurationError(f"{origin}: a pricing catalogue needs a 'models' list")
        prices: list[ModelPrice] = []
        seen: set[tuple[str, str]] = set()
        for index, item in enumerate(items):
            try:
                price = ModelPrice.model_validate(item)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in err["loc"])
                name = item.get("model") if isinstance(item, Mapping) else None
                raise ConfigurationError(
                    f"{origin}: models[{index}] ({name!r}): {where}: {err['msg']}"
                ) from None
            for ident in (price.model, *price.aliases):
                key = (price.provider, ident.lower())
                if key in seen:
                    raise ConfigurationError(f"{origin}: duplicate price for {key[0]}/{key[1]}")
                seen.add(key)
            prices.append(price)
        return prices

    @classmethod
    def default(cls) -> PricingCatalog:
        """The catalogue shipped with the package."""
        text = resources.files("llm_async.data").joinpath("pricing.json").read_text("utf-8")
        return cls(cls.parse(json.loads(text), origin="llm_async/data/pricing.json"))

    @classmethod
    def from_file(cls, path: str | Path) -> PricingCatalog:
        """A catalogue made only of the prices in ``path``."""
        catalog = cls()
        catalog.load_file(path)
        return catalog

    def load_file(self, path: str | Path) -> int:
        """Add (or override) every price in the JSON file ``path``; returns how many."""
        p = Path(path)
        try:
            document = json.loads(p.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read pricing file {p}: {exc}") from exc
        prices = self.parse(document, origin=str(p))
        for price in prices:
            self.add(price)
        return len(prices)

    # -- editing --------------------------------------------------------------------------

    def add(self, price: ModelPrice) -> None:
        """Add ``price``, replacing any entry with the same provider and model."""
        with self._lock:
            key = (price.provider, price.model.lower())
            old = self._entries.pop(key, None)
            self._entries[key] = price
            if old is not None:
                self._rebuild()
            else:
                self._index_price(price)
            self._warned = {w for w in self._warned if w[1] not in self._ids(price)}

    def set_price(self, model: str, *, input: Any, output: Any, provider: str = "custom",
                  cached_input: Any = None, cache_write: Any = None, reasoning: Any = None,
                  per_request: Any = 0, per_image: Any = 0, aliases: Iterable[str] = (),
                  source: str = "set in code", as_of: date | None = None) -> ModelPrice:
        """Add or override one model's prices (USD per million tokens) and return the entry."""
        values: dict[str, Any] = {
            "provider": provider, "model": model, "aliases": tuple(aliases),
            "input": to_decimal(input), "output": to_decimal(output),
            "per_request": to_decimal(per_request), "per_image": to_decimal(per_image),
            "source": source, "as_of": as_of or date.today(),
        }
        for name, value in (("cached_input", cached_input), ("cache_write", cache_write),
                            ("reasoning", reasoning)):
            if value is not None:
                values[name] = to_decimal(value)
        try:
            price = ModelPrice.model_validate(values)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise ConfigurationError(
                f"invalid price for {model!r}: {'.'.join(map(str, err['loc']))}: {err['msg']}"
            ) from None
        self.add(price)
        return price

    def remove(self, model: str, provider: str) -> bool:
        """Remove an entry; returns whether there was one."""
        with self._lock:
            found = self._entries.pop((provider, model.lower()), None) is not None
            if found:
                self._rebuild()
            return found

    @staticmethod
    def _ids(price: ModelPrice) -> set[str]:
        return {price.model.lower(), *(a.lower() for a in price.aliases),
                *(o.lower() for o in price.openrouter)}

    def _index_price(self, price: ModelPrice) -> None:
        self._cache.clear()
        self._providers.add(price.provider)
        if price.openrouter:
            self._providers.add("openrouter")
        for ident in (price.model, *price.aliases):
            self._index[(price.provider, ident.lower())] = price
            self._by_model.setdefault(ident.lower(), price)
        for ident in price.openrouter:
            self._index[("openrouter", ident.lower())] = price
            self._by_model.setdefault(ident.lower(), price)

    def _rebuild(self) -> None:
        self._cache.clear()
        self._index.clear()
        self._by_model.clear()
        self._providers.clear()
        for price in self._entries.values():
            self._index_price(price)

    # -- lookup ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ModelPrice]:
        with self._lock:
            return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model) is not None

    @property
    def providers(self) -> set[str]:
        """Providers the catalogue prices (OpenRouter included when it lists any id)."""
        with self._lock:
            return set(self._providers)

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model`` as served by ``provider``, or ``None`` when unknown."""
        key = (model, provider)
        try:
            return self._cache[key]
        except KeyError:
            pass
        with self._lock:
            found = self._lookup(model, provider)
            if not (found is not None and found.notes == _FREE_NOTE):
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = found
            return found

    def _lookup(self, model: str, provider: str | None) -> ModelPrice | None:
        name = model.strip().lower()
        free = False
        base, colon, variant = name.partition(":")
        if colon and "/" in base:
            name, free = base, variant == "free"
        candidates = [name] if _normalise(name) == name else [name, _normalise(name)]
        found: ModelPrice | None = None
        if provider is not None:
            for cand in candidates:
                found = self._index.get((provider, cand))
                if found:
                    break
        if found is None and "/" in name:
            vendor, _, rest = name.partition("/")
            if vendor in _VENDORS:
                for cand in (rest, _normalise(rest), _DOTTED_VERSION_RE.sub("-", _normalise(rest))):
                    found = self._index.get((vendor, cand))
                    if found:
                        break
        if found is None and (provider is None or provider not in self._providers):
            for cand in candidates:
                found = self._by_model.get(cand)
                if found:
                    break
        if free:
            return ModelPrice(
                provider="openrouter", model=model, input=ZERO, output=ZERO,
                source="OpenRouter ':free' variants are free of charge",
                as_of=found.as_of if found is not None else date.today(),
                notes=_FREE_NOTE,
            )
        return found

    def cost(self, model: str, usage: Usage, *, provider: str | None = None,
             images: int = 0) -> Decimal | None:
        """The bill of one call, or ``None`` (with one warning per model) when unpriced."""
        price = self.lookup(model, provider)
        if price is None:
            self.warn_unknown(model, provider)
            return None
        return price.cost(usage, images=images)

    def warn_unknown(self, model: str, provider: str | None) -> None:
        """Log, once per model, that ``model`` has no price."""
        key = (provider, model)
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logger.warning(
            "no price for model %r (provider %s): its cost is unknown (None), not zero. Add it "
            "with get_pricing_catalog().set_price(%r, input=..., output=...) or load_file().",
            model, provider or "unknown", model,
        )

    def __repr__(self) -> str:
        return f"PricingCatalog({len(self._entries)} models, providers={sorted(self.providers)})"


_default_lock = threading.Lock()
_default: PricingCatalog | None = None


def get_pricing_catalog() -> PricingCatalog:
    """The process-wide catalogue (the packaged prices plus whatever was added in code)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PricingCatalog.default()
    return _default
