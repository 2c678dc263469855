"""The vectorised code paths (issue 14, speed) give what the per-row code they replaced gave:
each old version is kept here as the reference, on small frames and on the simulated company."""

from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd

from ml import health
from ml.forecast import assign_period
from ml.periods import current_and_next, parse_period


def _assign_period_per_deal(expected_close: pd.Series, period, as_of: date) -> np.ndarray:
    """The per-deal version ml.forecast.assign_period replaced."""
    close = pd.to_datetime(expected_close).dt.date
    in_period = close.map(lambda d: d is not None and not pd.isna(d) and period.contains(d))
    if period.contains(as_of):
        overdue = close.map(lambda d: d is None or pd.isna(d) or d < as_of)
        in_period = in_period | overdue
    return in_period.to_numpy(dtype=bool)


def test_assign_period_matches_the_per_deal_version():
    as_of = date(2026, 5, 14)
    rng = np.random.default_rng(3)
    days = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 365, 2000), unit="D")
    stamps = pd.Series(days + pd.to_timedelta(rng.integers(0, 86_400, 2000), unit="s"))
    stamps[rng.random(2000) < 0.1] = pd.NaT
    edge = pd.Series(pd.to_datetime(["2026-05-14 00:00:00", "2026-05-13 23:59:59", "2026-05-31 23:59:59",
                                     "2026-06-01 00:00:00", "2026-06-30 00:00:00", "2026-07-01 00:00:00", None]))
    for close in (stamps, pd.concat([stamps, edge], ignore_index=True),
                  pd.Series([d.date() if pd.notna(d) else None for d in stamps]),  # DATE columns read as objects
                  stamps.dt.tz_localize("Europe/Moscow")):
        for period in current_and_next(as_of):
            np.testing.assert_array_equal(assign_period(close, period, as_of),
                                          _assign_period_per_deal(close, period, as_of))
    assert assign_period(pd.Series([], dtype="datetime64[ns]"), current_and_next(as_of)[0], as_of).shape == (0,)


def test_coverage_detail_reads_what_the_whole_tables_gave():
    """coverage_detail reads only the stays and won deals inside the year's window: the stage and
    segment shortfalls equal those computed from every stay and every won deal."""
    from orchestration.assets.forecast import coverage_detail

    rng = np.random.default_rng(5)
    as_of = pd.Timestamp("2026-05-14 12:00")
    n = 3000
    entered = as_of - pd.to_timedelta(rng.integers(0, 900 * 24, n), unit="h")
    exited = entered + pd.to_timedelta(rng.integers(1, 200 * 24, n), unit="h")
    exited = pd.Series(exited).where((exited <= as_of) & (rng.random(n) < 0.8))
    stays = pd.DataFrame({"pipeline": rng.choice(["A", "B"], n), "stage": rng.choice(["s1", "s2", "s3"], n),
                          "stage_kind": rng.choice(["open", "open", "won", "lost"], n),
                          "entered_at": entered, "exited_at": exited})
    closed = as_of - pd.to_timedelta(rng.integers(-30 * 24, 800 * 24, n), unit="h")
    deals = pd.DataFrame({"deal_key": [f"d{i}" for i in range(n)], "pipeline": rng.choice(["A", "B"], n),
                          "segment": rng.choice(["SMB", "Mid", "Ent"], n),
                          "amount_reporting": rng.gamma(2.0, 1000.0, n).round(2),
                          "outcome": rng.choice(["won", "lost", "open"], n), "closed_at": closed})
    snapshot = pd.DataFrame({"deal_key": [f"o{i}" for i in range(200)], "pipeline": rng.choice(["A", "B"], 200),
                             "stage": rng.choice(["s1", "s2"], 200), "segment": rng.choice(["SMB", "Mid"], 200),
                             "amount_reporting": rng.gamma(2.0, 1000.0, 200),
                             "expected_close_date": as_of + pd.to_timedelta(rng.integers(-20, 120, 200), unit="D")})
    coverage = pd.DataFrame({"period": ["2026-05", "2026-Q2", "2026-Q2"], "pipeline": ["all", "A", "B"],
                             "status": ["warn", "error", "ok"], "required_coverage": [3.0, 3.0, 3.0],
                             "gap": [5e6, 4e6, 1e6]})
    con = duckdb.connect()
    for name, frame in (("fct_stage_transitions", stays), ("ml_deals", deals), ("mart_pipeline_snapshot", snapshot)):
        con.register("frame", frame)
        con.execute(f"create table main.{name} as select * from frame")
        con.unregister("frame")
    stages, segments = coverage_detail(con, coverage, as_of)

    typical = health.typical_stage_counts(stays, as_of)
    won = deals[deals["outcome"] == "won"]
    want_stages, want_segments = [], []
    for r in coverage[coverage.status != "ok"].itertuples():
        scope = f"{r.period} {r.pipeline}"
        open_ = snapshot if r.pipeline == "all" else snapshot[snapshot["pipeline"] == r.pipeline]
        want_stages.append(health.stage_shortfall(open_, typical, r.pipeline).assign(scope=scope))
        due = _assign_period_per_deal(open_["expected_close_date"], parse_period(r.period),
                                      as_of.date())
        w = won if r.pipeline == "all" else won[won["pipeline"] == r.pipeline]
        want_segments.append(health.segment_shortfall(open_[due], w, r.required_coverage * r.gap, as_of)
                             .assign(scope=scope))
    assert len(stages) and len(segments)
    pd.testing.assert_frame_equal(stages, pd.concat(want_stages, ignore_index=True), check_dtype=False)
    pd.testing.assert_frame_equal(segments, pd.concat(want_segments, ignore_index=True), check_dtype=False)


