"""Corrections of the two models before the forecast uses them (ml/forecast.py), per pipeline and
deal size: `forecast_calibration` (P(win) to the money that was won, the time-to-close clock to
the times the winners took) and `forecast_timing` (the curve, horizon by horizon, to when the past
winners' money was won); `forecast_arrival` (out of time: the money the open deals of past
weekly dates won within h days, every open deal counted, against what the corrected models
said); `curves_at`, `apply_timing` and `apply_arrival` read and correct the daily curves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
CLOCK_SCALES = np.exp(np.linspace(np.log(0.2), np.log(10.0), 61))
CLOCK_HORIZONS = np.array([7.0, 14.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0])


def forecast_calibration(win_model, ttc_model, timeline, window_days: int = 365, max_rows: int = 50_000,
                         seed: int = 0, amount_bins: int = 5, pseudo_deals: float = 30.0,
                         bounds: tuple[float, float] = (0.33, 3.0), clock_window: int = 180,
                         max_winners: int = 4000, examples: pd.DataFrame | None = None) -> pd.DataFrame:
    """How the two models' errors move with deal size, per pipeline and amount bin (quantiles of
    the amounts), separately for open deals (every weekly as-of date) and new deals (their state
    at creation), from the as-of examples of the timeline (nothing after its cut-off):

    - factor: won / Σ P(win) over the mature, resolved examples of the year before the maturity
      cut (ml.win_model.maturity). The win model is calibrated in counts; the forecast is in
      money. Its errors correlated with the amount (measured: at creation it hardly told
      Enterprise deals, truly won 18% of the time, from SMB at 30%, so the amount-weighted P(win)
      of new deals came out 25% high while the count was right). Shrunk towards the pipeline's
      factor with `pseudo_deals` expected wins, kept within `bounds`.
    - clock: a time scale for the time-to-close model's P(won within h | won). Proportional
      hazards within a stage cannot slow a whole deal down; big deals move slower through every
      stage (an accelerated-failure-time effect), and the model put 1.6x too many of the open
      Enterprise winners of the 20k-deal company in the current month. The clock s that best
      matches the winners' observed times (examples from `clock_window` days before the cut-off
      backwards, won within `clock_window` days of their as-of date) rescales each curve:
      G'(h) = G(h / s). A bin with fewer than 30 winners takes its pipeline's clock.
    `examples`: the timeline's as-of examples on every weekly date, if already built (else built
    here, at most `max_rows`). Returns pipeline, kind (open/new), amount_from (lower edge; the
    first bin -inf), factor, clock, rows, winners.
    """
    from ml.features import examples_from_timeline
    from ml.win_model import cutoff_of, maturity

    columns = ["pipeline", "kind", "amount_from", "factor", "clock", "rows", "winners"]
    if examples is None:
        examples = examples_from_timeline(timeline, cap_per_deal=None, max_rows=max_rows, seed=seed)
    examples = examples.copy()
    if examples.empty:
        return pd.DataFrame(columns=columns)
    cutoff = cutoff_of(examples)
    created = timeline.deals.set_index("deal_key")["created_at"]
    examples["born"] = examples["as_of"].to_numpy() == created.reindex(examples["deal_key"].astype(str)).to_numpy()
    resolved = examples[examples["event"].astype(str) != "censored"]
    end = cutoff - pd.Timedelta(days=maturity(examples))
    level = resolved[(resolved["as_of"] <= end) & (resolved["as_of"] > end - pd.Timedelta(days=window_days))]
    p = win_model.predict_proba(level)[:, 1] if len(level) else np.zeros(0)
    y = level["won"].to_numpy(float)

    clock_end = cutoff - pd.Timedelta(days=clock_window)
    winners = examples[(examples["as_of"] <= clock_end)
                       & (examples["as_of"] > clock_end - pd.Timedelta(days=window_days))
                       & (examples["event"].astype(str) == "won") & (examples["duration_days"] <= clock_window)]
    if len(winners) > max_winners:
        winners = winners.sample(max_winners, random_state=seed)
    if len(winners):
        curves = ttc_model.predict_close_given_win(winners, np.arange(clock_window + 1))
        curves = np.nan_to_num(curves, nan=0.0) / np.maximum(np.nan_to_num(curves[:, -1:], nan=0.0), 1e-9)
        observed = winners["duration_days"].to_numpy(float)[:, None] <= CLOCK_HORIZONS[None, :]

    def ratio(rows, prior):
        expected, got = float(p[rows].sum()), float(y[rows].sum())
        return float(np.clip((got + prior * pseudo_deals) / (expected + pseudo_deals), *bounds))

    def clock(rows, fallback=1.0):
        if rows.sum() < 30:
            return fallback
        return clock_scale(curves[rows], observed[rows])

    out = []
    all_amounts = examples["amount_reporting"].fillna(0).to_numpy(float)
    for pipeline in sorted(examples["pipeline"].astype(str).unique()):
        in_p = examples["pipeline"].astype(str).to_numpy() == pipeline
        quantiles = np.quantile(all_amounts[in_p], np.linspace(0, 1, amount_bins + 1)[1:-1])
        edges = np.concatenate([[-np.inf], np.unique(quantiles)])

        def bins(frame):
            return (frame["pipeline"].astype(str).to_numpy() == pipeline,
                    np.searchsorted(edges, frame["amount_reporting"].fillna(0).to_numpy(float), side="right") - 1,
                    frame["born"].to_numpy())

        lp, lb, lborn = bins(level)
        wp, wb, wborn = bins(winners) if len(winners) else (np.zeros(0, bool),) * 3
        for kind in ("open", "new"):
            l_kind = lp & (lborn if kind == "new" else True)
            w_kind = wp & (wborn if kind == "new" else True)
            pipe_factor = ratio(l_kind, 1.0) if len(level) else 1.0
            pipe_clock = clock(w_kind) if len(winners) else 1.0
            for k, lower in enumerate(edges):
                l_rows, w_rows = l_kind & (lb == k), w_kind & (wb == k)
                out.append({"pipeline": pipeline, "kind": kind, "amount_from": float(lower),
                            "factor": ratio(l_rows, pipe_factor) if len(level) else 1.0,
                            "clock": clock(w_rows, pipe_clock) if len(winners) else 1.0,
                            "rows": int(l_rows.sum()), "winners": int(w_rows.sum())})
    return pd.DataFrame(out, columns=columns)


def clock_scale(curves: np.ndarray, observed: np.ndarray) -> float:
    """The scale s of CLOCK_SCALES whose rescaled curves G(h / s), averaged over the winners,
    best match the share of them observed won within each h of CLOCK_HORIZONS (least squares).
    curves: (winners, days) normalised daily curves; observed: (winners, horizons) booleans.
    Reading a curve is linear in its values, so the winners' mean curve is read once at every
    (scale, horizon) instead of every winner's curve 61 times (8 s of the 100k backtest)."""
    target = observed.mean(axis=0)
    days = (CLOCK_HORIZONS[None, :] / CLOCK_SCALES[:, None]).reshape(1, -1)
    fitted = curves_at(curves.mean(axis=0)[None, :], days).reshape(len(CLOCK_SCALES), len(CLOCK_HORIZONS))
    errors = ((fitted - target[None, :]) ** 2).sum(axis=1)
    return float(CLOCK_SCALES[int(np.argmin(errors))])


