"""Deals not created yet (ml/forecast.py's new pipeline): the recent creation rate per pipeline
(a Poisson regression on daily creations with trend, month-of-year and weekday effects) x what
recent new deals looked like at creation (their amount, P(win) and time-to-close curve). In the
Monte Carlo they are a compound Poisson process per period bin whose rate has its own uncertainty
(gamma-distributed), each a draw from the recent new deals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml.forecast_calibration import curves_at
from ml.montecarlo import conditional_probability, draw_groups, factor_levels

DAY = pd.Timedelta(days=1)


@dataclass
class NewPipeline:
    """What the deals not yet created will bring, per pipeline.

    daily_rate[pipeline]: expected deals created on each day after the as-of time (day d covers
    as_of + d ... as_of + d + 1). rate_cv[pipeline]: coefficient of variation of that rate
    (overdispersion of past months around the fit, plus the uncertainty of its level).
    templates: recently created deals as they were at creation — pipeline, segment, owner,
    amount_reporting, p_win; close_given_win[j, h] = P(won within h days of creation | won).
    """

    daily_rate: dict
    rate_cv: dict
    templates: pd.DataFrame
    close_given_win: np.ndarray
    fit: dict = field(default_factory=dict)

    def expected_created(self, days: float) -> dict:
        """Expected deals created per pipeline from the as-of time to `days` after it."""
        out = {}
        for p, rate in self.daily_rate.items():
            whole = int(np.floor(days))
            out[p] = float(rate[:whole].sum() + (days - whole) * (rate[whole] if whole < len(rate) else 0))
        return out


def _poisson_ridge(X: np.ndarray, y: np.ndarray, penalty: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Poisson regression (log link) by Newton's method with a ridge penalty per coefficient."""
    beta = np.zeros(X.shape[1])
    beta[0] = np.log(max(y.mean(), 1e-3))
    P = np.diag(penalty)
    for _ in range(iterations):
        mu = np.exp(np.clip(X @ beta, -30, 30))
        grad = X.T @ (y - mu) - P @ beta
        hess = (X * mu[:, None]).T @ X + P
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def _calendar_design(midpoints: pd.DatetimeIndex, as_of: pd.Timestamp, trend: bool,
                     months: bool) -> np.ndarray:
    cols = [np.ones(len(midpoints))]
    if trend:
        cols.append(((midpoints - as_of) / DAY).to_numpy(float) / 365.25)
    if months:
        cols += [(midpoints.month == m).astype(float) for m in range(1, 13)]
    cols += [(midpoints.weekday == w).astype(float) for w in range(7)]
    return np.column_stack(cols)


def creation_rate(created_at: pd.Series, pipeline: pd.Series, as_of, horizon_days: int,
                  history_days: int = 1095, seasonal_penalty: float = 2.0,
                  max_growth_per_year: float = 1.0) -> tuple[dict, dict, dict]:
    """Expected new deals per day for the `horizon_days` after `as_of`, per pipeline.

    A Poisson regression of daily creations over (at most) the last `history_days`: log rate =
    level + trend + month of year + weekday; month effects need 400 days of history, a trend 90.
    Seasonal effects are shrunk towards none (ridge `seasonal_penalty`); the trend is capped at
    ±`max_growth_per_year` (log). Returns (daily_rate, rate_cv, fit summary) dicts by pipeline.
    """
    as_of = pd.Timestamp(as_of)
    created = pd.to_datetime(created_at)
    rates, cvs, fits = {}, {}, {}
    future_mid = as_of + (np.arange(horizon_days) + 0.5) * DAY
    for p in sorted(pd.Series(pipeline).dropna().astype(str).unique()):
        times = created[(pipeline.astype(str) == p).to_numpy() & (created <= as_of).to_numpy()]
        if times.empty:
            rates[p], cvs[p] = np.zeros(horizon_days), 0.0
            continue
        first = max(times.min(), as_of - history_days * DAY)
        n_days = max(int(np.floor((as_of - first) / DAY)), 1)
        age = ((as_of - times) / DAY).to_numpy(float)
        counts = np.bincount(np.floor(age[age < n_days]).astype(int), minlength=n_days)[::-1].astype(float)
        mids = as_of - (np.arange(n_days)[::-1] + 0.5) * DAY
        trend, months = n_days >= 90, n_days >= 400
        X = _calendar_design(pd.DatetimeIndex(mids), as_of, trend, months)
        penalty = np.full(X.shape[1], seasonal_penalty)
        penalty[0] = 0.0
        if trend:
            penalty[1] = 1e-3
        beta = _poisson_ridge(X, counts, penalty)
        if trend:
            beta[1] = np.clip(beta[1], -max_growth_per_year, max_growth_per_year)
        fitted = np.exp(X @ beta)
        rate = np.exp(_calendar_design(pd.DatetimeIndex(future_mid), as_of, trend, months) @ beta)
        # Overdispersion over ~monthly blocks: Var = mu + cv^2 mu^2, plus the level's uncertainty.
        block = np.arange(n_days)[::-1] // 30
        obs = np.bincount(block, weights=counts)
        exp_ = np.bincount(block, weights=fitted)
        full = np.bincount(block) == 30
        excess = ((obs - exp_) ** 2 - exp_)[full] / np.maximum(exp_[full], 1e-9) ** 2
        cv2 = max(float(excess.mean()) if len(excess) >= 3 else 0.0, 0.0)
        cv2 += 1.0 / max(counts[-90:].sum(), 1.0)
        rates[p], cvs[p] = rate, float(np.sqrt(min(cv2, 0.25)))
        fits[p] = {"days": n_days, "created_last_28d": float(counts[-28:].sum()),
                   "expected_last_28d": float(fitted[-28:].sum()),
                   "growth_per_year": float(beta[1]) if trend else 0.0,
                   "next_28d": float(rate[:28].sum())}
    return rates, cvs, fits


