"""Model prices: where they come from, and the exact bill of an attempt in integer nano-dollars.

Prices come from two places, looked up in this order:

1. **Overrides**: ``llm_async/data/pricing.json`` (a short file: models the maintained source
   lacks, each with its ``source`` and ``as_of`` date, plus the cheaper ``alternative`` the
   recommendations suggest), whatever you add with :meth:`PricingCatalog.set_price` or
   :meth:`PricingCatalog.load_file`;
2. **genai-prices**, the maintained price database that ships its data inside its wheel. It is
   read offline, once per model; its network auto-update is never started.

A model neither knows has no price: :meth:`PricingCatalog.cost` returns ``None`` and logs one
warning per model — never a silent zero. Each price is resolved once into integer rates
(nano-dollars per million tokens), so billing an attempt is integer arithmetic::

    catalog = get_pricing_catalog()
    price = catalog.lookup("gpt-4o", provider="openai")
    price.cost(Usage(input_tokens=1000, output_tokens=500))   # Decimal('0.0075')
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ...errors import ConfigurationError
from ...types import Usage
from .money import ZERO, from_nano, plain, to_decimal, to_nano

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
# Bills computed in Decimal (only for prices finer than a nano-dollar per million tokens) use
# 50 significant digits: exact for any realistic usage.
_CTX = Context(prec=50, rounding=ROUND_HALF_EVEN)
_ONE = Decimal(1)
_NANO = 10**9

#: Snapshot suffixes stripped when looking a model up: ``-2024-08-06``, ``-20241022``, ``-0613``,
#: ``-latest``.
_SNAPSHOT_RE = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")
#: OpenRouter's dotted versions (``claude-3.5-sonnet``) → Anthropic's (``claude-3-5-sonnet``).
_DOTTED_VERSION_RE = re.compile(r"(?<=\d)\.(?=\d)")
_VENDORS = ("openai", "anthropic")


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

    # Integer rates, resolved once: (base, tier or None, threshold, per request, per image),
    # or None when a price is finer than one nano-dollar per million tokens.
    _ints: tuple[_IntRates, _IntRates | None, int, int, int] | None = PrivateAttr(default=None)
    _ints_done: bool = PrivateAttr(default=False)

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

    def _int_rates(self) -> tuple[_IntRates, _IntRates | None, int, int, int] | None:
        if self._ints_done:
            return self._ints
        base = _ints_of(_base_rates(self))
        tier = _ints_of(_tier_rates(self.long_context)) if self.long_context else None
        fees = _whole(self.per_request), _whole(self.per_image)
        ok = base is not None and (self.long_context is None or tier is not None) \
            and None not in fees
        if ok:
            assert base is not None and fees[0] is not None and fees[1] is not None
            self._ints = (base, tier, self.long_context.threshold if self.long_context else 0,
                          fees[0], fees[1])
        self._ints_done = True
        return self._ints

    def cost_nano(self, usage: Usage, *, images: int = 0) -> int:
        """The bill of one attempt with this usage in nano-dollars, rounded once (half-even):
        uncached, cache-read, cache-write, output and reasoning tokens each at their price,
        plus the fees."""
        ints = self._int_rates()
        if ints is None:
            return to_nano(self.cost(usage, images=images))
        base, tier, threshold, per_request, per_image = ints
        inp, cached, write, out, reasoning = (
            tier if tier is not None and usage.input_tokens > threshold else base)
        reasoning_tokens = min(usage.reasoning_tokens, usage.output_tokens)
        total = (usage.uncached_input_tokens * inp + usage.cache_read_tokens * cached
                 + usage.cache_write_tokens * write
                 + (usage.output_tokens - reasoning_tokens) * out
                 + reasoning_tokens * reasoning)
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
            total = (Decimal(input_tokens) * max(rates[0], rates[2])
                     + Decimal(output_tokens) * max(rates[3], rates[4])) / MILLION
            total += self.per_request + self.per_image * images
            nano = total * _NANO
            return int(nano.to_integral_value(rounding="ROUND_CEILING"))
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

    def __init__(self, prices: Iterable[ModelPrice] = (), *, maintained: bool = False) -> None:
        self._lock = threading.RLock()
        #: The maintained source (genai-prices), consulted after the entries; ``None`` for a
        #: catalogue made only of its entries.
        self.maintained: MaintainedPrices | None = MaintainedPrices() if maintained else None
        self._extra: dict[str, dict[str, Any]] = {}
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
        """The catalogue shipped with the package: the overrides file, then genai-prices."""
        text = resources.files("llm_async.data").joinpath("pricing.json").read_text("utf-8")
        document = json.loads(text)
        catalog = cls(cls.parse(document, origin="llm_async/data/pricing.json"),
                      maintained=True)
        for name, values in (document.get("model_info") or {}).items():
            catalog._extra[str(name).lower()] = dict(values)
        return catalog

    def model_info(self, price: ModelPrice) -> ModelPrice:
        """``price`` with the overrides file's ``alternative`` and ``max_output_tokens`` for its
        model (keyed ``provider/model``, snapshot suffixes ignored)."""
        extra = (self._extra.get(price.key.lower())
                 or self._extra.get(f"{price.provider}/{_normalise(price.model)}"))
        if not extra:
            return price
        update = {k: v for k, v in extra.items() if getattr(price, k) is None}
        return price.model_copy(update=update) if update else price

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
            if found is None and self.maintained is not None:
                found = self.maintained.lookup(model, provider)
                if found is not None:
                    found = self.model_info(found)
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
            "no price for model %r (provider %s): its cost is unknown (None), not zero. %s",
            model, provider or "unknown", how_to_price(model),
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


def how_to_price(model: str) -> str:
    """The sentence that tells how to give ``model`` a price."""
    return (f"Price it with get_pricing_catalog().set_price({model!r}, input=..., output=...) "
            f"(USD per million tokens) or PricingCatalog.load_file(path).")


#: genai-prices provider ids for the providers this library routes to (others are matched by
#: the model id alone).
_GENAI_PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "openrouter": "openrouter",
                    "google": "google", "gemini": "google", "mistral": "mistral",
                    "groq": "groq", "deepseek": "deepseek", "together": "together",
                    "x-ai": "x-ai", "xai": "x-ai", "azure": "azure", "bedrock": "aws"}


class MaintainedPrices:
    """Prices from the ``genai-prices`` package, read from the data bundled in its wheel.

    Its network auto-update (``UpdatePrices``) is never started here. Each ``(model,
    provider)`` is resolved once into a :class:`ModelPrice` (the prices in force when first
    asked; a price with several tiers keeps its first long-context tier). A model priced in
    units other than input and output tokens (characters, audio hours) has no price here.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: Any = None
        self._version = ""
        self._cache: dict[tuple[str, str | None], ModelPrice | None] = {}

    def _data(self) -> Any:
        if self._snapshot is None:
            with self._lock:
                if self._snapshot is None:
                    try:
                        from genai_prices import __version__, data_snapshot
                    except ImportError:  # pragma: no cover - a core dependency
                        self._snapshot = False
                    else:
                        self._version = __version__
                        self._snapshot = data_snapshot.get_snapshot()
        return self._snapshot

    def lookup(self, model: str, provider: str | None) -> ModelPrice | None:
        """The price of ``model`` at ``provider`` from genai-prices, or ``None``."""
        key = (model, provider)
        if key in self._cache:
            return self._cache[key]
        found = self._resolve(model, provider)
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _resolve(self, model: str, provider: str | None) -> ModelPrice | None:
        snapshot = self._data()
        if not snapshot:
            return None
        name = model.strip().lower()
        base, colon, _variant = name.partition(":")
        if colon and "/" in base:
            name = base
        pid = _GENAI_PROVIDERS.get(provider) if provider is not None else None
        try:
            found, info = snapshot.find_provider_model(name, None, pid, None)
        except LookupError:
            return None
        from datetime import datetime, timezone

        prices = info.get_prices(datetime.now(timezone.utc))
        return _from_genai(found.id, info.id, prices, self._version)


