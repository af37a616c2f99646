"""The pricing catalogue: the shipped file validates, lookups resolve every id form, unknown
models are None (never zero) with one warning, overrides work, and money stays exact."""

from __future__ import annotations

import json
import logging
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from llm_async import ConfigurationError, Usage
from llm_async.application.pricing import ModelPrice, PricingCatalog, get_pricing_catalog


def test_prices_come_from_genai_prices_offline_and_the_overrides_file_is_small() -> None:
    from genai_prices import data_snapshot

    catalog = PricingCatalog.default()
    raw = json.loads(Path(__file__).parents[2].joinpath(
        "llm_async/data/pricing.json").read_text("utf-8"))
    assert len(catalog) == len(raw["models"])  # only models genai-prices lacks
    for key, info in raw["model_info"].items():
        provider, _, model = key.partition("/")
        price = catalog.lookup(model, provider)
        assert price is not None, key
        assert price.source.startswith("genai-prices "), key
        assert price.output >= price.input > 0, key
        if price.cached_input is not None:
            assert price.cached_input < price.input, key
        assert price.max_output_tokens == info.get("max_output_tokens"), key
        if "alternative" in info:
            alt = catalog.lookup(info["alternative"], provider)
            assert alt is not None, f"{key}: alternative {info['alternative']} unknown"
            assert alt.output < price.output, key
    # Read from the data bundled in the wheel: the network auto-update was never started.
    assert data_snapshot._custom_snapshot is None


def test_each_price_is_resolved_once_into_integer_rates() -> None:
    catalog = PricingCatalog.default()
    first = catalog.lookup("gpt-4o-mini", "openai")
    assert first is not None and catalog.lookup("gpt-4o-mini", "openai") is first
    assert first.cost_nano(Usage(input_tokens=1000, output_tokens=500)) == 450_000
    assert first.cost(Usage(input_tokens=1000, output_tokens=500)) == Decimal("0.00045")
    # The worst case rounds up, never down: 7 input tokens at $0.15/M is 1,050 nano-dollars.
    assert first.worst_case_nano(7, 0) == 1050 and first.worst_case_nano(1, 0) == 150
    odd = ModelPrice(provider="x", model="m", input=Decimal("0.0833333333333333"),
                     output=Decimal(1), source="s", as_of=date(2026, 1, 1))
    assert odd.worst_case_nano(3, 0) == 250  # 249.9999… nano-dollars, rounded up


def test_packaged_file_is_found_through_importlib_resources() -> None:
    from importlib import resources

    raw = resources.files("llm_async.data").joinpath("pricing.json").read_text("utf-8")
    assert json.loads(raw)["currency"] == "USD"


@pytest.mark.parametrize(
    ("model", "provider", "expected"),
    [
        ("gpt-4o", "openai", "openai/gpt-4o"),
        ("gpt-4o-2024-08-06", "openai", "openai/gpt-4o"),
        ("gpt-4-0613", "openai", "openai/gpt-4"),
        ("chatgpt-4o-latest", "openai", "openai/chatgpt-4o-latest"),
        ("openai/gpt-4o", "openrouter", "openai/gpt-4o"),
        ("openai/gpt-4o:nitro", "openrouter", "openai/gpt-4o"),
        ("anthropic/claude-3.5-sonnet", "openrouter", "anthropic/claude-3-5-sonnet"),
        ("meta-llama/llama-3.3-70b-instruct", "openrouter",
         "openrouter/meta-llama/llama-3.3-70b-instruct"),
        ("claude-3-5-haiku-20241022", "anthropic", "anthropic/claude-3-5-haiku-latest"),
        ("claude-sonnet-4-5", "anthropic", "anthropic/claude-sonnet-4-5"),
        ("google/gemini-2.5-pro", "openrouter", "google/gemini-2.5-pro"),
        ("gpt-4", None, "openai/gpt-4"),
        ("gpt-4o-mini", "mock", "openai/gpt-4o-mini"),  # unpriced provider: by model id
    ],
)
def test_lookup_forms(model: str, provider: str | None, expected: str) -> None:
    price = get_pricing_catalog().lookup(model, provider)
    assert price is not None
    assert price.key == expected


def test_a_priced_provider_does_not_borrow_other_providers_prices() -> None:
    assert get_pricing_catalog().lookup("gpt-4o", "anthropic") is None


def test_openrouter_free_variants_cost_nothing() -> None:
    catalog = get_pricing_catalog()
    price = catalog.lookup("meta-llama/llama-3.3-70b-instruct:free", "openrouter")
    assert price is not None
    assert price.cost(Usage(input_tokens=10_000, output_tokens=10_000)) == 0


