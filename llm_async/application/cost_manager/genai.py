"""Prices from the ``genai-prices`` package, read from the data bundled in its wheel.

Its network auto-update (``UpdatePrices``) is never started here: the data is the one the
installed release carries (upgrade the package for newer prices).
"""

from __future__ import annotations

import re
import threading
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from .pricing import ModelPrice

__all__ = ["MaintainedPrices"]

_CACHE_SIZE = 4096
#: OpenRouter's dotted versions (``claude-3.5-sonnet``) → Anthropic's (``claude-3-5-sonnet``).
_DOTTED_VERSION_RE = re.compile(r"(?<=\d)\.(?=\d)")

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

    def preload(self) -> None:
        """Read the bundled price data now."""
        self._data()

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
        attempts: list[tuple[str, str | None]] = []
        vendor, slash, rest = name.partition("/")
        if slash and pid in ("openrouter", None) and vendor in _GENAI_PROVIDERS:
            # OpenRouter bills a vendor's model at the vendor's own prices (its cache prices
            # included), so the vendor's entry comes first.
            attempts += [(rest, _GENAI_PROVIDERS[vendor]),
                         (_DOTTED_VERSION_RE.sub("-", rest), _GENAI_PROVIDERS[vendor])]
        attempts.append((name, pid))
        for model_ref, provider_id in attempts:
            try:
                found, info = snapshot.find_provider_model(model_ref, None, provider_id, None)
            except LookupError:
                continue
            break
        else:
            return None
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

