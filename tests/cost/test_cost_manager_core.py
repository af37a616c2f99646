"""CostManager without the pipeline: the design document's examples, records, metrics, budgets
and their periods, soft-limit events, forecasts, recommendations, and the environment budgets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llm_async import BudgetExceededError, InvalidRequestError, Settings, Usage
from llm_async.application import cost_manager as cm
from llm_async.application.cost_manager import (
    BudgetConfig,
    BudgetEvent,
    BudgetPeriod,
    CostManager,
    get_cost_manager,
    period_window,
    set_cost_manager,
)

UTC = timezone.utc


class WallClock:
    """A settable UTC wall clock for periods and forecasts."""

    def __init__(self, when: datetime) -> None:
        self.when = when

    def __call__(self) -> datetime:
        return self.when


@pytest.fixture
def clock() -> WallClock:
    return WallClock(datetime(2026, 3, 18, 12, 0, tzinfo=UTC))  # a Wednesday, noon


@pytest.fixture
def manager(clock: WallClock) -> CostManager:
    return CostManager(now=clock)


@pytest.fixture
def fresh_global(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LLM_DAILY_BUDGET", "LLM_MONTHLY_BUDGET"):
        monkeypatch.delenv(name, raising=False)
    previous = set_cost_manager(None)
    yield
    set_cost_manager(previous)


def test_the_design_document_example_runs_as_written(
        fresh_global: None, capsys: pytest.CaptureFixture[str]) -> None:
    from llm_async.application.cost_manager import BudgetConfig, BudgetPeriod, get_cost_manager

    manager = get_cost_manager()

    # Set budget
    manager.set_budget(
        "daily_budget",
        BudgetConfig(limit=100.0, period=BudgetPeriod.DAILY)
    )

    # Track usage
    record = manager.track_usage(
        model="gpt-4",
        input_tokens=1000,
        output_tokens=500,
        user_id="user123",
    )

    # Get metrics
    metrics = manager.get_metrics()
    print(f"Total cost: ${metrics.total_cost:.2f}")

    # Get recommendations
    recommendations = manager.get_optimization_recommendations()
    for rec in recommendations:
        print(rec)

    manager.set_budget("daily", BudgetConfig(limit=100.0, period=BudgetPeriod.DAILY))
    status = manager.get_budget_status("daily")
    print(f"Usage: {status['percentage']}%")
    manager.set_budget("daily", BudgetConfig(limit=200.0))

    out = capsys.readouterr().out.splitlines()
    assert record.cost == Decimal("0.06")  # 1000 × $30 + 500 × $60 per million
    assert out[0] == "Total cost: $0.06"
    assert out[1].startswith("gpt-4 takes 100% of the spend ($0.06 over 1 call)")
    assert out[-1] == "Usage: 0.06%"
    assert manager.budgets["daily"].limit == Decimal("200.0")
    assert manager.budgets["daily"].period is BudgetPeriod.DAILY
    assert get_cost_manager() is manager


def test_env_budgets_create_daily_and_monthly(fresh_global: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_DAILY_BUDGET", "100.0")
    monkeypatch.setenv("LLM_MONTHLY_BUDGET", "3000")
    budgets = get_cost_manager().budgets
    assert budgets["daily"] == BudgetConfig(limit=Decimal("100.0"), period=BudgetPeriod.DAILY)
    assert budgets["monthly"] == BudgetConfig(limit=Decimal("3000.0"),
                                              period=BudgetPeriod.MONTHLY)
    # Settings passed to a client add the budgets it names, without replacing existing ones.
    other = CostManager()
    other.set_budget("daily", BudgetConfig(limit=5))
    other.apply_settings(Settings.from_env({"LLM_DAILY_BUDGET": "9", "LLM_MONTHLY_BUDGET": "7"}))
    assert other.budgets["daily"].limit == 5 and other.budgets["monthly"].limit == 7


def test_record_metrics_and_dict_forms(manager: CostManager) -> None:
    manager.track_usage("gpt-4o", 2000, 100, user_id="alice", project_id="web",
                        provider="openai", cache_read_tokens=1024)
    manager.track_usage("claude-3-5-haiku", 1000, 200, user_id="bob", provider="anthropic",
                        cache_write_tokens=800)
    unknown = manager.track_usage("my-own-model", 10, 10, user_id="bob", provider="openai")
    assert unknown.cost is None
    m = manager.get_metrics()
    gpt = Decimal("976") * Decimal("2.5") / 10**6 + Decimal("1024") * Decimal("1.25") / 10**6 \
        + Decimal("100") * 10 / 10**6
    haiku = Decimal("200") * Decimal("0.8") / 10**6 + Decimal("800") / 10**6 \
        + Decimal("200") * 4 / 10**6
    assert m.total_cost == gpt + haiku
    assert m.by_model == {"claude-3-5-haiku": haiku, "gpt-4o": gpt, "my-own-model": 0}
    assert m.by_user == {"alice": gpt, "bob": haiku}
    assert m.by_project == {"web": gpt}
    assert (m.requests, m.unpriced_requests) == (3, 1)
    assert (m.input_tokens, m.output_tokens, m.cache_read_tokens, m.cache_write_tokens) == (
        3010, 310, 1024, 800)
    d = m.to_dict()
    assert d["total_cost"] == m["total_cost"] == m.total_cost
    assert set(d) >= {"total_cost", "by_model", "by_user", "by_project", "requests",
                      "input_tokens", "output_tokens"}
    names = manager.metrics()
    assert names["cost.total"] == m.total_cost
    assert names["cost.by_model"] == m.by_model and names["cost.by_user"] == m.by_user
    assert names["cost.requests"] == 3


def test_track_usage_validates(manager: CostManager) -> None:
    with pytest.raises(InvalidRequestError, match="cannot exceed input_tokens"):
        manager.track_usage("gpt-4o", 10, 1, cache_read_tokens=11)
    with pytest.raises(InvalidRequestError, match="output_tokens must be >= 0"):
        manager.track_usage("gpt-4o", 10, -1)
    with pytest.raises(ValueError, match="at most one"):
        BudgetConfig(limit=1, user_id="a", model="gpt-4o")
    with pytest.raises(ValueError):
        BudgetConfig(limit=0)
    with pytest.raises(InvalidRequestError, match="unknown budget 'nope'"):
        manager.get_budget_status("nope")


def test_cache_hits_cost_nothing_and_provider_cost_wins(manager: CostManager) -> None:
    hit = manager.track_usage("gpt-4o", 5000, 500, cache_hit=True)
    assert hit.cost == 0 and hit.cache_hit
    routed = manager.track_usage("openai/gpt-4o", 1000, 100, provider="openrouter",
                                 provider_cost=0.0031)
    assert routed.cost == Decimal("0.0031") and routed.computed_cost == Decimal("0.0035")
    assert manager.get_metrics().cache_hits == 1


@pytest.mark.parametrize(
    ("period", "key", "start", "end"),
    [
        (BudgetPeriod.DAILY, "2026-03-18", datetime(2026, 3, 18, tzinfo=UTC),
         datetime(2026, 3, 19, tzinfo=UTC)),
        (BudgetPeriod.WEEKLY, "2026-W12", datetime(2026, 3, 16, tzinfo=UTC),
         datetime(2026, 3, 23, tzinfo=UTC)),
        (BudgetPeriod.MONTHLY, "2026-03", datetime(2026, 3, 1, tzinfo=UTC),
         datetime(2026, 4, 1, tzinfo=UTC)),
        (BudgetPeriod.TOTAL, "all", None, None),
    ],
)
def test_period_windows(period: BudgetPeriod, key: str, start: datetime | None,
                        end: datetime | None) -> None:
    assert period_window(period, datetime(2026, 3, 18, 12, tzinfo=UTC)) == (key, start, end)


def test_budgets_reset_with_their_period(manager: CostManager, clock: WallClock) -> None:
    manager.set_budget("day", BudgetConfig(limit=1, period=BudgetPeriod.DAILY))
    manager.set_budget("month", BudgetConfig(limit=10, period=BudgetPeriod.MONTHLY))
    manager.set_budget("ever", BudgetConfig(limit=100, period=BudgetPeriod.TOTAL))
    manager.track_usage("gpt-4", 10_000, 0)  # $0.30
    clock.when += timedelta(days=1)
    manager.track_usage("gpt-4", 10_000, 0)
    assert manager.get_budget_status("day").spent == Decimal("0.3")
    assert manager.get_budget_status("month").spent == Decimal("0.6")
    clock.when = datetime(2026, 4, 1, 0, 0, 1, tzinfo=UTC)
    assert manager.get_budget_status("month").spent == 0
    assert manager.get_budget_status("ever").spent == Decimal("0.6")
    status = manager.get_budget_status("day")
    assert status.resets_at == datetime(2026, 4, 2, tzinfo=UTC)
    assert status.period_start == datetime(2026, 4, 1, tzinfo=UTC)


def test_scoped_budgets_count_only_their_calls(manager: CostManager) -> None:
    manager.set_budget("alice", BudgetConfig(limit=1, user_id="alice"))
    manager.set_budget("web", BudgetConfig(limit=1, project_id="web"))
    manager.set_budget("gpt4", BudgetConfig(limit=1, model="gpt-4"))
    manager.track_usage("gpt-4", 10_000, 0, user_id="alice")            # 0.30
    manager.track_usage("gpt-4o", 10_000, 0, user_id="bob", project_id="web")  # 0.025
    assert manager.get_budget_status("alice").spent == Decimal("0.3")
    assert manager.get_budget_status("alice").scope == "user:alice"
    assert manager.get_budget_status("web").spent == Decimal("0.025")
    assert manager.get_budget_status("gpt4").spent == Decimal("0.3")
    # Reservations go only to the budgets the call falls under.
    res = manager.reserve(Decimal("0.5"), model="gpt-4o", user_id="carol", project_id="web")
    assert res is not None and res.budgets == ("web",)
    assert manager.get_budget_status("web").reserved == Decimal("0.5")
    with pytest.raises(BudgetExceededError) as info:
        manager.reserve(Decimal("0.5"), model="gpt-4o", project_id="web")
    err = info.value
    assert (err.budget, err.limit, err.spent, err.reserved, err.requested) == (
        "web", Decimal(1), Decimal("0.025"), Decimal("0.5"), Decimal("0.5"))
    manager.release(res)
    assert manager.get_budget_status("web").reserved == 0
    assert manager.reserve(Decimal("0.5"), model="gpt-4o", user_id="dave") is None  # no budget


def test_soft_limit_event_log_and_metric(manager: CostManager,
                                         caplog: pytest.LogCaptureFixture) -> None:
    events: list[BudgetEvent] = []
    unsubscribe = manager.subscribe(events.append)
    manager.subscribe(lambda e: 1 / 0)  # a broken listener is logged, not raised
    manager.set_budget("d", BudgetConfig(limit=1, soft_limit=0.5, hard_limit=False))
    with caplog.at_level(logging.WARNING, logger="llm_async.cost"):
        manager.track_usage("gpt-4", 10_000, 0)   # 0.30
        manager.track_usage("gpt-4", 10_000, 0)   # 0.60: crosses 50%
        manager.track_usage("gpt-4", 10_000, 0)   # 0.90: already past, no new event
        manager.track_usage("gpt-4", 10_000, 0)   # 1.20: reaches the limit
    assert [(e.kind, e.spent) for e in events] == [("soft_limit", Decimal("0.6")),
                                                   ("limit_reached", Decimal("1.2"))]
    assert events[0].threshold == Decimal("0.5") and events[0].budget == "d"
    crossed = [r for r in caplog.records if "crossed its soft limit" in r.getMessage()]
    assert len(crossed) == 1 and crossed[0].levelno == logging.WARNING
    assert manager.metrics()["cost.budget.soft_limit_crossings"] == 1
    assert manager.metrics()["cost.budget.limit_reached"] == 1
    status = manager.get_budget_status("d")
    assert status["soft_limit_reached"] and status["exceeded"] and status["percentage"] == 120.0
    unsubscribe()
    manager.reset()
    manager.track_usage("gpt-4", 20_000, 0)
    assert len(events) == 2


def test_rejections_emit_an_event(manager: CostManager) -> None:
    events: list[BudgetEvent] = []
    manager.subscribe(events.append)
    manager.set_budget("d", BudgetConfig(limit=Decimal("0.01")))
    with pytest.raises(BudgetExceededError, match="budget 'd' would be exceeded"):
        manager.reserve(Decimal("0.02"), model="gpt-4o")
    assert events[-1].kind == "rejected" and events[-1].requested == Decimal("0.02")
    assert manager.metrics()["cost.budget.rejections"] == 1


def test_forecast_is_the_linear_run_rate(manager: CostManager, clock: WallClock) -> None:
    manager.set_budget("d", BudgetConfig(limit=10, period=BudgetPeriod.DAILY))
    manager.track_usage("gpt-4", 100_000, 0)  # $3.00 by noon
    status = manager.get_budget_status("d")
    assert status.forecast == Decimal("6")  # $3 in 12 h → $6 in 24 h
    assert status.forecast_percentage == 60.0
    assert status.projected_exhaustion is None
    manager.track_usage("gpt-4", 100_000, 0)  # $6 by noon → $12 by midnight
    status = manager.get_budget_status("d")
    assert status.forecast == Decimal("12")
    assert status.projected_exhaustion == datetime(2026, 3, 18, 20, 0, tzinfo=UTC)
    # Right after the reset the rate is measured over at least 15 minutes.
    clock.when = datetime(2026, 3, 19, 0, 0, 30, tzinfo=UTC)
    manager.track_usage("gpt-4", 1_000, 0)  # $0.03 in 30 s
    early = manager.get_budget_status("d").forecast
    assert early is not None and early < Decimal("3")
    manager.set_budget("ever", BudgetConfig(limit=10, period=BudgetPeriod.TOTAL))
    assert manager.get_budget_status("ever").forecast is None


def test_recommendations_are_computed_from_the_ledger(manager: CostManager) -> None:
    system = {"role": "system", "content": "You are a support agent. " * 400}
    for i in range(4):
        manager.track_usage(
            "gpt-4o", 3000, 50, provider="openai", prompt_hash="same" if i < 3 else f"p{i}",
            prefix_hash="prefix", prefix_tokens=2900)
    assert system  # the fingerprints above stand for this shared system prompt
    manager.track_usage("claude-3-5-haiku", 100, 100, provider="anthropic")
    recs = {r.kind: r for r in manager.get_optimization_recommendations()}
    assert set(recs) == {"cheaper_model", "response_cache", "prompt_caching", "trim_prompts"}
    one_call = Decimal(3000) * Decimal("2.5") / 10**6 + Decimal(50) * 10 / 10**6
    assert recs["response_cache"].estimated_saving == 2 * one_call
    assert recs["response_cache"].details == {"prompts": 1, "repeats": 2}
    # 3 repeats of a 2900-token prefix at $2.50 instead of $1.25 per million.
    assert recs["prompt_caching"].estimated_saving == Decimal(3 * 2900) * Decimal("1.25") / 10**6
    mini = Decimal(12000) * Decimal("0.15") / 10**6 + Decimal(200) * Decimal("0.6") / 10**6
    assert recs["cheaper_model"].details["alternative"] == "gpt-4o-mini"
    assert recs["cheaper_model"].estimated_saving == 4 * one_call - mini
    assert recs["trim_prompts"].estimated_saving == Decimal(4 * 3000) * Decimal("2.5") / 10**6 / 2
    savings = [r.estimated_saving for r in manager.get_optimization_recommendations()]
    assert savings == sorted(savings, reverse=True)
    assert "estimated saving $" in str(recs["cheaper_model"])


def test_prompt_caching_is_not_advised_when_the_cache_already_hits(manager: CostManager) -> None:
    for _ in range(3):
        manager.track_usage("gpt-4o", 3000, 500, provider="openai", cache_read_tokens=2816,
                            prefix_hash="prefix", prefix_tokens=2900)
    kinds = {r.kind for r in manager.get_optimization_recommendations()}
    assert "prompt_caching" not in kinds


def test_unpriced_models_are_reported(manager: CostManager) -> None:
    manager.track_usage("house-model", 10, 10)
    recs = manager.get_optimization_recommendations()
    assert [r.kind for r in recs] == ["unpriced_models"]
    assert recs[0].details == {"calls": 1, "models": ["house-model"]}


def test_money_helpers_round_once_to_nano_dollars() -> None:
    assert cm.to_nano(Decimal("0.0000000015")) == 2  # half-even
    assert cm.to_nano(Decimal("0.0000000025")) == 2
    assert cm.from_nano(80_000_000_000) == Decimal(80)
    assert str(cm.from_nano(80_000_000_000)) == "80"
    record = CostManager().build_record("gpt-4.1-nano", usage=Usage(
        input_tokens=3, output_tokens=1, cache_read_tokens=1))
    assert record.cost == Decimal("0.000000625")  # 2 × 0.10 + 1 × 0.025 + 1 × 0.40 per million