TIMING_HORIZONS = np.array([7.0, 14.0, 21.0, 30.0, 45.0, 60.0, 90.0, 120.0, 150.0, 180.0])


def forecast_timing(ttc_model, timeline, calibration: pd.DataFrame | None, examples: pd.DataFrame | None = None,
                    window_days: int = 365, clock_window: int = 180, pseudo_winners: float = 30.0,
                    max_winners: int = 4000, bounds: tuple[float, float] = (0.2, 5.0), max_rows: int = 50_000,
                    seed: int = 0) -> pd.DataFrame:
    """When the money is won, against the time-to-close model's curve after the clock of
    `forecast_calibration`: per pipeline, kind (open / new), amount bin and horizon h of
    TIMING_HORIZONS, ratio = the winners' money won within h / the money the curves put there,
    both as a share of the money won within `clock_window` days (so the level of winning stays
    with P(win), and the ratio at `clock_window` is 1).

    Why: the clock is one time scale per bin, fitted to the winners' counts. Money is what is
    forecast, and inside a bin it sits with the biggest, slowest deals. And for a deal scored at
    its creation (first stage, no age) the proportional-hazards model can only make a slow deal's
    hazard lower, not later: normalised to a win its curve is nearly the same for a $5k deal as
    for a $500k one, while the simulated Enterprise deals win almost nothing in their first three
    weeks (every stage is slower). Measured on the 5k-deal seed-11 company: the money of new deals
    won within 30 days of creation came out 1.6-1.8x the share the past year's deals showed, and
    the money of open winners won within 30 days 1.1x.

    Winners: open — the as-of examples (every weekly date; `examples`, else built like
    `forecast_calibration`'s) dated in the `window_days` before `clock_window` days before the
    cut-off and won within `clock_window` days of their date; new — every deal created in that
    window and won within `clock_window` days of its creation, scored as it was at creation. At
    most `max_winners` per kind (seeded). A bin's ratio is shrunk towards its pipeline's (itself
    towards 1) with `pseudo_winners`, and kept within `bounds`.
    Returns pipeline, kind, amount_from (the calibration's bins), horizon, ratio, winners.
    """
    from ml.features import build_features, examples_from_timeline

    columns = ["pipeline", "kind", "amount_from", "horizon", "ratio", "winners"]
    end = timeline.cutoff - pd.Timedelta(days=clock_window)
    begin = end - pd.Timedelta(days=window_days)
    rng = np.random.default_rng(seed)
    d = timeline.deals
    created = d["created_at"]
    lived = ((d["close_at"] - created) / DAY).to_numpy(float)
    born = np.flatnonzero((d["placeable"] & (created <= end) & (created > begin) & d["close_known"]
                           & (d["outcome"] == "won")).to_numpy() & (lived <= clock_window))
    if len(born) > max_winners:
        born = np.sort(rng.choice(born, max_winners, replace=False))
    samples = {"new": (build_features(timeline, born, created.to_numpy()[born]), lived[born]) if len(born) else None}
    if examples is None:
        examples = examples_from_timeline(timeline, cap_per_deal=None, max_rows=max_rows, seed=seed)
    won = examples[(examples["as_of"] <= end) & (examples["as_of"] > begin)
                   & (examples["event"].astype(str) == "won") & (examples["duration_days"] <= clock_window)]
    if len(won) > max_winners:
        won = won.iloc[np.sort(rng.choice(len(won), max_winners, replace=False))]
    samples["open"] = (won.reset_index(drop=True), won["duration_days"].to_numpy(float)) if len(won) else None

    days = np.arange(clock_window + 1, dtype=float)
    horizons = TIMING_HORIZONS[TIMING_HORIZONS <= clock_window]
    out = []
    for kind in ("open", "new"):
        if samples[kind] is None:
            continue
        X, duration = samples[kind]
        pipes = X["pipeline"].astype(str).to_numpy()
        amounts = np.nan_to_num(X["amount_reporting"].to_numpy(float), nan=0.0)
        curves = ttc_model.predict_close_given_win(X, days)
        curves = np.maximum.accumulate(np.nan_to_num(curves, nan=0.0).clip(0, 1), axis=1)
        clock = bin_values(calibration, kind, "clock", pipes, amounts)
        curves = curves_at(curves, days[None, :] / clock[:, None])
        expected = curves_at(curves, horizons[None, :]) / np.maximum(curves[:, -1:], 1e-9)
        observed = (duration[:, None] <= horizons[None, :]).astype(float)

        def ratio(rows, prior):
            n = int(rows.sum())
            if n == 0:
                return np.ones(len(horizons)) * prior, 0
            w = amounts[rows] / max(amounts[rows].mean(), 1e-9)  # money weights, mean 1
            got, want = w @ observed[rows], np.maximum(w @ expected[rows], 1e-9)
            return np.clip((n * got / want + pseudo_winners * prior) / (n + pseudo_winners), *bounds), n

        bins = (calibration[calibration["kind"] == kind] if calibration is not None and len(calibration)
                else pd.DataFrame(columns=["pipeline", "amount_from"]))
        for pipeline in sorted(set(pipes)):
            in_p = pipes == pipeline
            pipe_ratio, _ = ratio(in_p, 1.0)
            edges = np.sort(bins.loc[bins["pipeline"] == pipeline, "amount_from"].to_numpy(float))
            edges = edges if len(edges) else np.array([-np.inf])
            which = np.maximum(np.searchsorted(edges, amounts, side="right") - 1, 0)
            for k, lower in enumerate(edges):
                r, n = ratio(in_p & (which == k), pipe_ratio)
                out += [{"pipeline": pipeline, "kind": kind, "amount_from": float(lower), "horizon": float(h),
                         "ratio": float(v), "winners": n} for h, v in zip(horizons, r)]
    return pd.DataFrame(out, columns=columns)