def new_pipeline_won_by(new: NewPipeline, days: np.ndarray) -> np.ndarray:
    """Expected wins by each boundary from deals not yet created, per template (unit win
    probability): W[j, b] = Σ_d rate(d) · P(won within days[b] − d − ½ | won) / n_templates(pipeline).
    Multiply by p_win and amount for money."""
    t = new.templates
    out = np.zeros((len(t), len(days)))
    for p, rate in new.daily_rate.items():
        rows = np.flatnonzero(t["pipeline"].astype(str).to_numpy() == p)
        if not len(rows):
            continue
        curves = new.close_given_win[rows]
        for b, horizon in enumerate(days):
            n_d = min(int(np.ceil(horizon)), len(rate))
            lags = horizon - np.arange(n_d) - 0.5
            out[rows, b] = curves_at(curves, lags[None, :]) @ rate[:n_d] / len(rows)
    return out


def simulate_new_pipeline(new: NewPipeline, days: np.ndarray, cells: np.ndarray, n_cells: int,
                          draws: int, rng: np.random.Generator, correlation: float = 0.0,
                          factor_groups: int = 10) -> np.ndarray:
    """Revenue won by each boundary from deals not yet created: (n_cells, n_boundaries, draws).

    Per pipeline and period bin the count of new deals won is Poisson with the expected count
    times a per-draw rate multiplier (gamma, mean 1, the pipeline's rate_cv); each is a draw from
    the templates weighted by their chance to be won in that bin. With a correlation the
    templates' P(win) moves with the same common factor as the open deals'.
    """
    t = new.templates
    out = np.zeros((n_cells, len(days), draws))
    if t.empty:
        return out
    base = new_pipeline_won_by(new, days)
    per_bin = np.diff(base, axis=1, prepend=0.0).clip(min=0)
    amounts = t["amount_reporting"].to_numpy(float)
    p_win = t["p_win"].to_numpy(float)
    pipes = t["pipeline"].astype(str).to_numpy()
    z = factor_levels(correlation, factor_groups)
    bounds = draw_groups(draws, len(z))
    flat, money = [], []
    for p in new.daily_rate:
        rows = np.flatnonzero(pipes == p)
        if not len(rows):
            continue
        cv = new.rate_cv.get(p, 0.0)
        multiplier = (rng.gamma(1.0 / cv ** 2, cv ** 2, draws) if cv > 0 else np.ones(draws))
        for g, level in enumerate(z):
            cols = np.arange(bounds[g], bounds[g + 1])
            p_g = conditional_probability(p_win[rows], correlation, level)
            for b in range(len(days)):
                weight = p_g * per_bin[rows, b]
                total = weight.sum()
                if total <= 0:
                    continue
                if total <= len(rows) / 4:  # few wins per draw: draw each one
                    count = rng.poisson(multiplier[cols] * total)
                    picks = np.searchsorted(np.cumsum(weight) / total, rng.random(count.sum()), side="right")
                    picks = rows[np.minimum(picks, len(rows) - 1)]
                    flat.append((cells[picks] * len(days) + b) * draws + np.repeat(cols, count))
                    money.append(amounts[picks])
                else:  # many: how often each template is won (Poisson thinning), per draw
                    count = rng.poisson(multiplier[cols, None] * weight[None, :])
                    for cell in np.unique(cells[rows]):
                        mine = cells[rows] == cell
                        out[cell, b, cols] += count[:, mine] @ amounts[rows[mine]]
    if flat:
        out += np.bincount(np.concatenate(flat), weights=np.concatenate(money),
                           minlength=out.size).reshape(out.shape)
    return np.cumsum(out, axis=1)