def _assert_timelines_equal(got, want):
    for part in ("deals", "events", "states", "closed", "first_stage"):
        pd.testing.assert_frame_equal(getattr(got, part), getattr(want, part), obj=part)
    if want.history is None:
        assert got.history is None
    else:
        pd.testing.assert_frame_equal(got.history, want.history, obj="history")
    assert (got.cutoff, got.smoothing) == (want.cutoff, want.smoothing)


def test_a_timeline_cut_at_an_earlier_cutoff_is_the_one_prepared_there(company):
    """The backtest prepares the timeline once and cuts it at each origin (ml.features.at_cutoff):
    every frame equals prepare() with that origin as the cut-off, with and without deal history."""
    from ml.features import at_cutoff, prepare

    deals, events, stages = company["deals"], company["stage_events"], company["pipeline_stages"]
    end = pd.Timestamp(company["deals"]["created_at"].max())
    history = deals[["deal_key", "created_at", "amount_reporting", "owner"]].rename(
        columns={"created_at": "valid_from"})
    later = history.assign(valid_from=pd.to_datetime(history["valid_from"]) + pd.Timedelta(days=40),
                           amount_reporting=history["amount_reporting"] * 1.1)
    history = pd.concat([history, later], ignore_index=True)
    for deal_history in (None, history):
        full = prepare(deals, events, stages, cutoff=end, deal_history=deal_history)
        for origin in ("2024-03-01", "2025-01-01", "2025-10-01 12:30", end):
            _assert_timelines_equal(at_cutoff(full, origin),
                                    prepare(deals, events, stages, cutoff=origin, deal_history=deal_history))


def _per_origin_prepare(monkeypatch, deals, events, stages):
    """The backtest as it was: the timeline prepared from the frames again at each origin, the
    open deals' features built again for the baselines, every merge against the whole frames."""
    import ml.backtest
    import ml.features
    from ml.features import prepare

    monkeypatch.setattr(ml.backtest, "at_cutoff",
                        lambda full, origin: prepare(deals, events, stages, cutoff=origin))
    pipeline_as_of = ml.backtest.pipeline_as_of
    monkeypatch.setattr(ml.backtest, "pipeline_as_of",
                        lambda timeline, origin, close_dates, scored=None: pipeline_as_of(timeline, origin, close_dates))
    monkeypatch.setattr(ml.features, "_rows_of", lambda frame, deal_idx, n_deals: frame)


