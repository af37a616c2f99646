"""Model prices (a re-export of :mod:`llm_async.application.cost_manager.pricing`,
:mod:`~llm_async.application.cost_manager.catalogue` and
:mod:`~llm_async.application.cost_manager.genai`)."""

from __future__ import annotations

from .cost_manager.catalogue import PricingCatalog, get_pricing_catalog, how_to_price
from .cost_manager.genai import MaintainedPrices
from .cost_manager.pricing import LongContextTier, ModelPrice, plain, to_decimal

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
