"""Known answers for the weighted-pipeline forecast, coverage and periods."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml.coverage import coverage_status, pipeline_coverage
from ml.forecast import weighted_pipeline_forecast
from ml.montecarlo import simulate_revenue
from ml.periods import current_and_next, parse_period

AS_OF = date(2026, 11, 20)


def deals(rows):
    return pd.DataFrame(rows, columns=["pipeline", "amount_reporting", "crm_probability", "expected_close_date"])


def test_periods_this_and_next_month_and_quarter():
    labels = [p.label for p in current_and_next(AS_OF)]
    assert labels == ["2026-11", "2026-12", "2026-Q4", "2027-Q1"]
    q = parse_period("2027-Q1")
    assert (q.start, q.end) == (date(2027, 1, 1), date(2027, 3, 31))
    assert parse_period("2024-02").end == date(2024, 2, 29)
    with pytest.raises(ValueError):
        parse_period("2026-13")


def test_monte_carlo_matches_the_analytic_mean_and_variance():
    amounts = np.array([100.0, 250.0, 40.0, 1000.0, 75.0])
    probs = np.array([0.9, 0.5, 0.2, 0.1, 0.6])
    draws = 40_000
    revenue = simulate_revenue(amounts, probs, draws, np.random.default_rng(1), chunk=2)
    mean, var = amounts @ probs, (amounts ** 2) @ (probs * (1 - probs))
    assert abs(revenue.mean() - mean) < 4 * np.sqrt(var / draws)
    # The sample variance of n draws has relative standard error about sqrt(2/n) (more with
    # kurtosis); 5% is several standard errors at 40k draws.
    assert revenue.var() == pytest.approx(var, rel=0.05)


def test_weighted_forecast_per_period_with_booked_and_target():
    open_deals = deals([
        ("A", 100.0, 0.5, date(2026, 11, 25)),   # this month and quarter
        ("A", 200.0, 1.0, date(2026, 12, 10)),   # next month, this quarter
        ("B", 50.0, 0.0, date(2026, 10, 1)),     # overdue -> current periods
        ("B", 400.0, 0.25, date(2027, 2, 1)),    # next quarter
        ("B", 999.0, 0.9, None),                  # no date -> current periods
    ])
    bookings = pd.DataFrame({"period": ["2026-Q4", "2026-Q4", "2026-Q4"], "pipeline": ["A", "B", "all"],
                             "won_amount_reporting": [10.0, 20.0, 30.0]})
    targets = pd.DataFrame({"period": ["2026-Q4", "2026-Q4"], "pipeline": ["A", "all"],
                            "target_amount_reporting": [300.0, 5000.0]})
    f = weighted_pipeline_forecast(open_deals, bookings, targets, AS_OF, "USD", draws=4000, seed=3)
    row = f.set_index(["period", "pipeline"])
    assert row.loc[("2026-Q4", "A"), "expected"] == pytest.approx(10 + 50 + 200)
    assert row.loc[("2026-Q4", "B"), "expected"] == pytest.approx(20 + 0 + 999 * 0.9)
    assert row.loc[("2026-Q4", "all"), "expected"] == pytest.approx(30 + 250 + 899.1)
    assert row.loc[("2027-Q1", "B"), "expected"] == pytest.approx(100)
    assert row.loc[("2026-12", "A"), "expected"] == pytest.approx(200)
    # A's revenue in Q4 is 210 or 310 with equal odds: P(>= 300) is about one half.
    assert row.loc[("2026-Q4", "A"), "prob_hit_target"] == pytest.approx(0.5, abs=0.04)
    assert row.loc[("2026-Q4", "A"), "p10"] == 210 and row.loc[("2026-Q4", "A"), "p90"] == 310
    assert pd.isna(row.loc[("2027-Q1", "A"), "target"])
    assert (f.p10 <= f.p50).all() and (f.p50 <= f.p90).all()
    again = weighted_pipeline_forecast(open_deals, bookings, targets, AS_OF, "USD", draws=4000, seed=3)
    pd.testing.assert_frame_equal(f, again)


def test_coverage_against_the_remaining_target():
    open_deals = deals([
        ("A", 600.0, 0.5, date(2026, 12, 1)),
        ("A", 300.0, 0.5, date(2027, 1, 15)),
        ("B", 90.0, 0.5, date(2026, 11, 30)),
    ])
    bookings = pd.DataFrame({"period": ["2026-Q4", "2026-Q4"], "pipeline": ["A", "B"],
                             "won_amount_reporting": [100.0, 500.0]})
    targets = pd.DataFrame({"period": ["2026-Q4", "2026-Q4", "2027-Q1"], "pipeline": ["A", "B", "A"],
                            "target_amount_reporting": [300.0, 400.0, 200.0]})
    c = pipeline_coverage(open_deals, bookings, targets, AS_OF, "USD", required=3.0, critical=1.0)
    row = c.set_index(["period", "pipeline"])
    a = row.loc[("2026-Q4", "A")]
    assert (a.gap, a.open_pipeline, a.coverage, a.shortfall, a.status) == (200.0, 600.0, 3.0, 0.0, "ok")
    b = row.loc[("2026-Q4", "B")]  # target already booked: no gap
    assert b.gap == 0 and pd.isna(b.coverage) and b.status == "ok"
    q1 = row.loc[("2027-Q1", "A")]
    assert q1.coverage == pytest.approx(1.5) and q1.status == "warn" and q1.shortfall == pytest.approx(300.0)
    assert len(c) == 3


@pytest.mark.parametrize("coverage,status", [(None, "ok"), (3.0, "ok"), (2.99, "warn"), (1.0, "warn"), (0.99, "error")])
def test_coverage_status_thresholds(coverage, status):
    assert coverage_status(coverage, required=3.0, critical=1.0) == status


# ---------------------------------------------------------------- funnel-health checks (ml/health.py)

from datetime import datetime  # noqa: E402

from ml import health  # noqa: E402


def forecast_rows(rows):
    cols = ["period", "period_grain", "pipeline", "segment", "owner", "target", "booked", "expected",
            "from_open_pipeline", "from_new_pipeline", "p10", "p90", "prob_hit_target", "method"]
    return pd.DataFrame(rows, columns=cols)


def test_prob_hit_target_check_passes_warns_and_errors():
    ok = forecast_rows([
        ("2026-Q4", "quarter", "all", None, None, 100.0, 0.0, 120.0, 120.0, 0.0, 90.0, 150.0, 0.8, "model"),
        ("2026-Q4", "quarter", "all", None, None, 100.0, 0.0, 50.0, 50.0, 0.0, 20.0, 80.0, 0.02, "weighted_pipeline"),
        ("2027-Q1", "quarter", "all", None, None, None, 0.0, 50.0, 50.0, 0.0, 20.0, 80.0, None, "model"),
    ])
    verdict = health.prob_hit_target(ok, floor=0.5)
    assert verdict.passed and verdict.figures["rows_checked"] == 1  # the model rows; no target, no check
    planted = pd.concat([ok, forecast_rows([
        ("2026-12", "month", "A", None, None, 100.0, 0.0, 90.0, 90.0, 0.0, 60.0, 120.0, 0.35, "model")])])
    verdict = health.prob_hit_target(planted, floor=0.5)
    assert not verdict.passed and verdict.severity == health.WARN
    assert list(verdict.rows["period"]) == ["2026-12"] and "35%" in verdict.summary
    hopeless = pd.concat([planted, forecast_rows([
        ("2027-Q1", "quarter", "B", None, None, 500.0, 0.0, 90.0, 90.0, 0.0, 60.0, 120.0, 0.0, "model")])])
    assert health.prob_hit_target(hopeless, floor=0.5).severity == health.ERROR
    # Without model rows the baseline is judged.
    assert not health.prob_hit_target(ok[ok.method == "weighted_pipeline"], floor=0.5).passed


def test_new_pipeline_check_flags_a_funnel_drying_up():
    creation = pd.DataFrame({"pipeline": ["all", "A"], "created_last_28d": [40.0, 10.0],
                             "expected_last_28d": [60.0, 20.0]})
    rows = forecast_rows([
        # open pipeline covers the target: nothing needed from new deals
        ("2026-Q1", "quarter", "all", None, None, 100.0, 0.0, 130.0, 120.0, 10.0, 0, 0, 0.6, "model"),
        # needs 50 from new deals, 60 expected: fine
        ("2026-02", "month", "all", None, None, 100.0, 10.0, 100.0, 40.0, 60.0, 0, 0, 0.5, "model"),
    ])
    assert health.new_pipeline_need(rows, creation, ["2026-Q1", "2026-02"]).passed
    short = pd.concat([rows, forecast_rows([
        # needs 60 from new deals, 40 expected: 1.5x today's creation -> WARN
        ("2026-02", "month", "A", None, None, 100.0, 0.0, 80.0, 40.0, 40.0, 0, 0, 0.3, "model")])])
    verdict = health.new_pipeline_need(short, creation, ["2026-Q1", "2026-02"])
    assert not verdict.passed and verdict.severity == health.WARN
    assert verdict.rows.loc[0, "needed_creation_ratio"] == pytest.approx(1.5)
    assert verdict.rows.loc[0, "created_last_28d"] == 10.0
    dry = pd.concat([short, forecast_rows([
        ("2026-Q1", "quarter", "A", None, None, 300.0, 0.0, 80.0, 40.0, 0.0, 0, 0, 0.0, "model")])])
    assert health.new_pipeline_need(dry, creation, ["2026-Q1", "2026-02"]).severity == health.ERROR
    # Periods that are not next are not judged.
    assert health.new_pipeline_need(short, creation, ["2026-Q1"]).passed


def test_stalled_share_check():
    scores = pd.DataFrame({"pipeline": ["A"] * 4 + ["B"] * 4, "stage": ["s"] * 8,
                           "amount_reporting": [10.0] * 8,
                           "is_stalled": [True, False, False, False, True, True, True, False]})
    verdict = health.stalled_share(scores, max_share=0.5)
    assert not verdict.passed and "B 75%" in verdict.summary
    table = verdict.rows.set_index("pipeline")
    assert table.loc["all", "stalled_share"] == pytest.approx(0.5) and table.loc["A", "stalled_share"] == 0.25
    assert health.stalled_share(scores, max_share=0.8).passed


def test_export_freshness_is_judged_per_source_on_the_wall_clock_but_never_on_a_replay():
    now = datetime(2026, 11, 23, 9, 0)
    fresh = health.export_freshness({"amocrm": datetime(2026, 11, 21, 23, 59)}, now, 3)
    assert fresh.passed and fresh.rows.loc[0, "age_days"] == pytest.approx(1.38, abs=0.01)
    # One CRM's export job stopped while the other's still runs: that fails, naming it.
    mixed = health.export_freshness({"amocrm": datetime(2026, 11, 22, 23, 59),
                                     "hubspot": datetime(2026, 11, 18, 23, 59)}, now, 3)
    assert not mixed.passed and mixed.severity == health.WARN
    assert "no hubspot export for 4 days" in mixed.summary and "amocrm" not in mixed.summary
    assert dict(zip(mixed.rows["source_system"], mixed.rows["status"])) == {"hubspot": "warn", "amocrm": "ok"}
    assert mixed.figures["stale_sources"] == 1
    assert health.export_freshness({"amocrm": datetime(2025, 1, 1)}, now, 3, replay_as_of="2025-01-01").passed
    assert health.export_freshness({}, now, 3).severity == health.ERROR


def test_where_a_short_pipeline_is_short():
    # Stage "Demo" held 2 deals all year (two stays covering the window); now it holds none.
    as_of = pd.Timestamp("2026-11-20")
    stays = pd.DataFrame({
        "pipeline": ["A", "A", "A"], "stage": ["Demo", "Demo", "Lead"], "stage_kind": ["open"] * 3,
        "entered_at": [as_of - pd.Timedelta(days=400)] * 2 + [as_of - pd.Timedelta(days=73)],
        "exited_at": [as_of - pd.Timedelta(days=1e-9), None, None]})
    typical = health.typical_stage_counts(stays, as_of)
    assert typical.set_index("stage").loc["Demo", "typical_open_deals"] == pytest.approx(2.0)
    assert typical.set_index("stage").loc["Lead", "typical_open_deals"] == pytest.approx(0.2)
    open_deals = pd.DataFrame({"pipeline": ["A", "A"], "stage": ["Lead", "Lead"], "amount_reporting": [30.0, 50.0]})
    short = health.stage_shortfall(open_deals, typical)
    assert list(short["stage"]) == ["Demo"] and short.loc[0, "short_deals"] == pytest.approx(2.0)
    assert short.loc[0, "short_amount"] == pytest.approx(2 * 40.0)  # at the scope's average size
    won = pd.DataFrame({"segment": ["SMB", "Ent", "Ent"], "amount_reporting": [100.0, 150.0, 150.0],
                        "closed_at": [as_of - pd.Timedelta(days=30)] * 3})
    period_open = pd.DataFrame({"segment": ["SMB", "SMB"], "amount_reporting": [500.0, 100.0]})
    seg = health.segment_shortfall(period_open, won, required_pipeline=1000.0, as_of=as_of)
    assert list(seg["segment"]) == ["Ent"] and seg.loc[0, "short_amount"] == pytest.approx(750.0)