def test_the_backtest_gives_what_the_per_origin_preparation_gave(monkeypatch):
    """Same results and metrics (same seeds) with the timeline prepared once and cut at each
    origin, and the open deals' features built once, as the per-origin code gave."""
    from ml.backtest import run_backtest
    from voronka.simulator.company import simulate_company
    from voronka.simulator.ml_frames import ml_frames

    c = ml_frames(simulate_company(n_deals=1500, seed=3, end_date=date(2026, 6, 30), years=2.0))
    deals, events, stages = c["deals"], c["stage_events"], c["pipeline_stages"]

    def run():
        return run_backtest(deals, events, stages, max_origins=4, retrain_every_months=2, draws=200, seed=1,
                            max_examples=20_000, data_end=pd.Timestamp("2026-06-30 23:59:59"))

    new = run()
    with monkeypatch.context() as m:
        _per_origin_prepare(m, deals, events, stages)
        old = run()
    assert new.origins == old.origins and len(new.origins) == 4
    pd.testing.assert_frame_equal(new.results, old.results)
    pd.testing.assert_frame_equal(new.metrics, old.metrics)


def _clock_scale_per_winner(curves, observed):
    """The clock fit ml.forecast_calibration.clock_scale replaced: every winner's curve read at
    every scale."""
    from ml.forecast_calibration import CLOCK_HORIZONS, CLOCK_SCALES, curves_at

    target = observed.mean(axis=0)
    errors = [((curves_at(curves, CLOCK_HORIZONS[None, :] / s).mean(axis=0) - target) ** 2).sum()
              for s in CLOCK_SCALES]
    return float(CLOCK_SCALES[int(np.argmin(errors))])


def test_the_clock_fit_reads_the_mean_curve_as_every_curve_gave():
    from ml.forecast_calibration import CLOCK_HORIZONS, clock_scale

    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(30, 600))
        rate = rng.gamma(2.0, 0.02, n)[:, None] * rng.uniform(0.3, 3.0)
        curves = 1 - np.exp(-rate * np.arange(181)[None, :])
        curves /= curves[:, -1:]
        observed = rng.exponential(rng.uniform(10, 120), n)[:, None] <= CLOCK_HORIZONS[None, :]
        assert clock_scale(curves, observed) == _clock_scale_per_winner(curves, observed)


def test_forecast_calibration_is_unchanged_by_the_clock_fit(company, monkeypatch):
    """The whole calibration table (factors and clocks per bin) is the one the per-winner clock
    fit gave, on the simulated company."""
    import ml.forecast_calibration as fc
    from ml.features import examples_from_timeline, prepare
    from ml.scoring import train_models

    deals, events, stages = company["deals"], company["stage_events"], company["pipeline_stages"]
    cutoff = pd.Timestamp(deals["created_at"].max())
    _, _, win, _, ttc, _ = train_models(deals, events, stages, cutoff=cutoff, seed=0, max_rows=60_000)
    timeline = prepare(deals, events, stages, cutoff=cutoff)
    examples = examples_from_timeline(timeline, cap_per_deal=None, max_rows=50_000, seed=0)
    new = fc.forecast_calibration(win.model, ttc, timeline, examples=examples)
    monkeypatch.setattr(fc, "clock_scale", _clock_scale_per_winner)
    old = fc.forecast_calibration(win.model, ttc, timeline, examples=examples)
    assert (new["clock"] != 1.0).any()
    pd.testing.assert_frame_equal(new, old)


def _drivers_text_per_row(drivers, n_rows):
    """The groupby-per-row version ml.scoring._drivers_text replaced."""
    text = [""] * n_rows
    for row, group in drivers.groupby("row"):
        text[row] = "; ".join(f"{f} {'+' if e >= 0 else '−'}{abs(e):.0%}"
                              for f, e in zip(group["feature"], group["effect"]))
    return text


