"""Revenue forecast per period and scope: booked to date + what the open pipeline and the deals
not yet created will bring, with a Monte Carlo interval and P(revenue >= target).

Two methods, side by side in one table (`method`):

- 'model' (the one leadership reads): every open deal brings amount x P(win) x P(close inside
  the period | win, state). P(win) is the win model's (eventually won); the timing is the
  time-to-close model's, normalised to a win: P(won by t | won) = CIF(t) / CIF(365)
  (`TimeToCloseModel.predict_close_given_win`). So the win model alone sets *whether* and the
  survival model only *when*: its own level of winning cancels in the ratio, and the two models
  cannot double-count the chance of losing. Deals not created yet: the recent creation rate per
  pipeline (a Poisson regression on daily creations with trend, month-of-year and weekday
  effects) x what recent new deals looked like at creation (their amount, P(win) and
  time-to-close curve from the same models). Both models are corrected per pipeline and deal
  size before they are used (`forecast_calibration`: P(win) to the money that was won, the
  clock to the times the winners took; `forecast_timing`: the curve, horizon by horizon, to when
  the past winners' money was won). Last, the open deals' P(won by t) is checked out of time
  (`forecast_arrival`): at past weekly as-of dates with at least h days of follow-up, the money
  every deal open then actually won within h (still open or lost: 0) / what the corrected
  models said, per pipeline and horizon, multiplies the open deals' curves. The other
  corrections learn from resolved deals and winners only; this one also sees the deals that
  never resolve (a young org's zombie pipeline), which otherwise made the month ahead 3-5x
  what was booked.
- 'weighted_pipeline' (the baseline every CRM shows): each open deal expected to close in the
  period counts amount x CRM stage probability; an overdue or undated deal counts in the current
  period (the CRM still says it is about to close); no new pipeline.

Monte Carlo: `ml.montecarlo.simulate_won_by` draws the open deals (won or not and by which
period boundary, seeded; a common shock when `correlation` > 0), `ml.new_pipeline` the deals not
yet created (a compound Poisson process per period bin), `ml.forecast_calibration` corrects the
models per pipeline and deal size. This module keeps the entry points: the period grid, the
forecast table per scope and the two methods, and `score_forecast_inputs` (the models' inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ml.forecast_calibration import (
    ARRIVAL_HORIZONS,
    apply_arrival,
    apply_timing,
    bin_values,
    curves_at,
    forecast_arrival,
    forecast_calibration,
    forecast_timing,
)
from ml.montecarlo import simulate_won_by
from ml.names import ALL, MODEL, WEIGHTED_PIPELINE  # noqa: F401  (others import them from here)
from ml.new_pipeline import (
    NewPipeline,
    creation_rate,
    new_pipeline_won_by,
    simulate_new_pipeline,
)
from ml.periods import Period, current_and_next

METHODS = (MODEL, WEIGHTED_PIPELINE)
FORECAST_COLUMNS = [
    "period", "period_grain", "pipeline", "segment", "owner", "currency", "target", "booked",
    "expected", "from_open_pipeline", "from_new_pipeline", "p10", "p50", "p90",
    "prob_hit_target", "open_deals", "method",
]
DAY = pd.Timedelta(days=1)


# ---------------------------------------------------------------- periods

def assign_period(expected_close: pd.Series, period: Period, as_of: date) -> np.ndarray:
    """Boolean mask: which open deals are expected to close in `period` (as of `as_of`); in the
    current period also the overdue and undated ones. Whole days compared as datetime64[D]
    (a per-deal Python date took 5-10 s on the 1M-deal snapshot)."""
    close = pd.to_datetime(pd.Series(expected_close))
    if getattr(close.dt, "tz", None) is not None:  # the local calendar day, as .dt.date gives
        close = close.dt.tz_localize(None)
    day = close.dt.normalize().to_numpy("datetime64[ns]").astype("datetime64[D]")
    in_period = (day >= np.datetime64(period.start, "D")) & (day <= np.datetime64(period.end, "D"))
    if period.contains(as_of):
        in_period |= np.isnat(day) | (day < np.datetime64(as_of, "D"))
    return in_period


@dataclass(frozen=True)
class PeriodGrid:
    """The forecast periods and the boundaries the Monte Carlo tracks.

    boundary b = the end of one of the periods (midnight after its last day); `days[b]` = days
    from the as-of time to it. A period's revenue = revenue won by its end boundary − revenue won
    by its start (the boundary before it, or nothing when it started before the as-of time).
    """

    as_of: pd.Timestamp
    periods: tuple[Period, ...]
    boundary_dates: tuple[date, ...]  # last day covered by each boundary, ascending
    days: np.ndarray
    start: tuple[int, ...]  # per period: index of the boundary it starts after, or -1
    end: tuple[int, ...]

    @classmethod
    def build(cls, as_of, periods: list[Period] | None = None) -> "PeriodGrid":
        as_of = pd.Timestamp(as_of)
        periods = tuple(periods or current_and_next(as_of.date()))
        ends = sorted({p.end for p in periods})
        days = np.array([(pd.Timestamp(e) + DAY - as_of) / DAY for e in ends], dtype=float)
        index = {e: i for i, e in enumerate(ends)}
        start = []
        for p in periods:
            before = pd.Timestamp(p.start)
            if before <= as_of:
                start.append(-1)
            else:
                previous = (before - DAY).date()
                if previous not in index:
                    raise ValueError(f"period {p.label} does not start at another period's end")
                start.append(index[previous])
        return cls(as_of, periods, tuple(ends), days, tuple(start), tuple(index[p.end] for p in periods))

    def period_values(self, cumulative: np.ndarray, k: int) -> np.ndarray:
        """Period k's part of a cumulative array with the boundaries on its last axis:
        cumulative[..., end] − cumulative[..., start] (or just the end when it started before)."""
        out = cumulative[..., self.end[k]]
        return out - cumulative[..., self.start[k]] if self.start[k] >= 0 else out


# ---------------------------------------------------------------- scopes and rows

@dataclass(frozen=True)
class Scope:
    pipeline: str  # ALL or one pipeline
    segment: str | None = None
    owner: str | None = None


def scopes_for(pipelines: list[str], targets: pd.DataFrame) -> list[Scope]:
    """Every pipeline and 'all'; plus a scope per segment/owner that has a target."""
    scopes = [Scope(p) for p in pipelines] + [Scope(ALL)]
    for t in targets.itertuples():
        seg, own = _opt(getattr(t, "segment", None)), _opt(getattr(t, "owner", None))
        if seg is not None or own is not None:
            s = Scope(str(t.pipeline), seg, own)
            if s not in scopes:
                scopes.append(s)
    return scopes


def _opt(value):
    return None if value is None or (isinstance(value, float) and np.isnan(value)) or pd.isna(value) else str(value)


def _keyed(frame: pd.DataFrame, value: str) -> dict:
    out = {}
    for r in frame.itertuples():
        key = (str(r.period), str(r.pipeline), _opt(getattr(r, "segment", None)), _opt(getattr(r, "owner", None)))
        v = getattr(r, value)
        if v is not None and not pd.isna(v):
            out[key] = out.get(key, 0.0) + float(v)
    return out


def _cell_keys(frame: pd.DataFrame, by_segment: bool, by_owner: bool) -> pd.Series:
    key = frame["pipeline"].astype(str)
    if by_segment:
        key = key + "\x1f" + frame["segment"].astype(str)
    if by_owner:
        key = key + "\x1f" + frame["owner"].astype(str)
    return key


def _scope_mask(cell_frame: pd.DataFrame, scope: Scope) -> np.ndarray:
    m = np.ones(len(cell_frame), dtype=bool)
    if scope.pipeline != ALL:
        m &= cell_frame["pipeline"].astype(str).to_numpy() == scope.pipeline
    if scope.segment is not None:
        m &= cell_frame["segment"].astype(str).to_numpy() == scope.segment
    if scope.owner is not None:
        m &= cell_frame["owner"].astype(str).to_numpy() == scope.owner
    return m


def forecast_table(open_deals: pd.DataFrame, won_by: np.ndarray, grid: PeriodGrid,
                   bookings: pd.DataFrame, targets: pd.DataFrame, currency: str, method: str,
                   draws: int, seed: int, new: NewPipeline | None = None,
                   correlation: float = 0.0, pipelines: list[str] | None = None,
                   chunk: int = 512) -> pd.DataFrame:
    """Rows (FORECAST_COLUMNS) for every period of `grid` and scope.

    open_deals: pipeline, amount_reporting (+ segment, owner when targets are scoped by them);
    won_by: (deals, boundaries) cumulative P(won by each boundary of the grid).
    bookings: period, pipeline (+ segment, owner), won_amount_reporting — booked to date.
    targets: period, pipeline (+ segment, owner), target_amount_reporting.
    """
    rng = np.random.default_rng(seed)
    for col in ("segment", "owner"):
        for frame in (bookings, targets):
            if col not in frame:
                frame[col] = None
    if pipelines is None:
        pipelines = sorted(set(open_deals["pipeline"].dropna().astype(str))
                           | {str(p) for p in bookings["pipeline"].unique() if p != ALL}
                           | ({str(p) for p in new.daily_rate} if new is not None else set()))
    scopes = scopes_for(pipelines, targets)
    by_segment = any(s.segment is not None for s in scopes)
    by_owner = any(s.owner is not None for s in scopes)
    deals = open_deals.assign(pipeline=open_deals["pipeline"].astype(str))
    for col in ("segment", "owner"):
        if col not in deals:
            deals[col] = None
    templates = new.templates if new is not None else pd.DataFrame(columns=["pipeline", "segment", "owner"])
    deal_keys = _cell_keys(deals, by_segment, by_owner)
    template_keys = _cell_keys(templates, by_segment, by_owner) if len(templates) else pd.Series([], dtype=str)
    pipeline_keys = pd.Series(pipelines, dtype=str)
    # Cells: the finest scope needed (pipeline, + segment / owner when a target asks for them).
    named = pipeline_keys if not (by_segment or by_owner) else pd.Series([], dtype=str)
    cell_index = pd.Index(pd.unique(pd.concat([named, deal_keys, template_keys], ignore_index=True)))
    parts = cell_index.to_series().str.split("\x1f", expand=True)
    cell_frame = pd.DataFrame({"pipeline": parts[0].to_numpy() if len(parts) else []})
    if by_segment:
        cell_frame["segment"] = parts[1].to_numpy()
    if by_owner:
        cell_frame["owner"] = parts[2 if by_segment else 1].to_numpy()
    n_cells = len(cell_index)
    deal_cells = cell_index.get_indexer(deal_keys)
    amounts = deals["amount_reporting"].fillna(0).to_numpy(float)
    won_by = np.asarray(won_by, dtype=float).reshape(len(deals), len(grid.days))

    sim = simulate_won_by(won_by, amounts, deal_cells, n_cells, draws, rng, correlation, chunk=chunk)
    exp_open = np.zeros((n_cells, len(grid.days)))
    np.add.at(exp_open, deal_cells, won_by * amounts[:, None])
    exp_new = np.zeros_like(exp_open)
    if new is not None and len(templates):
        template_cells = cell_index.get_indexer(template_keys)
        sim += simulate_new_pipeline(new, grid.days, template_cells, n_cells, draws, rng, correlation)
        base = new_pipeline_won_by(new, grid.days)
        value = templates["amount_reporting"].to_numpy(float) * templates["p_win"].to_numpy(float)
        np.add.at(exp_new, template_cells, base * value[:, None])
    ever = won_by[:, -1] > 0

    booked, target = _keyed(bookings, "won_amount_reporting"), _keyed(targets, "target_amount_reporting")
    rows = []
    for k, period in enumerate(grid.periods):
        for scope in scopes:
            cells_in = _scope_mask(cell_frame, scope)
            key = (period.label, scope.pipeline, scope.segment, scope.owner)
            booked_amount = booked.get(key, 0.0)
            target_amount = target.get(key)
            revenue = booked_amount + grid.period_values(sim[cells_in].sum(axis=0).T, k)
            from_open = float(grid.period_values(exp_open[cells_in].sum(axis=0), k))
            from_new = float(grid.period_values(exp_new[cells_in].sum(axis=0), k))
            in_scope = cells_in[deal_cells] if len(deal_cells) else np.zeros(0, bool)
            period_mass = grid.period_values(won_by, k) > 0 if len(won_by) else np.zeros(0, bool)
            rows.append({
                "period": period.label, "period_grain": period.grain, "pipeline": scope.pipeline,
                "segment": scope.segment, "owner": scope.owner, "currency": currency,
                "target": target_amount, "booked": booked_amount,
                "expected": booked_amount + from_open + from_new,
                "from_open_pipeline": from_open, "from_new_pipeline": from_new,
                "p10": float(np.percentile(revenue, 10)), "p50": float(np.percentile(revenue, 50)),
                "p90": float(np.percentile(revenue, 90)),
                "prob_hit_target": None if target_amount is None else float(np.mean(revenue >= target_amount)),
                "open_deals": int((in_scope & ever & period_mass).sum()), "method": method,
            })
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)


# ---------------------------------------------------------------- the two methods

def weighted_won_by(open_deals: pd.DataFrame, grid: PeriodGrid) -> np.ndarray:
    """CRM view: P(won by boundary b) = crm_probability when the expected close date (an overdue
    or missing one: the as-of date) is on or before the boundary's last day, else 0."""
    as_of_day = grid.as_of.normalize()
    close = pd.to_datetime(open_deals["expected_close_date"]).dt.normalize()
    effective = close.where(close.notna() & (close >= as_of_day), as_of_day).to_numpy()
    ends = np.array([np.datetime64(e, "ns") for e in grid.boundary_dates])
    prob = open_deals["crm_probability"].fillna(0).clip(0, 1).to_numpy(float)
    return prob[:, None] * (effective[:, None] <= ends[None, :])


