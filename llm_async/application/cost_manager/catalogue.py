"""The pricing catalogue: where a model's price is looked up.

Prices come from two places, looked up in this order:

1. **Overrides**: ``llm_async/data/pricing.json`` (models the maintained source lacks, each with
   its ``source`` and ``as_of`` date, and per model the cheaper ``alternative`` the
   recommendations suggest and the documented ``max_output_tokens``), plus whatever you add with
   :meth:`PricingCatalog.set_price` or :meth:`PricingCatalog.load_file`;
2. **genai-prices** (:mod:`.genai`), the maintained price database that ships its data inside
   its wheel, read offline, once per model.

A model neither knows has no price: :meth:`PricingCatalog.cost` returns ``None`` and logs one
warning per model — never a silent zero.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...errors import ConfigurationError
from ...types import Usage
from .genai import MaintainedPrices
from .money import ZERO, to_decimal
from .pricing import ModelPrice

__all__ = ["PricingCatalog", "get_pricing_catalog", "how_to_price"]

logger = logging.getLogger("llm_async.cost")

#: Snapshot suffixes stripped when looking a model up: ``-2024-08-06``, ``-20241022``, ``-0613``,
#: ``-latest``.
_SNAPSHOT_RE = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")
#: OpenRouter's dotted versions (``claude-3.5-sonnet``) → Anthropic's (``claude-3-5-sonnet``).
_DOTTED_VERSION_RE = re.compile(r"(?<=\d)\.(?=\d)")
_VENDORS = ("openai", "anthropic")


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
        self._resolved: set[tuple[str, str | None]] = set()
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

    def preload(self) -> None:
        """Read the maintained price data now (a few hundred milliseconds of CPU, once per
        process) instead of on the first call that needs a price: call it at start-up, or in a
        worker thread, to keep that off the first calls' path."""
        if self.maintained is not None:
            self.maintained.preload()

    def resolved(self, model: str, provider: str | None = None) -> bool:
        """Whether ``model`` at ``provider`` was looked up already (so looking it up again
        costs a dictionary read, not a first read of the price data)."""
        return (model, provider) in self._resolved

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model`` as served by ``provider``, or ``None`` when unknown."""
        key = (model, provider)
        try:
            return self._cache[key]
        except KeyError:
            pass
        if len(self._resolved) < _CACHE_SIZE:
            self._resolved.add(key)
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
    return (f"Add it with get_pricing_catalog().set_price({model!r}, input=..., output=...) "
            f"or load_file().")
