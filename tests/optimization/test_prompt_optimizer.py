"""PromptOptimizer: whitespace, redundancy, budgets, and what it must never touch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from llm_async.errors import InvalidRequestError
from llm_async.optimization import PromptOptimizer
from llm_async.optimization.prompt import OptimizedPrompt

CODE = "```python\ndef f(x):\n    return  x  *  2   # spacing kept\n```\n"
QUOTE = "> the   quoted   line stays\n"


def test_documented_call_returns_text_and_a_report() -> None:
    long_prompt = "Summarise the findings.   Summarise the findings.\n\n\n\nBe brief.\n" * 3
    optimizer = PromptOptimizer()
    optimized = optimizer.optimize(text=long_prompt, max_tokens=1000, remove_redundancy=True)
    assert isinstance(optimized, str) and isinstance(optimized, OptimizedPrompt)
    assert optimized.text == str(optimized)
    assert optimized.count("Summarise the findings.") == 1
    assert "\n\n\n" not in optimized
    report = optimized.report
    assert report.tokens_saved > 0 and report.tokens_saved == optimized.tokens_saved
    assert report.duplicates_removed >= 2 and not report.truncated
    assert report.optimized_tokens == optimizer.estimate(optimized)


def test_code_blocks_and_quotes_are_never_changed() -> None:
    text = (f"Intro   text.\n{CODE}{CODE}{QUOTE}{QUOTE}"
            'He said "keep   these   spaces" twice. He said "keep   these   spaces" twice.')
    out = PromptOptimizer().optimize(text)
    assert out.count(CODE.strip()) == 2  # duplicated code is not "redundant"
    assert out.count(QUOTE.strip()) == 2
    assert out.count('"keep   these   spaces"') == 2
    assert out.startswith("Intro text.")


def test_protection_can_be_switched_off() -> None:
    text = f"{CODE}{CODE}"
    out = PromptOptimizer().optimize(text, protect_code=False)
    assert "return x * 2 # spacing kept" in out


@pytest.mark.parametrize("strategy", ["head", "tail", "middle"])
def test_truncation_respects_the_budget(strategy: str) -> None:
    words = " ".join(f"word{i}" for i in range(300))
    optimizer = PromptOptimizer()
    out = optimizer.optimize(words, max_tokens=50, strategy=strategy)  # type: ignore[arg-type]
    assert optimizer.estimate(out) <= 50
    assert out.report.truncated and out.report.strategy == strategy
    assert "[…]" in out
    if strategy == "head":
        assert out.startswith("word0 ") and "word299" not in out
    elif strategy == "tail":
        assert out.endswith("word299") and "word0 " not in out
    else:
        assert out.startswith("word0 ") and out.endswith("word299")


def test_truncation_keeps_or_drops_code_whole() -> None:
    text = "Start here.\n" + CODE + " ".join(["tail"] * 200)
    optimizer = PromptOptimizer()
    out = optimizer.optimize(text, max_tokens=8, strategy="head")
    assert "```" not in out and out.startswith("Start here.")
    roomy = optimizer.optimize(text, max_tokens=60, strategy="head")
    assert CODE.strip() in roomy


def test_short_repeats_are_kept() -> None:
    out = PromptOptimizer().optimize("Yes.\nYes.\nNo.")
    assert out == "Yes.\nYes.\nNo."


def test_bad_arguments_are_typed_errors() -> None:
    optimizer = PromptOptimizer()
    with pytest.raises(InvalidRequestError):
        optimizer.optimize("x", strategy="sideways")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        optimizer.optimize("x", max_tokens=-1)
    with pytest.raises(InvalidRequestError):
        optimizer.optimize(None)  # type: ignore[arg-type]


def test_custom_estimator() -> None:
    optimizer = PromptOptimizer(estimator=len, marker="")
    out = optimizer.optimize("abcdef ghijkl mnopqr", max_tokens=14)
    assert len(out) <= 14 and out == "abcdef ghijkl"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .\n\t\"`>")), max_size=200),
       st.integers(min_value=0, max_value=40),
       st.sampled_from(["head", "tail", "middle"]))
def test_never_exceeds_the_budget_and_never_grows(text: str, budget: int, strategy: str) -> None:
    optimizer = PromptOptimizer()
    out = optimizer.optimize(text, max_tokens=budget, strategy=strategy)  # type: ignore[arg-type]
    assert optimizer.estimate(out) <= budget
    unbounded = optimizer.optimize(text)
    assert len(unbounded) <= len(text) and "\x00" not in unbounded + out