def weighted_pipeline_forecast(open_deals: pd.DataFrame, bookings: pd.DataFrame,
                               targets: pd.DataFrame, as_of: date, currency: str,
                               draws: int = 2000, seed: int = 42) -> pd.DataFrame:
    """The CRM baseline for this and next month and quarter, per pipeline and for all pipelines.

    open_deals: pipeline, amount_reporting, crm_probability, expected_close_date
    bookings:   period, pipeline, won_amount_reporting (pipeline 'all' included)
    targets:    period, pipeline, target_amount_reporting
    Each deal is won independently with its CRM probability; it closes in its expected period.
    """
    grid = PeriodGrid.build(pd.Timestamp(as_of))
    return forecast_table(open_deals, weighted_won_by(open_deals, grid), grid, bookings.copy(),
                          targets.copy(), currency, WEIGHTED_PIPELINE, draws, seed)


def model_won_by(p_win: np.ndarray, close_given_win: np.ndarray) -> np.ndarray:
    """P(won by boundary b) = P(win) x P(won by b | won): the win model sets whether, the
    time-to-close model when."""
    cgw = np.nan_to_num(np.asarray(close_given_win, float), nan=0.0).clip(0, 1)
    cgw = np.maximum.accumulate(cgw, axis=1)
    return np.asarray(p_win, float).clip(0, 1)[:, None] * cgw


