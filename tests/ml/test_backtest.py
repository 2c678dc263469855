"""The backtest: time travel, origins, the seasonal naive rule, the metrics by hand, and a small
run on a simulated company checked against pandas."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml.backtest import (
    METHODS,
    backtest_metrics,
    backtest_origins,
    forecast_metrics,
    horizon_periods,
    horizons_not_beaten,
    monthly_bookings,
    pinball,
    pipeline_as_of,
    run_backtest,
    seasonal_naive,
    won_amounts,
)
from ml.features import prepare
from ml.periods import parse_period
from voronka.simulator.company import simulate_company
from voronka.simulator.ml_frames import ml_frames

END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def company():
    return ml_frames(simulate_company(n_deals=1500, seed=3, end_date=END, years=2.0))


def test_metrics_on_a_hand_case():
    actual = [100.0, 200.0, 100.0]
    expected = [110.0, 150.0, 100.0]
    p10, p50, p90 = [90.0, 160.0, 101.0], [105.0, 170.0, 100.0], [120.0, 190.0, 130.0]
    m = forecast_metrics(actual, expected, p10, p50, p90)
    # WAPE scores the P50 (the point forecast shown); bias and the mean's WAPE score the mean.
    assert m["wape"] == pytest.approx((5 + 30 + 0) / 400)
    assert m["wape_mean"] == pytest.approx((10 + 50 + 0) / 400)
    assert m["bias"] == pytest.approx((10 - 50 + 0) / 400)
    # inside: 90<=100<=120 yes; 160<=200<=190 no; 101<=100 no
    assert m["interval_coverage"] == pytest.approx(1 / 3)
    # pinball by hand for the second origin: q=.1: .1*(200-160)=4; q=.5: .5*30=15; q=.9: .9*10=9
    assert pinball([200.0], [160.0], 0.1)[0] == pytest.approx(4.0)
    assert pinball([100.0], [120.0], 0.9)[0] == pytest.approx(0.1 * 20)  # over-forecast costs (1-q)
    losses = [(0.1 * 10 + 0.5 * 5 + 0.1 * 20) / 3, (4 + 15 + 9) / 3, (0.9 * 1 + 0 + 0.1 * 30) / 3]
    assert m["pinball_loss"] == pytest.approx(np.mean(losses) / np.mean(actual))
    assert m["n_origins"] == 3


def test_metrics_per_method_and_horizon_use_the_all_scope():
    rows = pd.DataFrame({
        "origin": ["2026-01-01"] * 4, "method": ["model", "model", "seasonal_naive", "model"],
        "horizon": ["month+0", "month+0", "month+0", "month+1"], "period": ["2026-01"] * 3 + ["2026-02"],
        "pipeline": ["all", "A", "all", "all"], "expected": [90.0, 5.0, 150.0, 10.0],
        "p10": [80.0, 1.0, 140.0, 5.0], "p50": [90.0, 5.0, 150.0, 10.0], "p90": [100.0, 9.0, 160.0, 20.0],
        "actual": [100.0, 50.0, 100.0, 10.0]})
    m = backtest_metrics(rows).set_index(["method", "horizon"])
    assert m.loc[("model", "month+0"), "wape"] == pytest.approx(0.1)
    assert m.loc[("model", "month+0"), "bias"] == pytest.approx(-0.1)
    assert m.loc[("seasonal_naive", "month+0"), "interval_coverage"] == 0
    assert m.loc[("model", "month+1"), "interval_coverage"] == 1
    assert list(m.index.get_level_values("horizon")) == ["month+0", "month+0", "month+1"]


def test_a_horizon_with_nothing_booked_has_undefined_metrics_and_is_not_judged():
    # A young org: nothing booked in month+1 at any origin, so no WAPE there (NaN, not None,
    # which broke the comparison with the baselines); month+0 is judged as usual.
    rows = pd.DataFrame({
        "origin": ["2026-01-01"] * 4, "method": ["model", "seasonal_naive"] * 2,
        "horizon": ["month+0", "month+0", "month+1", "month+1"], "period": ["2026-01"] * 2 + ["2026-02"] * 2,
        "pipeline": ["all"] * 4, "expected": [120.0, 100.0, 10.0, 0.0], "p10": [80.0, 90.0, 0.0, 0.0],
        "p50": [120.0, 100.0, 10.0, 0.0], "p90": [150.0, 110.0, 20.0, 0.0], "actual": [100.0, 100.0, 0.0, 0.0]})
    m = backtest_metrics(rows)
    month1 = m[m["horizon"] == "month+1"]
    assert month1["wape"].isna().all() and month1["bias"].isna().all()
    assert m["wape"].dtype == float
    assert horizons_not_beaten(m) == ["month+0"]  # 0.2 vs the naive's 0.0
    rows.loc[rows["method"] == "model", "p50"] = [100.0, 10.0]
    assert horizons_not_beaten(backtest_metrics(rows)) == ["month+0"]  # a tie is not beating it
    rows.loc[rows["method"] == "seasonal_naive", "p50"] = [130.0, 0.0]
    assert horizons_not_beaten(backtest_metrics(rows)) == []


def test_origins_are_month_starts_after_the_first_year_and_capped():
    origins = backtest_origins(pd.Timestamp("2024-03-15 10:00"), pd.Timestamp("2026-06-30 23:59:59"))
    assert origins[0] == pd.Timestamp("2025-04-01") and origins[-1] == pd.Timestamp("2026-06-01")
    assert all(o.day == 1 and o.hour == 0 for o in origins) and len(origins) == 15
    capped = backtest_origins(pd.Timestamp("2024-03-15"), pd.Timestamp("2026-06-30 23:59:59"), max_origins=4)
    assert capped == origins[-4:]
    # June 2026 ends with the data: month+0 scored, month+1 not; quarters only at quarter starts.
    assert set(horizon_periods(pd.Timestamp("2026-06-01"), pd.Timestamp("2026-06-30 23:59:59"))) == {"month+0"}
    assert set(horizon_periods(pd.Timestamp("2026-01-01"), pd.Timestamp("2026-06-30 23:59:59"))) == {
        "month+0", "month+1", "quarter+0", "quarter+1"}
    assert set(horizon_periods(pd.Timestamp("2026-02-01"), pd.Timestamp("2026-06-30 23:59:59"))) == {
        "month+0", "month+1"}


def test_seasonal_naive_takes_last_years_period_and_its_error_spread():
    months = pd.period_range("2024-01", "2025-12", freq="M")
    rng = np.random.default_rng(1)
    amounts = 100.0 * (1 + (months.month == 3)) * rng.uniform(0.8, 1.25, len(months))
    won = pd.DataFrame({"pipeline": "A", "closed_at": months.to_timestamp() + pd.Timedelta(days=3),
                        "created_at": months.to_timestamp(), "amount_reporting": amounts})
    monthly = monthly_bookings(won, ["A"])
    out = seasonal_naive(monthly, pd.Timestamp("2026-03-01"), parse_period("2026-03"), pd.Timestamp("2023-12-20"))
    mean, p10, p50, p90 = out["A"]
    assert mean == pytest.approx(amounts[list(months).index(pd.Period("2025-03", "M"))])
    assert p10 < p50 < p90 and p10 < mean < p90
    quarter = seasonal_naive(monthly, pd.Timestamp("2026-01-01"), parse_period("2026-Q1"), pd.Timestamp("2023-12-20"))
    assert quarter["all"][0] == pytest.approx(amounts[12:15].sum())
    # Without a year of history: the run-rate of the three months before the origin, x 3 months.
    young = seasonal_naive(monthly, pd.Timestamp("2024-07-01"), parse_period("2024-Q3"), pd.Timestamp("2024-01-01"))
    assert young["A"][0] == pytest.approx(amounts[3:6].sum())


def test_an_origins_pipeline_does_not_change_with_what_happened_later(company):
    deals, events, stages = company["deals"], company["stage_events"], company["pipeline_stages"]
    origin = pd.Timestamp("2025-11-01")
    close_dates = pd.Series(pd.to_datetime(deals["expected_close_date"]).to_numpy(), index=deals["deal_key"])
    before = pipeline_as_of(prepare(deals, events, stages, cutoff=origin), origin, close_dates)

    # What happened after the origin is rewritten: every later close flips, later stage moves
    # are added, deals closed later are closed a day after the origin, new deals appear.
    later = deals.copy()
    closed_later = pd.to_datetime(later["closed_at"]) > origin
    later.loc[closed_later, "outcome"] = later.loc[closed_later, "outcome"].map({"won": "lost", "lost": "won"})
    later.loc[closed_later, "closed_at"] = origin + pd.Timedelta(days=1)
    extra = later.head(50).copy()
    extra["deal_key"] = "demo:new-" + extra["native_id"].astype(str)
    extra["created_at"] = origin + pd.Timedelta(hours=5)
    later = pd.concat([later, extra], ignore_index=True)
    open_keys = before["deal_key"].head(40)
    last = stages.sort_values("stage_order").groupby("pipeline").tail(3).groupby("pipeline").head(1)
    moves = pd.DataFrame({"deal_key": open_keys.to_numpy(),
                          "pipeline": before["pipeline"].head(40).to_numpy(),
                          "entered_at": origin + pd.Timedelta(hours=2)})
    moves = moves.merge(last[["pipeline", "stage"]], on="pipeline")
    later_events = pd.concat([events, moves], ignore_index=True)
    after = pipeline_as_of(prepare(later, later_events, stages, cutoff=origin), origin, close_dates)
    pd.testing.assert_frame_equal(before, after)

    # ... while the same deals as of a later day did change.
    moved = pipeline_as_of(prepare(later, later_events, stages, cutoff=origin + pd.Timedelta(days=1)),
                           origin + pd.Timedelta(days=1), close_dates)
    assert not moved.set_index("deal_key")["stage"].reindex(open_keys).equals(
        before.set_index("deal_key")["stage"].reindex(open_keys))
    # A deal that closed after the origin was open at it (unless it was lost then and reopened).
    closed_after = set(deals.loc[closed_later & (pd.to_datetime(deals["created_at"]) <= origin), "deal_key"])
    kinds = events.merge(stages, on=["pipeline", "stage"])
    lost_then = set(kinds.loc[(kinds["kind"] != "open") & (pd.to_datetime(kinds["entered_at"]) <= origin), "deal_key"])
    assert closed_after - lost_then and closed_after - lost_then <= set(before["deal_key"])


def test_a_small_backtest_scores_every_method_against_the_bookings(company):
    deals = company["deals"]
    bt = run_backtest(deals, company["stage_events"], company["pipeline_stages"], max_origins=2,
                      draws=300, seed=1, max_examples=20_000, data_end=pd.Timestamp("2026-06-30 23:59:59"))
    r = bt.results
    assert bt.origins == ["2026-05-01", "2026-06-01"]
    assert set(r["method"]) == set(METHODS)
    assert set(r.loc[r["origin"] == pd.Timestamp("2026-05-01"), "horizon"]) == {"month+0", "month+1"}
    # Actuals against an independent pandas sum: won deals closed in May 2026.
    won = deals[(deals["outcome"] == "won") & (pd.to_datetime(deals["closed_at"]).dt.to_period("M")
                                               == pd.Period("2026-05", "M"))]
    may = r[(r["period"] == "2026-05") & (r["pipeline"] == "all")]
    assert np.allclose(may["actual"], won["amount_reporting"].sum())
    assert (r["p10"] <= r["p90"] + 1e-9).all()
    model = r[(r["method"] == "model") & (r["pipeline"] == "all")]
    assert np.allclose(model["expected"], model["from_open_pipeline"] + model["from_new_pipeline"])
    assert (model["from_new_pipeline"] > 0).all() and (model["from_open_pipeline"] > 0).all()
    m = bt.metrics
    assert set(m["method"]) == set(METHODS) and m["n_origins"].max() == 2
    assert m["wape"].between(0, 5).all()
    assert won_amounts(deals, data_end=pd.Timestamp("2026-05-31"))["closed_at"].max() <= pd.Timestamp("2026-05-31")
