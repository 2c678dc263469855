"""Known answers for the model forecast: the Monte Carlo engine, P(hit target), the common
shock, the deals not yet created, the creation rate and the money calibration (level, clock
and timing)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal, norm

from ml.forecast import PeriodGrid, model_forecast, model_won_by
from ml.forecast_calibration import (
    apply_timing,
    curves_at,
    forecast_calibration,
    forecast_timing,
)
from ml.montecarlo import simulate_won_by
from ml.new_pipeline import NewPipeline, creation_rate, simulate_new_pipeline
from ml.periods import current_and_next
from voronka.simulator.company import simulate_company
from voronka.simulator.ml_frames import ml_frames

AS_OF = pd.Timestamp("2026-11-20 23:59:59")  # periods 2026-11, 2026-12, 2026-Q4, 2027-Q1
NO_BOOKINGS = pd.DataFrame(columns=["period", "pipeline", "won_amount_reporting"])
NO_TARGETS = pd.DataFrame(columns=["period", "pipeline", "target_amount_reporting"])


def closing_on(close_dates: list[str], grid: PeriodGrid) -> np.ndarray:
    """P(won by boundary | won) of deals that, if won, close on a known date: a step."""
    ends = np.array([np.datetime64(e) for e in grid.boundary_dates])
    return (np.array(close_dates, dtype="datetime64[D]")[:, None] <= ends[None, :]).astype(float)


def test_fixed_probabilities_and_close_dates_give_the_analytic_mean_and_variance():
    grid = PeriodGrid.build(AS_OF)
    deals = pd.DataFrame({
        "pipeline": ["A", "A", "B", "B", "B", "A"],
        "amount_reporting": [100.0, 250.0, 40.0, 1000.0, 75.0, 500.0],
        "p_win": [0.9, 0.5, 0.2, 0.1, 0.6, 0.3],
    })
    close = ["2026-11-25", "2026-12-03", "2026-11-30", "2027-02-14", "2026-12-31", "2027-05-01"]
    draws = 60_000
    f = model_forecast(deals, closing_on(close, grid), NO_BOOKINGS, NO_TARGETS, AS_OF, "USD",
                       draws=draws, seed=5, correlation=0.0)
    a, p = deals["amount_reporting"].to_numpy(), deals["p_win"].to_numpy()
    in_period = {"2026-11": [0, 2], "2026-12": [1, 4], "2026-Q4": [0, 1, 2, 4], "2027-Q1": [3]}
    row = f.set_index(["period", "pipeline"])
    for period, idx in in_period.items():
        mean = float(a[idx] @ p[idx])
        var = float((a[idx] ** 2) @ (p[idx] * (1 - p[idx])))
        r = row.loc[(period, "all")]
        assert r.expected == pytest.approx(mean) and r.from_open_pipeline == pytest.approx(mean)
        # The simulated revenue (its draws are not kept: P50 and the spread stand for them)
        sims = simulate_won_by(model_won_by(p, closing_on(close, grid)), a, draws=draws, rng=9)[0]
        revenue = grid.period_values(sims.T, grid.periods.index(next(q for q in grid.periods if q.label == period)))
        assert abs(revenue.mean() - mean) < 4 * np.sqrt(var / draws), period
        assert revenue.var() == pytest.approx(var, rel=0.05), period
    # The deal closing in May 2027 is outside every period; pipelines add up to 'all'.
    assert row.loc[("2027-Q1", "A"), "expected"] == 0
    assert (row.loc[("2026-Q4", "A"), "expected"] + row.loc[("2026-Q4", "B"), "expected"]
            == pytest.approx(row.loc[("2026-Q4", "all"), "expected"]))
    assert (f.p10 <= f.p50).all() and (f.p50 <= f.p90).all()


def test_prob_hit_target_on_a_hand_case():
    """Two deals this month, 100 and 200, each won with probability one half: revenue is 0,
    100, 200 or 300 with probability 1/4 each; 60 is booked already."""
    grid = PeriodGrid.build(AS_OF)
    deals = pd.DataFrame({"pipeline": ["A", "A"], "amount_reporting": [100.0, 200.0], "p_win": [0.5, 0.5]})
    cgw = closing_on(["2026-11-24", "2026-11-28"], grid)
    bookings = pd.DataFrame({"period": ["2026-11", "2026-11"], "pipeline": ["A", "all"],
                             "won_amount_reporting": [60.0, 60.0]})
    targets = pd.DataFrame({"period": ["2026-11", "2026-11", "2026-Q4"], "pipeline": ["A", "all", "all"],
                            "target_amount_reporting": [250.0, 161.0, 60.0]})
    f = model_forecast(deals, cgw, bookings, targets, AS_OF, "USD", draws=40_000, seed=1)
    row = f.set_index(["period", "pipeline"])
    # >= 250 needs >= 190 more: 200 or 300 -> 1/2; >= 161 needs >= 101: also 1/2 (not 3/4).
    assert row.loc[("2026-11", "A"), "prob_hit_target"] == pytest.approx(0.5, abs=0.01)
    assert row.loc[("2026-11", "all"), "prob_hit_target"] == pytest.approx(0.5, abs=0.01)
    # The quarter booked nothing yet (bookings are per period) but the target of 60 is met
    # unless both deals are lost: 3/4.
    assert row.loc[("2026-Q4", "all"), "prob_hit_target"] == pytest.approx(0.75, abs=0.01)
    assert row.loc[("2026-11", "A"), "expected"] == pytest.approx(60 + 150)
    assert (row.loc[("2026-11", "A"), "p10"], row.loc[("2026-11", "A"), "p90"]) == (60.0, 360.0)
    assert pd.isna(row.loc[("2026-12", "A"), "prob_hit_target"])


def test_a_common_shock_keeps_the_mean_and_adds_the_copula_covariance():
    p1, p2, rho, a1, a2 = 0.3, 0.6, 0.3, 100.0, 50.0
    both = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf(norm.ppf([p1, p2]))
    var = a1 ** 2 * p1 * (1 - p1) + a2 ** 2 * p2 * (1 - p2) + 2 * a1 * a2 * (both - p1 * p2)
    revenue = simulate_won_by(np.array([[p1], [p2]]), np.array([a1, a2]), draws=200_000, rng=3,
                              correlation=rho, factor_groups=40)[0, 0]
    assert revenue.mean() == pytest.approx(a1 * p1 + a2 * p2, rel=0.01)
    assert revenue.var() == pytest.approx(var, rel=0.03)
    assert var > a1 ** 2 * p1 * (1 - p1) + a2 ** 2 * p2 * (1 - p2) + 100  # the shock matters here


def test_the_engine_is_seeded_and_certain_deals_need_no_luck():
    won_by = np.array([[0.2, 0.5], [1.0, 1.0], [0.0, 0.0], [0.7, 0.7]])
    amounts = np.array([10.0, 1000.0, 5000.0, 3.0])
    one = simulate_won_by(won_by, amounts, draws=500, rng=4)
    assert np.array_equal(one, simulate_won_by(won_by, amounts, draws=500, rng=4))
    assert not np.array_equal(one, simulate_won_by(won_by, amounts, draws=500, rng=5))
    assert (one >= 1000).all() and (one <= 1013).all()  # the certain deal always, the lost never


@pytest.mark.parametrize("per_day,templates", [(40.0, 1), (0.4, 40)])  # many wins per draw / few
def test_deals_not_yet_created_form_a_compound_poisson_process(per_day, templates):
    """`per_day` deals a day, each won with probability 0.25 for 100, closing (if won) within a
    day of its creation, linearly: P(closed within h days | won) = min(h, 1). A deal created in
    day d (at its middle) is won by a boundary t days ahead with 0.25 x min(t − d − 1/2, 1), so
    the expected wins by t are per_day x 0.25 x (t − 1/2), and they are Poisson: variance = mean."""
    grid = PeriodGrid.build(AS_OF)
    horizon = int(np.ceil(grid.days.max())) + 1
    curve = np.clip(np.arange(horizon + 1, dtype=float), 0, 1)
    new = NewPipeline({"A": np.full(horizon, per_day)}, {"A": 0.0},
                      pd.DataFrame({"pipeline": ["A"] * templates, "segment": ["s"] * templates,
                                    "owner": ["o"] * templates, "amount_reporting": [100.0] * templates,
                                    "p_win": [0.25] * templates}), np.tile(curve, (templates, 1)))
    wins_by = per_day * 0.25 * (grid.days - 0.5)
    draws = 20_000
    sims = simulate_new_pipeline(new, grid.days, np.zeros(templates, dtype=int), 1, draws,
                                 np.random.default_rng(2))[0]
    for k, period in enumerate(grid.periods):
        revenue = grid.period_values(sims.T, k)
        wins = grid.period_values(wins_by, k)
        assert abs(revenue.mean() - 100 * wins) < 4 * 100 * np.sqrt(wins / draws), period.label
        assert revenue.var() == pytest.approx(100 ** 2 * wins, rel=0.06), period.label
    f = model_forecast(pd.DataFrame(columns=["pipeline", "amount_reporting", "p_win"]),
                       np.zeros((0, len(grid.days))), NO_BOOKINGS, NO_TARGETS, AS_OF, "USD", new=new,
                       draws=1000, seed=1)
    q4 = f.set_index(["period", "pipeline"]).loc[("2026-Q4", "all")]
    assert q4.from_open_pipeline == 0
    assert q4.from_new_pipeline == pytest.approx(100 * grid.period_values(wins_by, 2))
    assert q4.expected == pytest.approx(q4.from_new_pipeline)


def test_creation_rate_recovers_trend_weekday_and_month_effects():
    rng = np.random.default_rng(0)
    days = pd.date_range("2023-11-21", "2026-11-20", freq="D")
    weekday = np.array([1.2, 1.2, 1.1, 1.1, 1.0, 0.3, 0.2])[days.weekday]
    month = np.where(days.month == 8, 0.5, np.where(days.month == 3, 1.4, 1.0))
    rate = 20 * np.exp(0.3 * (days - days[-1]).days / 365.25) * weekday * month
    counts = rng.poisson(rate)
    created = pd.Series(np.repeat(days + pd.Timedelta(hours=12), counts))
    rates, cvs, fits = creation_rate(created, pd.Series(["A"] * len(created)), AS_OF, 365)
    future = pd.date_range("2026-11-21", periods=365, freq="D")
    truth = (20 * np.exp(0.3 * (future - days[-1]).days.to_numpy() / 365.25)
             * np.array([1.2, 1.2, 1.1, 1.1, 1.0, 0.3, 0.2])[future.weekday]
             * np.where(future.month == 8, 0.5, np.where(future.month == 3, 1.4, 1.0)))
    predicted = rates["A"]
    for months in ([12], [3], [8]):  # December, March (busy), August (quiet)
        sel = np.isin(future.month, months)
        assert predicted[sel].sum() == pytest.approx(truth[sel].sum(), rel=0.1), months
    assert fits["A"]["growth_per_year"] == pytest.approx(0.3, abs=0.1)
    assert 0 < cvs["A"] < 0.2


class SameForAll:
    """A win model blind to everything: P(win) 0.3 for every deal."""

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 0.7), np.full(len(X), 0.3)])


class WithinAMonth:
    """A time-to-close model blind to deal size: every winner closes evenly within 30 days."""

    def predict_close_given_win(self, X, horizons):
        return np.broadcast_to(np.clip(np.asarray(horizons, float) / 30, 0, 1), (len(X), len(horizons))).copy()


@pytest.fixture(scope="module")
def sized_timeline():
    """The demo company (3,000 deals), whose big deals win less often and take longer."""

    from ml.features import prepare

    company = ml_frames(simulate_company(n_deals=3000, seed=5, end_date=date(2026, 6, 30)))
    return prepare(company["deals"], company["stage_events"], company["pipeline_stages"])


def test_calibration_corrects_models_that_ignore_deal_size(sized_timeline):
    """A win model that gives every deal the same P(win) and a time-to-close model that has
    every winner close evenly within 30 days: in the demo company big (Enterprise) deals win
    less often and take longer, so the top amount bin gets a lower P(win) factor than the bottom
    one, and every bin a slower clock (the winners took weeks), the big deals the slowest."""
    table = forecast_calibration(SameForAll(), WithinAMonth(), sized_timeline)
    for (pipeline, kind), bins in table.groupby(["pipeline", "kind"]):
        ordered = bins.sort_values("amount_from")
        factors = ordered["factor"].to_numpy()
        assert factors[-1] < factors[0], (pipeline, kind, factors)
        clocks = ordered.loc[ordered["winners"] >= 30, "clock"].to_numpy()
        assert (ordered["clock"] > 1.2).all()  # bins with few winners take the pipeline's clock
        assert len(clocks) >= 2 and (clocks > 1.2).all() and clocks[-1] > clocks[0], (pipeline, kind, clocks)



def test_timing_ratio_interpolates_between_horizons_and_ends_at_one():
    """A bin whose money came in half as fast as the curve said up to 150 days: its curve is
    halved there, the ratio climbs linearly to 1 at 180 days and the curve is untouched after;
    a deal of another pipeline is untouched."""
    horizons = [7.0, 14.0, 21.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 180.0]
    timing = pd.DataFrame({"pipeline": "A", "kind": "new", "amount_from": -np.inf, "horizon": horizons,
                           "ratio": [0.5] * 9 + [1.0], "winners": 100})
    days = np.arange(201, dtype=float)
    curve = np.clip(days / 200, 0, 1)
    out = apply_timing(np.vstack([curve, curve]), timing, "new", np.array(["A", "B"]), np.array([10.0, 10.0]))
    assert out[0, 3] == pytest.approx(0.5 * 3 / 200)  # before the first horizon: its ratio
    assert out[0, 30] == pytest.approx(0.5 * 30 / 200)
    assert out[0, 165] == pytest.approx(0.75 * 165 / 200)
    assert out[0, 180:] == pytest.approx(curve[180:])
    assert (np.diff(out[0]) >= 0).all()
    assert out[1] == pytest.approx(curve)  # pipeline B has no timing
    assert apply_timing(np.vstack([curve]), timing, "open", np.array(["A"]), np.array([10.0]))[0] == pytest.approx(curve)


def test_timing_makes_new_deals_win_their_money_as_late_as_past_deals_did(sized_timeline):
    """A time-to-close model that has every deal won evenly within 30 days (whatever its size):
    the clock stretches it per amount bin, but one time scale cannot give the simulated big deals
    their slow start, and it is fitted to counts while the money sits with the biggest deals.
    After the timing calibration the money of the past year's new winners won within 14, 30 and
    60 days of creation (as a share of what they won within 180) is what the curves say, within
    the shrinkage; with the clock alone it is not."""
    from ml.features import build_features

    timeline = sized_timeline
    calibration = forecast_calibration(SameForAll(), WithinAMonth(), timeline)
    timing = forecast_timing(WithinAMonth(), timeline, calibration)
    assert set(timing["kind"]) == {"open", "new"}
    assert timing.loc[timing["horizon"] == 180, "ratio"].to_numpy() == pytest.approx(1.0)

    d = timeline.deals
    end = timeline.cutoff - pd.Timedelta(days=180)
    lived = ((d["close_at"] - d["created_at"]) / pd.Timedelta(days=1)).to_numpy()
    won = np.flatnonzero((d["placeable"] & (d["created_at"] <= end) & (d["created_at"] > end - pd.Timedelta(days=365))
                          & d["close_known"] & (d["outcome"] == "won")).to_numpy() & (lived <= 180))
    X = build_features(timeline, won, d["created_at"].to_numpy()[won])
    pipes, amounts = X["pipeline"].astype(str).to_numpy(), X["amount_reporting"].to_numpy(float)
    days = np.arange(181, dtype=float)
    clock = calibration[calibration["kind"] == "new"]
    scale = np.ones(len(X))
    for pipeline, bins in clock.groupby("pipeline"):
        rows = pipes == pipeline
        which = np.searchsorted(bins["amount_from"].to_numpy(), amounts[rows], side="right") - 1
        scale[rows] = bins["clock"].to_numpy()[np.maximum(which, 0)]
    clocked = curves_at(WithinAMonth().predict_close_given_win(X, days), days[None, :] / scale[:, None])
    timed = apply_timing(clocked, timing, "new", pipes, amounts)
    for pipeline in sorted(set(pipes)):
        rows = pipes == pipeline
        a = amounts[rows]
        for h in (14, 30, 60):
            observed = (a * (lived[won][rows] <= h)).sum() / a.sum()
            by_clock = (a * clocked[rows, h]).sum() / (a * clocked[rows, 180]).sum()
            by_timing = (a * timed[rows, h]).sum() / (a * timed[rows, 180]).sum()
            assert by_timing == pytest.approx(observed, abs=0.04), (pipeline, h, observed, by_timing)
            if h == 14:
                assert by_clock - observed > 0.07, (pipeline, h, observed, by_clock)


def test_periods_of_the_grid_are_contiguous():
    grid = PeriodGrid.build(pd.Timestamp("2026-12-10 12:00"))  # the quarter's last month
    labels = [p.label for p in grid.periods]
    assert labels == [p.label for p in current_and_next(date(2026, 12, 10))]
    # December ends the quarter: Q4 = December so far; Q1 starts after it; January is in Q1.
    assert grid.start == (-1, 0, -1, 0) and grid.end[0] == grid.end[2]
    assert grid.days[0] == pytest.approx(21.5)