def apply_timing(curves: np.ndarray, timing: pd.DataFrame | None, kind: str, pipelines: np.ndarray,
                 amounts: np.ndarray) -> np.ndarray:
    """Daily curves (day 0, 1, ...) times their bin's timing ratio (`forecast_timing`), linear
    between its horizons, the first horizon's ratio before it and 1 from the last on; kept
    non-decreasing and within [0, 1]."""
    if timing is None or timing.empty or not len(curves):
        return curves
    days = np.arange(curves.shape[1], dtype=float)
    factor = np.ones_like(curves)
    amounts = np.nan_to_num(np.asarray(amounts, float), nan=0.0)
    for pipeline, rows_t in timing[timing["kind"] == kind].groupby("pipeline"):
        rows = np.flatnonzero(pipelines == pipeline)
        if not len(rows):
            continue
        table = rows_t.pivot(index="amount_from", columns="horizon", values="ratio").sort_index()
        edges, horizons = table.index.to_numpy(float), table.columns.to_numpy(float)
        which = np.maximum(np.searchsorted(edges, amounts[rows], side="right") - 1, 0)
        for k in range(len(edges)):
            mine = rows[which == k]
            if len(mine):
                ratios = table.iloc[k].to_numpy(float)
                knots = np.interp(days, np.concatenate([[0.0], horizons]),
                                  np.concatenate([[ratios[0]], ratios[:-1], [1.0]]), right=1.0)
                factor[mine] = knots[None, :]
    return np.maximum.accumulate(np.clip(curves * factor, 0.0, 1.0), axis=1)