def model_forecast(open_deals: pd.DataFrame, close_given_win: np.ndarray, bookings: pd.DataFrame,
                   targets: pd.DataFrame, as_of, currency: str, new: NewPipeline | None = None,
                   draws: int = 2000, seed: int = 42, correlation: float = 0.0,
                   periods: list[Period] | None = None, chunk: int = 512) -> pd.DataFrame:
    """The model forecast: open_deals has pipeline, amount_reporting, p_win (+ segment, owner);
    close_given_win[i, b] = P(won by boundary b | won) for the grid of `as_of` (see
    `ForecastInputs`). New pipeline from `new` (None: none)."""
    grid = PeriodGrid.build(pd.Timestamp(as_of), periods)
    won_by = model_won_by(open_deals["p_win"].to_numpy(float), close_given_win)
    return forecast_table(open_deals, won_by, grid, bookings.copy(), targets.copy(), currency, MODEL,
                          draws, seed, new=new, correlation=correlation, chunk=chunk)


# ---------------------------------------------------------------- inputs from the fitted models

@dataclass
class ForecastInputs:
    """Everything the model forecast needs, scored as of one time."""

    open_deals: pd.DataFrame  # deal_key, pipeline, stage, segment, owner, amount_reporting, p_win, crm_probability
    close_given_win: np.ndarray  # (deals, boundaries)
    new: NewPipeline
    grid: PeriodGrid
    calibration: pd.DataFrame | None = None
    timing: pd.DataFrame | None = None
    arrival: pd.DataFrame | None = None