def _from_genai(provider: str, model: str, prices: Any, version: str) -> ModelPrice | None:
    values = {k: v for k, v in vars(prices).items() if v is not None and not k.startswith("_")}
    if "input_mtok" not in values or "output_mtok" not in values:
        return None
    fields = {"input": "input_mtok", "output": "output_mtok", "cached_input": "cache_read_mtok",
              "cache_write": "cache_write_mtok", "reasoning": "output_reasoning_mtok"}
    base: dict[str, Any] = {}
    tier: dict[str, Any] = {}
    threshold = 0
    for ours, theirs in fields.items():
        value = values.get(theirs)
        if value is None:
            continue
        tiers = getattr(value, "tiers", None)
        if tiers is not None:
            base[ours] = Decimal(value.base)
            first = min(tiers, key=lambda t: t.start)
            threshold = threshold or int(first.start)
            tier[ours] = Decimal(first.price)
        else:
            base[ours] = Decimal(value)
            tier[ours] = Decimal(value)
    requests = values.get("requests_kcount")
    entry: dict[str, Any] = {
        "provider": provider, "model": model, **base,
        "source": f"genai-prices {version} (data bundled in its wheel)",
        "as_of": date.today(),
    }
    if requests is not None and getattr(requests, "tiers", None) is None:
        entry["per_request"] = Decimal(requests) / 1000
    if threshold:
        entry["long_context"] = {"threshold": threshold, **tier}
    try:
        return ModelPrice.model_validate(entry)
    except ValidationError:
        return None
