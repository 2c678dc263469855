"""Revenue forecast per period and pipeline.

The weighted-pipeline method is the baseline every sales team already has: each open deal
expected to close in the period counts amount × CRM stage probability. Its interval comes from a
Monte Carlo over the deals (each won independently with its CRM probability), so even the
baseline is a forecast with an interval, not a point.

Deal assignment to a period: a deal counts in the period holding its expected close date; a deal
whose expected close date has already passed (or is missing) counts in the current period,
because the CRM still says it is about to close.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from ml.periods import Period, current_and_next

ALL = "all"
FORECAST_COLUMNS = [
    "period", "period_grain", "pipeline", "currency", "target", "booked", "expected",
    "p10", "p50", "p90", "prob_hit_target", "open_deals", "method",
]


def assign_period(expected_close: pd.Series, period: Period, as_of: date) -> np.ndarray:
    """Boolean mask: which open deals are expected to close in `period` (as of `as_of`)."""
    close = pd.to_datetime(expected_close).dt.date
    in_period = close.map(lambda d: d is not None and not pd.isna(d) and period.contains(d))
    if period.contains(as_of):
        overdue = close.map(lambda d: d is None or pd.isna(d) or d < as_of)
        in_period = in_period | overdue
    return in_period.to_numpy(dtype=bool)


def simulate_revenue(amounts: np.ndarray, probabilities: np.ndarray, draws: int,
                     rng: np.random.Generator, chunk: int = 20_000) -> np.ndarray:
    """Revenue per draw when each deal is won independently with its probability.

    Deals are processed in chunks so 100k deals × 10k draws never holds the full matrix.
    """
    total = np.zeros(draws)
    for start in range(0, len(amounts), chunk):
        a = amounts[start:start + chunk]
        p = probabilities[start:start + chunk]
        won = rng.random((draws, len(a))) < p
        total += won @ a
    return total


def weighted_pipeline_forecast(open_deals: pd.DataFrame, bookings: pd.DataFrame,
                               targets: pd.DataFrame, as_of: date, currency: str,
                               draws: int = 2000, seed: int = 42) -> pd.DataFrame:
    """Forecast for this and next month and quarter, per pipeline and for all pipelines.

    open_deals: pipeline, amount_reporting, crm_probability, expected_close_date
    bookings:   period, pipeline, won_amount_reporting (pipeline 'all' included)
    targets:    period, pipeline, target_amount_reporting
    """
    rng = np.random.default_rng(seed)
    amounts = open_deals["amount_reporting"].fillna(0).to_numpy(dtype=float)
    probs = open_deals["crm_probability"].fillna(0).clip(0, 1).to_numpy(dtype=float)
    pipelines = sorted(open_deals["pipeline"].dropna().unique().tolist()
                       + [p for p in bookings["pipeline"].unique() if p != ALL])
    pipelines = sorted(set(pipelines))
    booked = bookings.set_index(["period", "pipeline"])["won_amount_reporting"]
    target = targets.set_index(["period", "pipeline"])["target_amount_reporting"]
    rows = []
    for period in current_and_next(as_of):
        in_period = assign_period(open_deals["expected_close_date"], period, as_of)
        all_draws = np.zeros(draws)
        for pipeline in pipelines + [ALL]:
            if pipeline == ALL:
                mask = in_period
                draws_open = all_draws
            else:
                mask = in_period & (open_deals["pipeline"] == pipeline).to_numpy()
                draws_open = simulate_revenue(amounts[mask], probs[mask], draws, rng)
                all_draws = all_draws + draws_open
            booked_amount = float(booked.get((period.label, pipeline), 0.0))
            target_amount = target.get((period.label, pipeline))
            revenue = booked_amount + draws_open
            rows.append({
                "period": period.label,
                "period_grain": period.grain,
                "pipeline": pipeline,
                "currency": currency,
                "target": None if target_amount is None else float(target_amount),
                "booked": booked_amount,
                "expected": booked_amount + float(amounts[mask] @ probs[mask]),
                "p10": float(np.percentile(revenue, 10)),
                "p50": float(np.percentile(revenue, 50)),
                "p90": float(np.percentile(revenue, 90)),
                "prob_hit_target": None if target_amount is None
                else float(np.mean(revenue >= float(target_amount))),
                "open_deals": int(mask.sum()),
                "method": "weighted_pipeline",
            })
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)
