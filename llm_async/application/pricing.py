"""The pricing catalogue (a re-export of :mod:`llm_async.application.cost_manager.pricing`)."""

from __future__ import annotations

from .cost_manager.pricing import (
    LongContextTier,
    MaintainedPrices,
    ModelPrice,
    PricingCatalog,
    get_pricing_catalog,
    how_to_price,
    plain,
    to_decimal,
)

__all__ = [
    "LongContextTier",
    "MaintainedPrices",
    "ModelPrice",
    "PricingCatalog",
    "get_pricing_catalog",
    "how_to_price",
    "plain",
    "to_decimal",
]