def score_forecast_inputs(timeline, win_model, ttc_model, as_of, periods: list[Period] | None = None,
                          template_days: int = 365, max_templates: int = 2000,
                          seed: int = 0, calibrate: bool = True, calibrate_timing: bool = True,
                          calibrate_arrival: bool = True) -> ForecastInputs:
    """Score the deals open at `as_of` and the recent new deals with the fitted models.

    timeline: ml.features.prepare(...) with a cut-off at or after `as_of` (nothing later is read).
    win_model: anything with predict_proba (WinModel, or the stage baseline when no model passed
    its gate); ttc_model: TimeToCloseModel. Templates: deals created in the `template_days`
    before `as_of` (all history if fewer than 50 in a pipeline), at most `max_templates` per
    pipeline (seeded), with their features as of their creation. calibrate: correct P(win) and
    the time-to-close clock by `forecast_calibration` (by pipeline and deal size; open and new
    deals separately).
    """
    from ml.features import build_features, open_deal_features

    as_of = pd.Timestamp(as_of)
    grid = PeriodGrid.build(as_of, periods)
    X = open_deal_features(timeline, as_of)
    calibration = timing = None
    examples = pd.DataFrame()
    if calibrate:  # both corrections read the same weekly as-of examples: built once
        from ml.features import examples_from_timeline

        examples = examples_from_timeline(timeline, cap_per_deal=None, max_rows=50_000, seed=seed)
        calibration = forecast_calibration(win_model, ttc_model, timeline, seed=seed, examples=examples)
        if calibrate_timing:
            timing = forecast_timing(ttc_model, timeline, calibration, examples=examples, seed=seed)
    arrival = None
    if calibrate and calibrate_arrival and len(examples):
        def won_by_of(frame, days):
            p, curves = _open_curves(frame, win_model, ttc_model, calibration, timing, int(np.ceil(days.max())) + 2)
            return p[:, None] * curves_at(curves, np.asarray(days, float)[None, :])

        examples = examples.assign(born=examples["as_of"].to_numpy() == timeline.deals.set_index("deal_key")[
            "created_at"].reindex(examples["deal_key"].astype(str)).to_numpy())
        reach = float(np.ceil(grid.days.max()))
        horizons = ARRIVAL_HORIZONS[: int(np.searchsorted(ARRIVAL_HORIZONS, reach)) + 1]
        arrival = forecast_arrival(won_by_of, examples, timeline.cutoff, horizons, seed=seed)
    if len(X):
        pipes = X["pipeline"].astype(str).to_numpy()
        p_win, full = _open_curves(X, win_model, ttc_model, calibration, timing, int(np.ceil(grid.days.max())) + 2)
        cgw = curves_at(apply_arrival(full, arrival, pipes), grid.days[None, :])
    else:
        p_win, cgw = np.zeros(0), np.zeros((0, len(grid.days)))
    open_deals = pd.DataFrame({
        "deal_key": X["deal_key"].to_numpy(), "pipeline": X["pipeline"].astype(str).to_numpy(),
        "stage": X["stage"].to_numpy(), "segment": X["segment"].astype(str).to_numpy(),
        "owner": X["owner"].astype(str).to_numpy(),
        "amount_reporting": X["amount_reporting"].to_numpy(float), "p_win": p_win,
        "crm_probability": X["crm_probability"].to_numpy(float),
    })

    d = timeline.deals
    created = d["created_at"]
    horizon = int(np.ceil(grid.days.max())) + 1
    rates, cvs, fits = creation_rate(created[d["placeable"]], d.loc[d["placeable"], "pipeline"], as_of, horizon)
    rng = np.random.default_rng(seed)
    chosen = []
    born = d["placeable"] & (created <= as_of)
    for p in rates:
        in_p = born & (d["pipeline"] == p)
        recent = np.flatnonzero(in_p & (created > as_of - template_days * DAY))
        if len(recent) < 50:
            recent = np.flatnonzero(in_p)
        if len(recent) > max_templates:
            recent = np.sort(rng.choice(recent, max_templates, replace=False))
        chosen.append(recent)
    idx = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    if len(idx):
        Xt = build_features(timeline, idx, created.to_numpy()[idx])
        pipes, amounts = Xt["pipeline"].astype(str).to_numpy(), Xt["amount_reporting"].to_numpy(float)
        t_win = np.clip(win_model.predict_proba(Xt)[:, 1]
                        * bin_values(calibration, "new", "factor", pipes, amounts), 0.0, 0.999)
        curves = ttc_model.predict_close_given_win(Xt, np.arange(horizon + 1))
        curves = np.maximum.accumulate(np.nan_to_num(curves, nan=0.0).clip(0, 1), axis=1)
        clock = bin_values(calibration, "new", "clock", pipes, amounts)
        curves = curves_at(curves, np.arange(horizon + 1)[None, :] / clock[:, None])
        curves = apply_timing(curves, timing, "new", pipes, amounts)
        templates = pd.DataFrame({
            "pipeline": Xt["pipeline"].astype(str).to_numpy(), "segment": Xt["segment"].astype(str).to_numpy(),
            "owner": Xt["owner"].astype(str).to_numpy(), "amount_reporting": Xt["amount_reporting"].to_numpy(float),
            "p_win": t_win})
        keep = templates["amount_reporting"].notna().to_numpy()
        templates, curves = templates[keep].reset_index(drop=True), curves[keep]
    else:
        templates = pd.DataFrame(columns=["pipeline", "segment", "owner", "amount_reporting", "p_win"])
        curves = np.zeros((0, horizon + 1))
    new = NewPipeline(rates, cvs, templates, curves, fits)
    return ForecastInputs(open_deals, cgw, new, grid, calibration, timing, arrival)


def _open_curves(X: pd.DataFrame, win_model, ttc_model, calibration, timing, n_days: int):
    """Open deals' corrected P(win) and daily P(won by day | won) curves (days 0..n_days-1):
    the win model x its calibration factor; the time-to-close curve on the calibrated clock,
    then the timing ratios."""
    pipes, amounts = X["pipeline"].astype(str).to_numpy(), X["amount_reporting"].to_numpy(float)
    p_win = np.clip(win_model.predict_proba(X)[:, 1]
                    * bin_values(calibration, "open", "factor", pipes, amounts), 0.0, 0.999)
    full = ttc_model.predict_close_given_win(X, np.arange(n_days))
    full = np.maximum.accumulate(np.nan_to_num(full, nan=0.0).clip(0, 1), axis=1)
    clock = bin_values(calibration, "open", "clock", pipes, amounts)
    days = np.arange(full.shape[1], dtype=float)
    return p_win, apply_timing(curves_at(full, days[None, :] / clock[:, None]), timing, "open", pipes, amounts)
