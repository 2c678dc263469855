"""Backtest: how well each forecast method did at past origins, measured against what was booked.

At each origin (a month start; quarter starts also get the quarter horizons) the pipeline is
rebuilt as it was (ml.features.prepare with the origin as cut-off: deals created after it do not
exist, stages come from the events up to it, a deal closed later is open), the models are trained
only on what was known then (as-of examples with the origin as cut-off; retrained every
`retrain_every_months` origins and used until the next retraining — a model trained earlier is
still honest later), every method forecasts the periods ahead, and the forecast is compared with
the bookings those periods really got (won deals by their close date, from the full data).

Methods (each gives a mean and a P10/P50/P90):
- model: ml.forecast.model_forecast (win model x time to close, plus deals not yet created).
- weighted_pipeline: CRM stage probability x amount in the period of the expected close date.
- stage_win_rate: the historical win rate of the stage (closed deals known at the origin) x
  amount, same period assignment and Monte Carlo.
- seasonal_naive: the same period a year earlier (run-rate of the last three months when the
  history is shorter); its interval from the spread of that rule's past errors.

Caveat for the two pipeline baselines: without a deal history the expected close date is the
latest one exported, which CRMs keep pushing while a deal lingers — it knows roughly when the
deal really closed. That leak favours the baselines, so a model that beats them beats them with
a handicap.

Metrics per method and horizon over the origins (scope: all pipelines): WAPE = Σ|P50 − actual| /
Σ actual — the P50 is the point forecast the report headlines, and the median is what an absolute
error rewards (revenue from a few large deals is skewed: its mean sits above its median); WAPE of
the mean = Σ|mean − actual| / Σ actual beside it; bias = Σ(mean − actual) / Σ actual (is the
expectation right on average); interval coverage = share of origins with P10 ≤ actual ≤ P90 (80%
is right); pinball loss = the mean quantile loss of P10, P50 and P90 divided by the mean actual
(reads like WAPE).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.backtest_metrics import (  # noqa: F401  (METRIC_COLUMNS, pinball: the backtest's API too)
    HORIZONS,
    METHODS,
    METRIC_COLUMNS,
    SEASONAL_NAIVE,
    STAGE_WIN_RATE,
    backtest_metrics,
    forecast_metrics,
    horizons_not_beaten,
    pinball,
)
from ml.features import _ts, at_cutoff, examples_from_timeline, prepare
from ml.forecast import (
    ALL,
    MODEL,
    WEIGHTED_PIPELINE,
    PeriodGrid,
    forecast_table,
    model_forecast,
    score_forecast_inputs,
    weighted_won_by,
)
from ml.periods import month_of, quarter_of
from ml.survival import StageCumulativeIncidenceBaseline, TimeToCloseModel
from ml.win_model import StageWinRateBaseline, WinModel, cutoff_of, maturity

RESULT_COLUMNS = ["origin", "method", "horizon", "period", "pipeline", "expected", "from_open_pipeline",
                  "from_new_pipeline", "p10", "p50", "p90", "actual", "actual_from_new_pipeline"]
DAY = pd.Timedelta(days=1)


@dataclass
class Backtest:
    results: pd.DataFrame  # RESULT_COLUMNS: one row per origin, method, horizon and pipeline
    metrics: pd.DataFrame  # METRIC_COLUMNS
    origins: list
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------- origins and actuals

def backtest_origins(first_created, data_end, min_history_days: int = 365,
                     max_origins: int | None = None) -> list[pd.Timestamp]:
    """Month starts with at least `min_history_days` of history before them whose month ends by
    `data_end` (so at least the month+0 horizon can be scored); the newest `max_origins`."""
    first, end = pd.Timestamp(first_created), pd.Timestamp(data_end)
    start = (first + min_history_days * DAY).to_period("M").to_timestamp()
    if start < first + min_history_days * DAY:
        start += pd.offsets.MonthBegin(1)
    origins = []
    o = start
    while _complete(month_of(o.date()), end):
        origins.append(o)
        o += pd.offsets.MonthBegin(1)
    return origins[-max_origins:] if max_origins else origins


def horizon_periods(origin: pd.Timestamp, data_end) -> dict:
    """{horizon: Period} scored at this origin: months always, quarters at quarter starts; only
    periods that ended by `data_end`."""
    day = origin.date()
    out = {"month+0": month_of(day), "month+1": month_of(day, 1)}
    if origin.month in (1, 4, 7, 10):
        out.update({"quarter+0": quarter_of(day), "quarter+1": quarter_of(day, 1)})
    return {h: p for h, p in out.items() if _complete(p, pd.Timestamp(data_end))}


def _complete(period, data_end: pd.Timestamp) -> bool:
    """The data covers the whole period (up to its last second)."""
    return pd.Timestamp(period.end) + DAY - pd.Timedelta(seconds=1) <= data_end


def won_amounts(deals: pd.DataFrame, data_end=None) -> pd.DataFrame:
    """Won deals (closed by `data_end`): pipeline, closed_at, created_at, amount_reporting."""
    won = deals[deals["outcome"].astype(str).str.lower() == "won"]
    if data_end is not None:
        won = won[pd.to_datetime(won["closed_at"]) <= pd.Timestamp(data_end)]
    amount = "amount_reporting" if "amount_reporting" in won else "amount"
    return pd.DataFrame({"pipeline": won["pipeline"].astype(str).to_numpy(),
                         "closed_at": pd.to_datetime(won["closed_at"]).to_numpy(),
                         "created_at": pd.to_datetime(won["created_at"]).to_numpy(),
                         "amount_reporting": pd.to_numeric(won[amount], errors="coerce").fillna(0).to_numpy()})


def booked_between(won: pd.DataFrame, start, end, created_after=None) -> pd.Series:
    """Won amount per pipeline (and 'all') with start <= closed_at < end (and, if given, created
    after `created_after`)."""
    sel = won[(won["closed_at"] >= pd.Timestamp(start)) & (won["closed_at"] < pd.Timestamp(end))]
    if created_after is not None:
        sel = sel[sel["created_at"] > pd.Timestamp(created_after)]
    out = sel.groupby("pipeline")["amount_reporting"].sum()
    out[ALL] = float(sel["amount_reporting"].sum())
    return out


# ---------------------------------------------------------------- models at an origin

@dataclass
class FittedAt:
    cutoff: pd.Timestamp
    win: WinModel | StageWinRateBaseline  # the baseline when the origin's history is too short
    baseline: StageWinRateBaseline
    ttc: TimeToCloseModel | StageCumulativeIncidenceBaseline
    n_examples: int
    seconds: float


def fit_models(timeline, seed: int = 0, max_examples: int | None = 100_000,
               ttc_rows: int = 8_000, cap_per_deal: int | None = None) -> FittedAt:
    """Win model (mature resolved examples), stage baseline and time-to-close model from the
    as-of examples of `timeline` (its cut-off is what was known).

    cap_per_deal (time to close; the win model always takes at most four per deal, as the daily
    model does) None: every weekly as-of date of every deal, so the examples are weighted like
    the open pipeline on any day (a deal open for ten weeks is in ten weekly snapshots). With
    the default cap of four per deal (ml.features), lingering deals are under-represented and
    the time-to-close model's P(close within a month | won) for the open pipeline came out too
    high (0.73 against a true 0.61 at three origins of the 5k-deal company; 0.62 uncapped)."""
    started = time.perf_counter()
    examples = examples_from_timeline(timeline, cap_per_deal=cap_per_deal, max_rows=max_examples, seed=seed)
    # The win model as the daily asset trains it (ml.scoring.train_models): at most four as-of
    # dates per deal; time to close on every one.
    win_examples = examples_from_timeline(timeline, max_rows=max_examples, seed=seed)
    resolved = win_examples[win_examples["event"].astype(str) != "censored"]
    end = cutoff_of(win_examples) - pd.Timedelta(days=maturity(win_examples))
    train = resolved[resolved["as_of"] <= end]
    baseline = StageWinRateBaseline().fit(resolved, resolved["won"].to_numpy())
    # The stage baselines when the origin's history is too short to fit (as ml.scoring does).
    # The booster at every size: the daily model's logistic regression for small orgs
    # (ml.win_model.default_win_model) is not replayed here yet.
    try:
        win = WinModel(random_state=seed).fit(train, train["won"].to_numpy(), sample_time=train["as_of"])
    except ValueError:
        win = baseline
    try:
        ttc = TimeToCloseModel(random_state=seed, max_rows=ttc_rows).fit(examples)
    except ValueError:
        ttc = StageCumulativeIncidenceBaseline().fit(examples)
    return FittedAt(timeline.cutoff, win, baseline, ttc, len(examples), time.perf_counter() - started)


# ---------------------------------------------------------------- seasonal naive

def monthly_bookings(won: pd.DataFrame, pipelines: list[str]) -> pd.DataFrame:
    """Won amount per calendar month (rows, a monthly PeriodIndex) and pipeline (+ 'all')."""
    month = pd.PeriodIndex(pd.DatetimeIndex(won["closed_at"]), freq="M")
    table = won.assign(month=month).pivot_table(index="month", columns="pipeline", values="amount_reporting",
                                               aggfunc="sum", fill_value=0.0)
    table = table.reindex(columns=pipelines, fill_value=0.0)
    if len(table):
        table = table.reindex(pd.period_range(table.index.min(), table.index.max(), freq="M"), fill_value=0.0)
    table[ALL] = table.sum(axis=1)
    return table


def seasonal_naive(monthly: pd.DataFrame, origin: pd.Timestamp, period, first_created) -> dict:
    """{pipeline: (mean, p10, p50, p90)} for one period, from the monthly bookings known at the
    origin (months before it): the same months a year earlier when the history covers them,
    else the run-rate of the three months before the origin. The interval: the quantiles of
    log(actual / rule) of the same rule on the past periods of that length (at least four)."""
    first_month = pd.Period(pd.Timestamp(first_created), freq="M")
    origin_month = pd.Period(origin, freq="M")
    known = monthly[monthly.index < origin_month]
    months = pd.period_range(pd.Period(period.start, freq="M"), pd.Period(period.end, freq="M"), freq="M")
    length = len(months)

    def total(ms):
        return known.reindex(ms, fill_value=0.0).sum(axis=0)

    def rule(ms):
        last_year = ms - 12
        if last_year[0] > first_month and last_year[-1] < origin_month:
            return total(last_year)
        recent = pd.period_range(max(origin_month - 3, first_month + 1), origin_month - 1, freq="M")
        if len(recent) == 0:
            return total(ms) * 0.0
        return total(recent) / len(recent) * length

    mean = rule(months)
    ratios = []
    for k in range(1, 25):
        past = months - k
        if past[-1] >= origin_month or (past[0] - 12) <= first_month:
            continue
        f, a = rule(past), total(past)
        ratios.append(np.log(a.where(a > 0) / f.where(f > 0)))
    out = {}
    r = pd.DataFrame(ratios) if ratios else pd.DataFrame(columns=mean.index)
    for pipeline, m in mean.items():
        values = r[pipeline].dropna().to_numpy(float) if pipeline in r else np.zeros(0)
        if len(values) >= 4:
            q10, q50, q90 = np.quantile(values, [0.1, 0.5, 0.9])
            out[pipeline] = (float(m), float(m * np.exp(q10)), float(m * np.exp(q50)), float(m * np.exp(q90)))
        else:
            out[pipeline] = (float(m),) * 4
    return out


# ---------------------------------------------------------------- the backtest

def run_backtest(deals: pd.DataFrame, stage_events: pd.DataFrame, pipeline_stages: pd.DataFrame,
                 methods=METHODS, max_origins: int | None = 24, min_history_days: int = 365,
                 retrain_every_months: int = 3, draws: int = 1000, seed: int = 0,
                 correlation: float = 0.0, max_examples: int | None = 100_000,
                 deal_history: pd.DataFrame | None = None, data_end=None,
                 cap_per_deal: int | None = None, progress=None) -> Backtest:
    """Forecast at each origin with every method and compare with what was booked.

    deals: the canonical deals (deal_key, pipeline, amount_reporting, created_at,
    expected_close_date, closed_at, outcome, ...); stage_events; pipeline_stages — the full
    history. data_end: the newest time the data covers (default: the newest timestamp in it).
    """
    started = time.perf_counter()
    methods = tuple(methods)
    created = _ts(deals["created_at"])
    if data_end is None:  # the newest timestamp in the data, as ml.features.prepare does
        data_end = max(created.max(), _ts(deals["closed_at"]).max(), _ts(stage_events["entered_at"]).max())
    data_end = pd.Timestamp(data_end)
    first_created = created[created <= data_end].min()
    origins = backtest_origins(first_created, data_end, min_history_days, max_origins)
    won = won_amounts(deals, data_end)
    close_dates = pd.Series(pd.to_datetime(deals["expected_close_date"]).to_numpy(),
                            index=deals["deal_key"].astype(str).to_numpy())
    pipelines = sorted(deals["pipeline"].dropna().astype(str).unique().tolist())
    monthly = monthly_bookings(won, pipelines)
    rows, fitted, timings = [], None, {"models": 0.0, "forecasts": 0.0}
    # Prepared once and cut at each origin (the same frames as prepare(cutoff=origin)).
    full = prepare(deals, stage_events, pipeline_stages, cutoff=data_end, deal_history=deal_history)
    for i, origin in enumerate(origins):
        periods = horizon_periods(origin, data_end)
        if not periods:
            continue
        timeline = at_cutoff(full, origin)
        needs_model = MODEL in methods or STAGE_WIN_RATE in methods
        if needs_model and (fitted is None or i % max(retrain_every_months, 1) == 0):
            fitted = fit_models(timeline, seed=seed, max_examples=max_examples, cap_per_deal=cap_per_deal)
            timings["models"] += fitted.seconds
        t0 = time.perf_counter()
        grid_periods = list(dict.fromkeys(periods.values()))
        actual = {h: booked_between(won, p.start, pd.Timestamp(p.end) + DAY) for h, p in periods.items()}
        actual_new = {h: booked_between(won, p.start, pd.Timestamp(p.end) + DAY, created_after=origin)
                      for h, p in periods.items()}
        booked = pd.DataFrame(columns=["period", "pipeline", "won_amount_reporting"])
        targets = pd.DataFrame(columns=["period", "pipeline", "target_amount_reporting"])
        forecasts = {}
        if needs_model:
            inputs = score_forecast_inputs(timeline, fitted.win, fitted.ttc, origin, grid_periods, seed=seed)
        if MODEL in methods:
            forecasts[MODEL] = model_forecast(inputs.open_deals, inputs.close_given_win, booked, targets,
                                              origin, "", new=inputs.new, draws=draws, seed=seed + i,
                                              correlation=correlation, periods=grid_periods)
        open_deals = None
        if WEIGHTED_PIPELINE in methods or STAGE_WIN_RATE in methods:
            # The model's inputs hold the same open deals: their features are not built twice.
            open_deals = pipeline_as_of(timeline, origin, close_dates,
                                        scored=inputs.open_deals if needs_model else None)
            grid = PeriodGrid.build(origin, grid_periods)
        if WEIGHTED_PIPELINE in methods:
            forecasts[WEIGHTED_PIPELINE] = forecast_table(
                open_deals, weighted_won_by(open_deals, grid), grid, booked.copy(), targets.copy(), "",
                WEIGHTED_PIPELINE, draws, seed + i, pipelines=pipelines)
        if STAGE_WIN_RATE in methods:
            stage_rate = fitted.baseline.predict_proba(
                open_deals.assign(pipeline_stage=open_deals["pipeline"] + "/" + open_deals["stage"]))[:, 1]
            forecasts[STAGE_WIN_RATE] = forecast_table(
                open_deals, weighted_won_by(open_deals.assign(crm_probability=stage_rate), grid), grid,
                booked.copy(), targets.copy(), "", STAGE_WIN_RATE, draws, seed + i, pipelines=pipelines)
        for method, frame in forecasts.items():
            frame = frame[frame["segment"].isna() & frame["owner"].isna()]
            for horizon, period in periods.items():
                for r in frame[frame["period"] == period.label].itertuples():
                    rows.append((origin, method, horizon, period.label, r.pipeline, r.expected,
                                 r.from_open_pipeline, r.from_new_pipeline, r.p10, r.p50, r.p90,
                                 float(actual[horizon].get(r.pipeline, 0.0)),
                                 float(actual_new[horizon].get(r.pipeline, 0.0))))
        if SEASONAL_NAIVE in methods:
            for horizon, period in periods.items():
                for pipeline, (mean, p10, p50, p90) in seasonal_naive(monthly, origin, period,
                                                                      first_created).items():
                    rows.append((origin, SEASONAL_NAIVE, horizon, period.label, pipeline, mean, None, None,
                                 p10, p50, p90, float(actual[horizon].get(pipeline, 0.0)),
                                 float(actual_new[horizon].get(pipeline, 0.0))))
        timings["forecasts"] += time.perf_counter() - t0
        if progress is not None:
            progress(f"origin {origin.date()} ({i + 1}/{len(origins)})")
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    info = {"origins": len(origins), "seconds": round(time.perf_counter() - started, 1),
            "model_seconds": round(timings["models"], 1), "forecast_seconds": round(timings["forecasts"], 1),
            "data_end": str(data_end), "draws": draws, "retrain_every_months": retrain_every_months,
            "correlation": correlation}
    return Backtest(results, backtest_metrics(results), [o.date().isoformat() for o in origins], info)


def pipeline_as_of(timeline, origin, close_dates: pd.Series, scored: pd.DataFrame | None = None) -> pd.DataFrame:
    """The deals open at `origin` as they were then (stage, CRM probability), with the expected
    close date from `close_dates` (deal_key -> date; see the module note on its leak). scored:
    ForecastInputs.open_deals at the same origin, if already built (the same deals and values)."""
    from ml.features import open_deal_features

    X = open_deal_features(timeline, origin) if scored is None else scored
    keys = X["deal_key"].astype(str)
    return pd.DataFrame({
        "deal_key": keys.to_numpy(), "pipeline": X["pipeline"].astype(str).to_numpy(),
        "stage": X["stage"].astype(str).to_numpy(), "amount_reporting": X["amount_reporting"].to_numpy(float),
        "crm_probability": X["crm_probability"].to_numpy(float),
        "expected_close_date": keys.map(close_dates).to_numpy(),
    })
