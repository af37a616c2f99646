"""How far the token estimator is from exact tokenizers: the error report over the sample
texts shipped with the package (the test suite recomputes the table in the docs with it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .tokens import _PROFILES, _heuristic

__all__ = ["ErrorReport", "measure_error", "sample_texts"]


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """How far estimates are from exact counts over a sample of texts.

    ``mean_abs_pct``: mean of ``|estimate - exact| / exact`` in percent; ``max_abs_pct``: the
    worst text; ``bias_pct``: ``(Σ estimate - Σ exact) / Σ exact`` in percent (negative means
    the estimator undercounts); ``per_text``: ``name -> (exact, estimate)``.
    """

    encoding: str
    texts: int
    mean_abs_pct: float
    max_abs_pct: float
    bias_pct: float
    per_text: dict[str, tuple[int, int]]

    def worst(self) -> tuple[str, float]:
        """The text with the largest relative error and that error in percent."""
        name, (exact, est) = max(self.per_text.items(),
                                 key=lambda kv: abs(kv[1][1] - kv[1][0]) / kv[1][0])
        return name, 100.0 * abs(est - exact) / exact


def measure_error(samples: Mapping[str, str], reference: Callable[[str], int], *,
                  encoding: str = "o200k_base") -> ErrorReport:
    """Compare the heuristic for ``encoding`` with ``reference`` (an exact counter)."""
    per: dict[str, tuple[int, int]] = {}
    for name, text in samples.items():
        exact = reference(text)
        if exact <= 0:
            continue
        per[name] = (exact, _heuristic(text, _PROFILES[encoding]))
    errors = [abs(e - x) / x for x, e in per.values()]
    total_exact = sum(x for x, _ in per.values())
    total_est = sum(e for _, e in per.values())
    return ErrorReport(
        encoding=encoding,
        texts=len(per),
        mean_abs_pct=round(100.0 * sum(errors) / len(errors), 1) if errors else 0.0,
        max_abs_pct=round(100.0 * max(errors), 1) if errors else 0.0,
        bias_pct=round(100.0 * (total_est - total_exact) / total_exact, 1) if total_exact else 0.0,
        per_text=per,
    )


def sample_texts() -> dict[str, str]:
    """The sample texts the estimator's error is measured on (shipped with the package)."""
    from importlib import resources

    raw = resources.files("llm_async.data").joinpath("token_samples.json").read_text("utf-8")
    texts = json.loads(raw)["texts"]
    return {str(k): str(v) for k, v in texts.items()}
