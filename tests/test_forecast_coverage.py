"""Known answers for the weighted-pipeline forecast, coverage and periods."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml.coverage import coverage_status, pipeline_coverage
from ml.forecast import simulate_revenue, weighted_pipeline_forecast
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