def curves_at(curves: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Daily curves (one per row) read at fractional days: `days` is 2-D, broadcastable to
    (rows, k) — e.g. days[None, :] for the same days in every row. Clipped to the grid."""
    days = np.broadcast_to(np.asarray(days, dtype=float), (len(curves), np.shape(days)[-1]))
    last = curves.shape[1] - 1
    d = np.clip(days, 0.0, last)
    lo = np.floor(d).astype(int)
    hi = np.minimum(lo + 1, last)
    w = d - lo
    rows = np.arange(len(curves))[:, None]
    return curves[rows, lo] * (1 - w) + curves[rows, hi] * w


def bin_values(calibration: pd.DataFrame | None, kind: str, column: str, pipelines: np.ndarray,
                amounts: np.ndarray) -> np.ndarray:
    """The calibration's `column` for each deal's pipeline and amount bin (1 where none applies)."""
    out = np.ones(len(pipelines))
    if calibration is None or calibration.empty:
        return out
    cal = calibration[calibration["kind"] == kind]
    amounts = np.nan_to_num(np.asarray(amounts, float), nan=0.0)
    for pipeline, bins in cal.groupby("pipeline"):
        rows = pipelines == pipeline
        edges = bins["amount_from"].to_numpy(float)
        which = np.maximum(np.searchsorted(edges, amounts[rows], side="right") - 1, 0)
        out[rows] = bins[column].to_numpy(float)[which]
    return out


ARRIVAL_HORIZONS = np.array([7.0, 14.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 270.0, 365.0])


def forecast_arrival(won_by_of, examples: pd.DataFrame, cutoff, horizons=ARRIVAL_HORIZONS,
                     window_days: int = 365, pseudo_wins: float = 10.0, min_dates: int = 4,
                     bounds: tuple[float, float] = (0.1, 2.0), max_rows: int = 20_000,
                     seed: int = 0) -> pd.DataFrame:
    """Out-of-time check of the open pipeline's arrival: at the past weekly as-of dates with at
    least h days of follow-up before the cut-off (the `window_days` of them before cut-off − h),
    the money the corrected models said the deals open then would win within h days,
    Σ amount × P(won within h), against the money they did win within h days — counting EVERY
    deal open on that date (still open at the cut-off, or lost: 0).

    Why: `forecast_calibration` corrects P(win) on the *resolved* examples only and the timing
    (clock, `forecast_timing`) is normalised to a win and fitted on winners only. Where many open
    deals are zombies that never resolve (a young org: half its pipeline weeks or months in one
    stage), both are blind to them: P(win) is the stage's win rate among the deals that did
    resolve, and every eventual winner is said to close within months. The product then puts the
    open pipeline's money far too early (measured on a real 512-deal Salesforce org: the month
    ahead's P50 was 3-4.7x what was booked). This ratio is measured on what matters, money won
    within h of an as-of date, whatever the reason for the gap.

    won_by_of(examples, days) -> (rows, len(days)) P(won by each day) with every other
    correction applied (as the forecast would have said). examples: the timeline's as-of
    examples (ml.features.examples_from_timeline; the rows at a deal's creation are left out —
    those deals were not open on a weekly date), at most `max_rows` (seeded).
    Per horizon, the overall ratio (all pipelines) is shrunk towards 1 and each pipeline's
    towards the overall one with `pseudo_wins` expected wins' worth of money, kept within
    `bounds`. A horizon seen on fewer than `min_dates` as-of dates takes the ratio of the horizon
    before it (1 for the first). Returns pipeline ('all' included), horizon, ratio, expected,
    won, dates.
    """
    columns = ["pipeline", "horizon", "ratio", "expected", "won", "dates"]
    if examples is None or examples.empty:
        return pd.DataFrame(columns=columns)
    cutoff = pd.Timestamp(cutoff)
    horizons = np.asarray(horizons, float)
    first = cutoff - pd.Timedelta(days=float(horizons.min())) - pd.Timedelta(days=window_days)
    ex = examples[(examples["as_of"] <= cutoff - pd.Timedelta(days=float(horizons.min())))
                  & (examples["as_of"] > first)]
    if "born" in ex:
        ex = ex[~ex["born"].to_numpy(bool)]
    if len(ex) > max_rows:
        ex = ex.sample(max_rows, random_state=seed)
    if ex.empty:
        return pd.DataFrame(columns=columns)
    ex = ex.reset_index(drop=True)
    won_by = np.nan_to_num(np.asarray(won_by_of(ex, horizons), float), nan=0.0).clip(0, 1)
    amounts = np.nan_to_num(ex["amount_reporting"].to_numpy(float), nan=0.0)
    won = (ex["event"].astype(str).to_numpy() == "won")[:, None] & (
        ex["duration_days"].to_numpy(float)[:, None] <= horizons[None, :])
    pipes = ex["pipeline"].astype(str).to_numpy()
    as_of = ex["as_of"].to_numpy()
    out, previous = [], {}
    for j, h in enumerate(horizons):
        seen = (as_of <= np.datetime64(cutoff - pd.Timedelta(days=float(h)), "ns")) & (
            as_of > np.datetime64(cutoff - pd.Timedelta(days=float(h) + window_days), "ns"))

        def ratio(rows, prior, key):
            dates = len(np.unique(as_of[rows]))
            expected, got = float(amounts[rows] @ won_by[rows, j]), float(amounts[rows] @ won[rows, j])
            count = float(won_by[rows, j].sum())
            if dates < min_dates or count <= 0:
                return previous.get(key, prior), expected, got, dates
            pseudo = pseudo_wins * expected / count  # the money of `pseudo_wins` expected wins
            r = float(np.clip((got + prior * pseudo) / (expected + pseudo), *bounds))
            return r, expected, got, dates

        overall = ratio(seen, 1.0, "all")
        rows_h = [("all", *overall)]
        for pipeline in sorted(set(pipes)):
            rows_h.append((pipeline, *ratio(seen & (pipes == pipeline), overall[0], pipeline)))
        for pipeline, r, expected, got, dates in rows_h:
            previous[pipeline] = r
            out.append({"pipeline": pipeline, "horizon": float(h), "ratio": r, "expected": expected,
                        "won": got, "dates": dates})
    return pd.DataFrame(out, columns=columns)


def apply_arrival(curves: np.ndarray, arrival: pd.DataFrame | None, pipelines: np.ndarray) -> np.ndarray:
    """Daily P(won by day | won) curves (day 0, 1, ...) times their pipeline's arrival ratio
    (`forecast_arrival`; 'all' for a pipeline it has not seen), linear between its horizons, the
    first horizon's ratio before it and the last one's after; kept non-decreasing and within
    [0, 1] (so the correction can slow the money down or cut it, not raise it above P(win))."""
    if arrival is None or arrival.empty or not len(curves):
        return curves
    days = np.arange(curves.shape[1], dtype=float)
    factors = {}
    for pipeline, rows in arrival.groupby("pipeline"):
        rows = rows.sort_values("horizon")
        factors[pipeline] = np.interp(days, rows["horizon"].to_numpy(float), rows["ratio"].to_numpy(float))
    overall = factors.get("all", np.ones(len(days)))
    factor = np.stack([factors.get(p, overall) for p in pipelines]) if len(pipelines) else np.ones_like(curves)
    return np.maximum.accumulate(np.clip(curves * factor, 0.0, 1.0), axis=1)