def test_unknown_model_is_none_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PricingCatalog.default()
    with caplog.at_level(logging.WARNING, logger="llm_async.cost"):
        first = catalog.cost("my-local-llama", Usage(input_tokens=5, output_tokens=5),
                             provider="openai")
        second = catalog.cost("my-local-llama", Usage(input_tokens=5, output_tokens=5),
                              provider="openai")
    assert first is None and second is None
    warnings = [r for r in caplog.records if "my-local-llama" in r.getMessage()]
    assert len(warnings) == 1
    assert "unknown (None), not zero" in warnings[0].getMessage()


def test_set_price_overrides_and_adds(caplog: pytest.LogCaptureFixture) -> None:
    catalog = PricingCatalog.default()
    catalog.set_price("my-local-llama", input="0.10", output=0.2, provider="openai",
                      cached_input="0.01")
    cost = catalog.cost("my-local-llama", Usage(input_tokens=1_000_000, output_tokens=500_000,
                                                 cache_read_tokens=500_000), provider="openai")
    assert cost == Decimal("0.155")  # 0.05 + 0.005 + 0.10
    catalog.set_price("gpt-4o", input=1, output=2, provider="openai")
    price = catalog.lookup("gpt-4o-2024-11-20", "openai")
    assert price is not None and price.input == 1 and price.source == "set in code"
    # OpenRouter bills OpenAI models at OpenAI's price, so its id follows the override.
    routed = catalog.lookup("openai/gpt-4o", "openrouter")
    assert routed is not None and routed.input == 1


def test_load_file_merges_and_validates(tmp_path: Path) -> None:
    good = tmp_path / "prices.json"
    good.write_text(json.dumps({"models": [{
        "provider": "openai", "model": "gpt-4o", "input": "2.00", "output": "8.00",
        "source": "https://example.com/contract", "as_of": "2026-11-01"}]}))
    catalog = PricingCatalog.default()
    assert catalog.load_file(good) == 1
    price = catalog.lookup("gpt-4o", "openai")
    assert price is not None and price.input == Decimal("2.00")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": [{"provider": "openai", "model": "x", "input": "-1",
                                           "output": "1", "source": "s", "as_of": "2026-01-01"}]}))
    with pytest.raises(ConfigurationError, match=r"models\[0\] \('x'\): input"):
        catalog.load_file(bad)
    dup = tmp_path / "dup.json"
    entry = {"provider": "p", "model": "m", "input": "1", "output": "1", "source": "s",
             "as_of": "2026-01-01"}
    dup.write_text(json.dumps([entry, entry]))
    with pytest.raises(ConfigurationError, match="duplicate price for p/m"):
        PricingCatalog.from_file(dup)
    with pytest.raises(ConfigurationError, match="cannot read pricing file"):
        catalog.load_file(tmp_path / "missing.json")


def test_long_context_tier_and_fees() -> None:
    price = ModelPrice.model_validate({
        "provider": "x", "model": "m", "input": "1", "output": "2", "per_request": "0.001",
        "per_image": "0.01", "source": "s", "as_of": "2026-01-01",
        "long_context": {"threshold": 100, "input": "10", "output": "20"}})
    small = price.cost(Usage(input_tokens=100, output_tokens=10), images=2)
    big = price.cost(Usage(input_tokens=101, output_tokens=10))
    assert small == Decimal("0.000100") + Decimal("0.000020") + Decimal("0.001") + Decimal("0.02")
    assert big == Decimal("0.00101") + Decimal("0.0002") + Decimal("0.001")
    assert price.worst_case(50, 10, images=1) == Decimal("0.00005") + Decimal("0.00002") \
        + Decimal("0.001") + Decimal("0.01")


def test_reasoning_price_applies_to_the_reasoning_part_of_output() -> None:
    price = ModelPrice(provider="x", model="m", input=Decimal(1), output=Decimal(2),
                       reasoning=Decimal(4), source="s", as_of=date(2026, 1, 1))
    assert price.cost(Usage(output_tokens=1000, reasoning_tokens=600)) == Decimal("0.0032")


def test_money_is_exact_over_many_small_bills() -> None:
    catalog = get_pricing_catalog()
    one = catalog.cost("gpt-5-nano", Usage(input_tokens=1, output_tokens=1, cache_read_tokens=1),
                       provider="openai")
    assert one == Decimal("0.000000405")  # 0.005 + 0.40 per million, one token each
    total = sum((one for _ in range(1_000_000)), Decimal(0))
    assert total == Decimal("0.405")
    assert float(one) * 1_000_000 != 0.405  # what a float ledger would drift to
