"""Advice computed from the ledger, each piece with the saving it would have brought."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from ...types import Usage
from .money import ZERO, from_nano, quantize
from .records import Counter, Recommendation, UsageRecord

if TYPE_CHECKING:
    from .catalogue import PricingCatalog
    from .ledger import Ledger

__all__ = ["CostBooks", "recommend"]


class CostBooks(Protocol):
    """What advice reads: the ledger and the price list (a
    :class:`~llm_async.application.cost_manager.CostManager` is one)."""

    @property
    def backend(self) -> Ledger: ...

    @property
    def pricing(self) -> PricingCatalog: ...


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _calls(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def recommend(
    manager: CostBooks,
    *,
    min_share: float = 0.3,
    min_prefix_tokens: int = 1024,
    input_output_ratio: float = 20.0,
    min_input_tokens: int = 2000,
    sample: int = 10_000,
) -> list[Recommendation]:
    """Advice computed from the ledger, dearest saving first.

    * ``cheaper_model``: a model with at least ``min_share`` of the spend, and what the
      same tokens would have cost on the cheaper ``alternative`` the catalogue names;
    * ``response_cache``: identical prompts paid for more than once (the repeats' cost);
    * ``prompt_caching``: repeated prompt prefixes of at least ``min_prefix_tokens`` that
      were billed uncached (those tokens at the cache-read instead of the input price);
    * ``trim_prompts``: calls whose input is ``input_output_ratio`` times their output
      and at least ``min_input_tokens`` (half of their uncached input cost);
    * ``unpriced_models``: calls whose cost is unknown (no saving; add their prices).

    The per-call kinds look at the last ``sample`` records.
    """
    recs: list[Recommendation] = []
    total = manager.backend.dimension("all").get("", Counter())
    spend = from_nano(total.cost)
    if spend > 0:
        for model, counter in sorted(manager.backend.dimension("model").items()):
            cost = from_nano(counter.cost)
            share = float(cost / spend)
            if share < min_share or cost <= 0:
                continue
            price = manager.pricing.lookup(model)
            if price is None or not price.alternative:
                continue
            alt = (manager.pricing.lookup(price.alternative, price.provider)
                   or manager.pricing.lookup(price.alternative))
            if alt is None:
                continue
            usage = Usage(input_tokens=counter.input_tokens,
                          output_tokens=counter.output_tokens,
                          cache_read_tokens=counter.cache_read_tokens,
                          cache_write_tokens=counter.cache_write_tokens,
                          reasoning_tokens=counter.reasoning_tokens)
            alt_cost = quantize(alt.cost(usage))
            saving = cost - alt_cost
            if saving > 0:
                recs.append(Recommendation(
                    kind="cheaper_model",
                    message=(f"{model} takes {share:.0%} of the spend (${cost} over "
                             f"{_calls(counter.requests)}); the same tokens on "
                             f"{alt.model} would cost ${alt_cost}"),
                    estimated_saving=saving,
                    details={"model": model, "alternative": alt.model, "cost": cost,
                             "alternative_cost": alt_cost, "share": round(share, 4),
                             "requests": counter.requests},
                ))
    records = [r for r in manager.backend.recent(sample) if not r.cache_hit]
    recs.extend(_repeats(manager, records, min_prefix_tokens))
    heavy = [r for r in records if r.input_tokens >= min_input_tokens
             and r.input_tokens >= input_output_ratio * max(1, r.output_tokens)]
    if heavy:
        saving = ZERO
        for r in heavy:
            price = manager.pricing.lookup(r.model, r.provider)
            if price is not None:
                saving += price.cost(Usage(input_tokens=r.uncached_input_tokens)) / 2
        saving = quantize(saving)
        if saving > 0:
            recs.append(Recommendation(
                kind="trim_prompts",
                message=(f"{len(heavy)} calls sent at least {input_output_ratio:g}× more "
                         f"input than they got output; cutting those prompts by half "
                         f"(trim history, retrieve fewer passages) saves about ${saving}"),
                estimated_saving=saving,
                details={"calls": len(heavy), "assumed_reduction": 0.5},
            ))
    if total.unpriced:
        models = sorted({r.model for r in records if r.cost is None})
        recs.append(Recommendation(
            kind="unpriced_models",
            message=(f"{total.unpriced} calls have no known cost (models: "
                     f"{', '.join(models) or 'unknown'}); add their prices to the "
                     f"catalogue so budgets can count them"),
            estimated_saving=ZERO,
            details={"calls": total.unpriced, "models": models},
        ))
    recs.sort(key=lambda r: r.estimated_saving, reverse=True)
    return recs

def _repeats(manager: CostBooks, records: Sequence[UsageRecord],
         min_prefix_tokens: int) -> list[Recommendation]:
    recs: list[Recommendation] = []
    by_prompt: dict[str, list[UsageRecord]] = {}
    by_prefix: dict[str, list[UsageRecord]] = {}
    for r in records:
        if r.prompt_hash:
            by_prompt.setdefault(r.prompt_hash, []).append(r)
        if r.prefix_hash and r.prefix_tokens >= min_prefix_tokens:
            by_prefix.setdefault(r.prefix_hash, []).append(r)
    repeats = 0
    saving = ZERO
    prompts = 0
    for group in by_prompt.values():
        if len(group) > 1:
            prompts += 1
            repeats += len(group) - 1
            saving += sum((r.cost or ZERO for r in group[1:]), ZERO)
    if saving > 0:
        recs.append(Recommendation(
            kind="response_cache",
            message=(f"identical prompts were paid for again {_times(repeats)} "
                     f"({prompts} distinct prompt{'s' if prompts != 1 else ''}); a response "
                     f"cache (cache_enabled=True) would have saved ${saving}"),
            estimated_saving=saving,
            details={"prompts": prompts, "repeats": repeats},
        ))
    saving = ZERO
    potential = observed = 0
    for group in by_prefix.values():
        if len(group) < 2:
            continue
        for r in group[1:]:
            price = manager.pricing.lookup(r.model, r.provider)
            cacheable = r.prefix_tokens
            potential += cacheable
            observed += min(r.cache_read_tokens, cacheable)
            missed = max(0, cacheable - r.cache_read_tokens)
            if price is not None and missed:
                full = price.cost(Usage(input_tokens=missed))
                cached = price.cost(Usage(input_tokens=missed, cache_read_tokens=missed))
                saving += full - cached
    saving = quantize(saving)
    if saving > 0 and potential and observed / potential < 0.5:
        recs.append(Recommendation(
            kind="prompt_caching",
            message=(f"repeated prompt prefixes were served from the provider's prompt cache "
                     f"for only {observed / potential:.0%} of their tokens; keeping the "
                     f"shared prefix first and unchanged (and marking it with "
                     f"cache_control on Anthropic) would save about ${saving}"),
            estimated_saving=saving,
            details={"cacheable_tokens": potential, "cached_tokens": observed},
        ))
    return recs

