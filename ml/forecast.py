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
  the past winners' money was won).
- 'weighted_pipeline' (the baseline every CRM shows): each open deal expected to close in the
  period counts amount x CRM stage probability; an overdue or undated deal counts in the current
  period (the CRM still says it is about to close); no new pipeline.

Monte Carlo (`simulate_won_by`): per draw, every deal is won or not and, if won, by which
period boundary — one uniform number per (deal, draw) compared with the deal's cumulative
P(won by boundary). Deals are packed eight to a byte and summed through a 256-entry table of
their subset sums, in chunks of deals, so 100k deals x 10k draws never hold more than a chunk.
Probabilities are resolved to 1/65536. Deals can share a common shock (`correlation`, a
one-factor Gaussian copula: a good quarter is good for many deals at once; each deal's own
P(win by t) is unchanged). The deals not yet created are a compound Poisson process per period
bin whose rate has its own uncertainty (gamma-distributed), each a draw from the recent new
deals. Seeded: the same inputs and seed give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from ml.periods import Period, current_and_next

ALL = "all"
MODEL, WEIGHTED_PIPELINE = "model", "weighted_pipeline"
METHODS = (MODEL, WEIGHTED_PIPELINE)
FORECAST_COLUMNS = [
    "period", "period_grain", "pipeline", "segment", "owner", "currency", "target", "booked",
    "expected", "from_open_pipeline", "from_new_pipeline", "p10", "p50", "p90",
    "prob_hit_target", "open_deals", "method",
]
RESOLUTION = 65536  # probabilities are compared with 16-bit uniforms
DAY = pd.Timedelta(days=1)
_SUBSETS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float64)  # 256 x 8
_BIT_WEIGHTS = (1 << np.arange(8)).astype(np.uint8)[None, :, None]


# ---------------------------------------------------------------- periods

def assign_period(expected_close: pd.Series, period: Period, as_of: date) -> np.ndarray:
    """Boolean mask: which open deals are expected to close in `period` (as of `as_of`)."""
    close = pd.to_datetime(expected_close).dt.date
    in_period = close.map(lambda d: d is not None and not pd.isna(d) and period.contains(d))
    if period.contains(as_of):
        overdue = close.map(lambda d: d is None or pd.isna(d) or d < as_of)
        in_period = in_period | overdue
    return in_period.to_numpy(dtype=bool)


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


# ---------------------------------------------------------------- the Monte Carlo engine

def factor_levels(correlation: float, groups: int) -> np.ndarray:
    """Values of the common shock, one per group of draws: the midpoints of `groups` equal
    slices of the standard normal (stratified, so few groups represent the factor evenly)."""
    if correlation <= 0:
        return np.zeros(1)
    return ndtri((np.arange(groups) + 0.5) / groups)


def conditional_probability(p: np.ndarray, correlation: float, z: float) -> np.ndarray:
    """P(event | common factor z) under a one-factor Gaussian copula with the given correlation;
    its average over z ~ N(0, 1) is p again."""
    if correlation <= 0:
        return p
    r = np.sqrt(correlation)
    return ndtr((ndtri(np.clip(p, 0.0, 1.0)) - r * z) / np.sqrt(1.0 - correlation))


def draw_groups(draws: int, groups: int) -> np.ndarray:
    """Start of each group's slice of the draws (contiguous, nearly equal), plus the end."""
    return np.linspace(0, draws, groups + 1).round().astype(int)


def simulate_won_by(won_by: np.ndarray, amounts: np.ndarray, cells: np.ndarray | None = None,
                    n_cells: int | None = None, draws: int = 2000,
                    rng: np.random.Generator | int = 0, correlation: float = 0.0,
                    factor_groups: int = 10, chunk: int = 512) -> np.ndarray:
    """Revenue won by each boundary, per cell and draw: shape (n_cells, n_boundaries, draws).

    won_by: (deals, boundaries) cumulative P(the deal is won by boundary b), non-decreasing in b.
    amounts: what a won deal brings. cells: the cell (e.g. pipeline) of each deal, 0..n_cells-1.
    A deal is won by boundary b in a draw when its uniform number is below won_by[:, b] (so the
    boundaries nest). With `correlation` > 0 the draws are split into `factor_groups` groups,
    each with its own value of the common factor (see `factor_levels`).
    """
    rng = np.random.default_rng(rng)
    won_by = np.atleast_2d(np.asarray(won_by, dtype=float))
    amounts = np.asarray(amounts, dtype=float)
    n, n_b = won_by.shape
    cells = np.zeros(n, dtype=np.int64) if cells is None else np.asarray(cells, dtype=np.int64)
    n_cells = int(cells.max()) + 1 if n_cells is None else int(n_cells)
    out = np.zeros((n_cells, n_b, draws))
    z = factor_levels(correlation, factor_groups)
    bounds = draw_groups(draws, len(z))
    live = (won_by[:, -1] > 0) & (amounts != 0)
    won_by, amounts, cells = won_by[live], amounts[live], cells[live]
    thresholds = np.empty((len(z), len(won_by), n_b), dtype=np.int64)
    for g, level in enumerate(z):
        thresholds[g] = np.rint(conditional_probability(won_by, correlation, level) * RESOLUTION)
    # Deals that are certain either way at every boundary need no random numbers.
    certain = ((thresholds == 0) | (thresholds == RESOLUTION)).all(axis=(0, 2))
    for g in range(len(z)):
        sure = (thresholds[g][certain] == RESOLUTION) * amounts[certain, None]
        np.add.at(out[:, :, bounds[g]:bounds[g + 1]], cells[certain],
                  np.broadcast_to(sure[:, :, None], (len(sure), n_b, bounds[g + 1] - bounds[g])))
    thresholds = np.minimum(thresholds[:, ~certain], RESOLUTION - 1).astype(np.uint16)
    amounts, cells = amounts[~certain], cells[~certain]
    chunk = max(8, chunk - chunk % 8)
    order = np.argsort(cells, kind="stable")
    for cell in np.unique(cells):
        rows = order[np.searchsorted(cells[order], cell):np.searchsorted(cells[order], cell, "right")]
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            _simulate_chunk(out[cell], thresholds[:, part], amounts[part], bounds, rng)
    return out