def test_deal_drivers_are_the_ones_the_per_row_code_gave(company):
    from ml.features import build_scoring_features
    from ml.scoring import _drivers_text, train_models

    deals, events, stages = company["deals"], company["stage_events"], company["pipeline_stages"]
    cutoff = pd.Timestamp(deals["created_at"].max())
    _, _, win, _, _, _ = train_models(deals, events, stages, cutoff=cutoff, seed=0, max_rows=60_000)
    X = build_scoring_features(deals, events, stages, cutoff)
    drivers = win.model.top_drivers(X, k=3)
    values = [X[name].iloc[r] for r, name in zip(drivers["row"], drivers["feature"])]  # the old gather
    assert all(a == b or (pd.isna(a) and pd.isna(b)) for a, b in zip(drivers["value"], values))
    assert _drivers_text(drivers, len(X)) == _drivers_text_per_row(drivers, len(X))
    some = drivers[drivers["row"].isin([0, 3, 4])]  # rows without drivers stay empty
    assert _drivers_text(some, len(X)) == _drivers_text_per_row(some, len(X))
    assert _drivers_text(drivers.iloc[:0], 5) == [""] * 5


def test_one_incidence_pass_gives_both_scores(company):
    """deal_scores reads P(won within h) and the expected close date from one incidence pass:
    the same as the two calls it replaced, for the model and for the stage baseline."""
    from ml.features import build_scoring_features, build_training_examples
    from ml.survival import StageCumulativeIncidenceBaseline, TimeToCloseModel

    deals, events, stages = company["deals"], company["stage_events"], company["pipeline_stages"]
    cutoff = pd.Timestamp(deals["created_at"].max())
    examples = build_training_examples(deals, events, stages, cutoff=cutoff, cap_per_deal=None,
                                       max_rows=30_000, seed=0)
    X = build_scoring_features(deals, events, stages, cutoff)
    horizons = [12.5, 104.0]
    for model in (TimeToCloseModel(random_state=0, max_rows=5000).fit(examples),
                  StageCumulativeIncidenceBaseline().fit(examples)):
        within, dates = model.won_within_and_close_date(X, horizons)
        np.testing.assert_array_equal(within, model.predict_won_within(X, horizons))
        pd.testing.assert_series_equal(dates, model.expected_close_date(X))


def test_features_of_a_few_deals_read_only_their_events_as_reading_all_gave(company, monkeypatch):
    """build_features merges as of the events, states and history of the requested deals only
    (ml.features._rows_of): the same features as against the whole frames."""
    from ml import features

    deals, events, stages = company["deals"], company["stage_events"], company["pipeline_stages"]
    history = deals[["deal_key", "created_at", "amount_reporting", "owner"]].rename(
        columns={"created_at": "valid_from"})
    history = pd.concat([history, history.assign(
        valid_from=pd.to_datetime(history["valid_from"]) + pd.Timedelta(days=30),
        amount_reporting=history["amount_reporting"] * 0.9, owner="someone else")], ignore_index=True)
    rng = np.random.default_rng(2)
    for deal_history in (None, history):
        timeline = features.prepare(deals, events, stages, deal_history=deal_history)
        n = len(timeline.deals)
        idx = rng.choice(n, n // 10)  # repeats too
        as_of = timeline.deals["created_at"].to_numpy()[idx] + rng.integers(0, 200, len(idx)) * np.timedelta64(1, "D")
        got = features.build_features(timeline, idx, as_of)
        open_now = features.open_deal_features(timeline, timeline.cutoff - pd.Timedelta(days=100))
        with monkeypatch.context() as m:
            m.setattr(features, "_rows_of", lambda frame, deal_idx, n_deals: frame)
            want = features.build_features(timeline, idx, as_of)
            want_open = features.open_deal_features(timeline, timeline.cutoff - pd.Timedelta(days=100))
        assert len(open_now) * 4 < n
        pd.testing.assert_frame_equal(got, want)
        pd.testing.assert_frame_equal(open_now, want_open)