def _simulate_chunk(out: np.ndarray, thresholds: np.ndarray, amounts: np.ndarray,
                    bounds: np.ndarray, rng: np.random.Generator, block: int = 2048) -> None:
    """Add one chunk of deals (same cell) to out (n_boundaries, draws), a block of draws at a
    time so the working set stays in cache."""
    pad = (-len(amounts)) % 8
    if pad:  # zero-amount, never-won padding to whole bytes
        amounts = np.concatenate([amounts, np.zeros(pad)])
        thresholds = np.concatenate([thresholds, np.zeros((thresholds.shape[0], pad, thresholds.shape[2]),
                                                           dtype=thresholds.dtype)], axis=1)
    c, draws = len(amounts), out.shape[1]
    n_bytes = c // 8
    table = amounts.reshape(n_bytes, 8) @ _SUBSETS.T  # (bytes, 256): subset sums of each byte's deals
    t = thresholds.reshape(thresholds.shape[0], n_bytes, 8, thresholds.shape[2])
    width = min(block, draws)
    hit = np.empty((n_bytes, 8, width), dtype=bool)
    for g in range(len(bounds) - 1):
        for lo in range(bounds[g], bounds[g + 1], width):
            hi = min(lo + width, bounds[g + 1])
            w = hi - lo
            u = rng.bit_generator.random_raw(-(-c * w // 4)).view(np.uint16)[:c * w].reshape(n_bytes, 8, w)
            h = hit[:, :, :w]
            for b in range(out.shape[0]):
                np.less(u, t[g, :, :, b, None], out=h)
                packed = (h.view(np.uint8) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint8)
                total = out[b, lo:hi]
                for j in range(n_bytes):
                    total += table[j].take(packed[j])


def simulate_revenue(amounts: np.ndarray, probabilities: np.ndarray, draws: int,
                     rng: np.random.Generator, chunk: int = 512) -> np.ndarray:
    """Revenue per draw when each deal is won independently with its probability."""
    return simulate_won_by(np.asarray(probabilities, float)[:, None], amounts, draws=draws,
                           rng=rng, chunk=chunk)[0, 0]


# ---------------------------------------------------------------- deals not yet created

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
        target = observed[rows].mean(axis=0)
        errors = [((curves_at(curves[rows], CLOCK_HORIZONS[None, :] / s).mean(axis=0) - target) ** 2).sum()
                  for s in CLOCK_SCALES]
        return float(CLOCK_SCALES[int(np.argmin(errors))])

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
        clock = _bin_values(calibration, kind, "clock", pipes, amounts)
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


def _bin_values(calibration: pd.DataFrame | None, kind: str, column: str, pipelines: np.ndarray,
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


@dataclass
class ForecastInputs:
    """Everything the model forecast needs, scored as of one time."""

    open_deals: pd.DataFrame  # deal_key, pipeline, stage, segment, owner, amount_reporting, p_win, crm_probability
    close_given_win: np.ndarray  # (deals, boundaries)
    new: NewPipeline
    grid: PeriodGrid
    calibration: pd.DataFrame | None = None
    timing: pd.DataFrame | None = None


def score_forecast_inputs(timeline, win_model, ttc_model, as_of, periods: list[Period] | None = None,
                          template_days: int = 365, max_templates: int = 2000,
                          seed: int = 0, calibrate: bool = True, calibrate_timing: bool = True) -> ForecastInputs:
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
    if calibrate:  # both corrections read the same weekly as-of examples: built once
        from ml.features import examples_from_timeline

        examples = examples_from_timeline(timeline, cap_per_deal=None, max_rows=50_000, seed=seed)
        calibration = forecast_calibration(win_model, ttc_model, timeline, seed=seed, examples=examples)
        if calibrate_timing:
            timing = forecast_timing(ttc_model, timeline, calibration, examples=examples, seed=seed)
    if len(X):
        pipes, amounts = X["pipeline"].astype(str).to_numpy(), X["amount_reporting"].to_numpy(float)
        p_win = np.clip(win_model.predict_proba(X)[:, 1]
                        * _bin_values(calibration, "open", "factor", pipes, amounts), 0.0, 0.999)
        full = ttc_model.predict_close_given_win(X, np.arange(int(np.ceil(grid.days.max())) + 2))
        full = np.maximum.accumulate(np.nan_to_num(full, nan=0.0).clip(0, 1), axis=1)
        clock = _bin_values(calibration, "open", "clock", pipes, amounts)
        days = np.arange(full.shape[1], dtype=float)
        full = apply_timing(curves_at(full, days[None, :] / clock[:, None]), timing, "open", pipes, amounts)
        cgw = curves_at(full, grid.days[None, :])
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
                        * _bin_values(calibration, "new", "factor", pipes, amounts), 0.0, 0.999)
        curves = ttc_model.predict_close_given_win(Xt, np.arange(horizon + 1))
        curves = np.maximum.accumulate(np.nan_to_num(curves, nan=0.0).clip(0, 1), axis=1)
        clock = _bin_values(calibration, "new", "clock", pipes, amounts)
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
    return ForecastInputs(open_deals, cgw, new, grid, calibration, timing)
