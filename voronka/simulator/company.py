"""Simulate a demo company: deals, their stage history, stages, targets, FX and marketing spend.

A plain, seeded, deterministic library (no Dagster, no clock, no I/O): the same
(n_deals, seed, end_date, years) gives the same frames. Everything is vectorised with numpy; the
only Python loops run over pipelines, stages, push rounds and FX days, never over deals.

The generating process (docs/simulator.md has the long form):
1. Each deal's pipeline is drawn with the pipeline shares; its creation day from a daily intensity
   with growth, weekday and yearly seasonality (holidays); its time of day around working hours.
2. Owner (among those employed that day), lead source, segment, region and product are drawn;
   a share of new leads is never answered; an answered deal wins with
   sigmoid(base + owner skill + source effect + segment effect + noise).
   So p_win_true = (1 - unanswered_share) * sigmoid(...), and will_win ~ Bernoulli(p_win_true).
3. The path: stage 1 at created_at, then the later open stages in order (some skipped) up to the
   last open stage (won) or the stage where it is lost (earlier stages more often), then the
   terminal stage. A few deals go back one stage and forward again; a few are lost, reopened and
   closed later. Stays are lognormal per stage times a per-deal pace.
4. Everything after end_date 23:59:59 is cut: such deals are open in their last stage entered.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from voronka.simulator.spec import DEMO_COMPANY, TITLE_PARTS, CompanySpec, PipelineSpec

SOURCE_SYSTEM = "demo"
DEFAULT_END_DATE = date(2026, 6, 30)
DAY = 86_400  # seconds
FIRST_NATIVE_ID = 1_000_001

DEALS_COLUMNS = [
    "source_system", "native_id", "pipeline", "title", "owner", "lead_source", "segment", "region",
    "product", "amount", "currency", "created_at", "expected_close_date", "closed_at", "outcome",
    "lost_reason", "current_stage", "exported_at",
]
STAGE_EVENTS_COLUMNS = ["source_system", "native_id", "pipeline", "stage", "entered_at", "origin"]
PIPELINE_STAGES_COLUMNS = ["pipeline", "stage", "stage_order", "kind", "crm_probability"]
TARGETS_COLUMNS = ["period", "scope_pipeline", "scope_owner", "scope_segment", "target_amount", "currency"]
FX_RATES_COLUMNS = ["rate_date", "currency", "quote_currency", "rate"]
MARKETING_SPEND_COLUMNS = ["month", "lead_source", "amount", "currency"]

# Event kinds inside the simulator (not exported; every exported event has origin 'history').
_VISIT, _BACK, _INTERIM_LOST, _TERMINAL = 0, 1, 2, 3
# Deal classes drawn at creation.
_UNANSWERED, _WIN, _LOSE = 0, 1, 2


@dataclass
class SimulatedCompany:
    """The simulated company. Timestamps are naive UTC datetime64; dates are datetime64 at midnight;
    a missing value is NaT / None. Frames hold exactly the canonical CSV columns in order."""

    deals: pd.DataFrame
    stage_events: pd.DataFrame
    pipeline_stages: pd.DataFrame
    targets: pd.DataFrame
    fx_rates: pd.DataFrame
    marketing_spend: pd.DataFrame
    truth: pd.DataFrame
    params: dict
    end_date: date


def simulate_company(n_deals: int = 5000, seed: int = 42, end_date: date = DEFAULT_END_DATE,
                     years: float = 3.0, spec: CompanySpec = DEMO_COMPANY) -> SimulatedCompany:
    """Simulate `n_deals` deals created over the `years` before `end_date` (inclusive)."""
    if isinstance(end_date, datetime):
        end_date = end_date.date()
    if n_deals < 1:
        raise ValueError(f"n_deals must be at least 1, got {n_deals}")
    if years <= 0:
        raise ValueError(f"years must be positive, got {years}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")

    cal = _Calendar(end_date, years)
    fx = _fx_rates(spec, cal, _rng(seed, 0))
    counts = _rng(seed, 1).multinomial(n_deals, _normalise([p.share for p in spec.pipelines]))

    parts = [
        _simulate_pipeline(spec, p, int(count), cal, fx, seed, 10 * (i + 1))
        for i, (p, count) in enumerate(zip(spec.pipelines, counts))
    ]
    deals, truth, events = _assemble(parts, cal)
    targets, expected = _targets(spec, parts, cal, counts, n_deals, _rng(seed, 2))
    spend = _marketing_spend(spec, cal, n_deals, _rng(seed, 3))

    params = _params(spec, n_deals, seed, cal, counts, parts, expected)
    return SimulatedCompany(
        deals=deals,
        stage_events=events,
        pipeline_stages=_pipeline_stages(spec),
        targets=targets,
        fx_rates=fx.frame,
        marketing_spend=spend,
        truth=truth,
        params=params,
        end_date=end_date,
    )


# ---------------------------------------------------------------------------- calendar and rates

def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent stream per component, so changing one part does not reshuffle the others."""
    return np.random.default_rng([seed, stream])


def _normalise(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _choose(rng: np.random.Generator, weights, size: int) -> np.ndarray:
    """Indices drawn with the given weights."""
    cdf = np.cumsum(_normalise(weights))
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _choose_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One index per row of a (rows x options) weight matrix."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1)


class _Calendar:
    """The history: `days` whole days ending with end_date; plus helpers on day arrays."""

    def __init__(self, end_date: date, years: float):
        self.end_date = end_date
        self.n_days = max(1, int(round(years * 365.25)))
        self.end_day = np.datetime64(end_date, "D")
        self.start_day = self.end_day - (self.n_days - 1)
        self.days = np.arange(self.start_day, self.end_day + 1)
        self.end_ts = int(self.end_day.astype("datetime64[s]").astype(np.int64)) + DAY - 1

    @staticmethod
    def seconds(days: np.ndarray) -> np.ndarray:
        return days.astype("datetime64[s]").astype(np.int64)

    def creation_weights(self, p: PipelineSpec, days: np.ndarray) -> np.ndarray:
        """Relative creation intensity per day: growth x weekday x month x holidays."""
        years_from_end = (days - self.end_day).astype(float) / 365.25
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        dom = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        w = (np.exp(p.growth_per_year * years_from_end) * np.asarray(p.weekday_factors)[weekday]
             * np.asarray(p.month_factors)[month - 1])
        for h in p.holidays:
            w[(month == h.month) & (dom >= h.first_day) & (dom <= h.last_day)] *= h.factor
        return w


@dataclass
class _Fx:
    frame: pd.DataFrame
    usd_per_unit: dict  # currency -> daily rate over the history (np.ndarray)


def _fx_rates(spec: CompanySpec, cal: _Calendar, rng: np.random.Generator) -> _Fx:
    """Daily mean-reverting random walks of the log rate, kept inside the realistic band."""
    rates = {"USD": np.ones(cal.n_days)}
    for f in spec.fx:
        center, lo, hi = math.log(f.center), math.log(f.low), math.log(f.high)
        shocks = rng.normal(0.0, f.daily_sigma, cal.n_days)
        x = np.empty(cal.n_days)
        x[0] = center + rng.normal(0.0, (hi - lo) / 8)
        for t in range(1, cal.n_days):
            x[t] = min(hi, max(lo, x[t - 1] + f.reversion_per_day * (center - x[t - 1]) + shocks[t]))
        digits = 7 - math.floor(math.log10(f.center))  # 8 significant digits
        rates[f.currency] = np.round(np.exp(x), digits)
    currencies = sorted(rates)
    frame = pd.DataFrame({
        "rate_date": np.repeat(cal.days, len(currencies)).astype("datetime64[ns]"),
        "currency": np.tile(np.array(currencies, dtype=object), cal.n_days),
        "quote_currency": "USD",
        "rate": np.column_stack([rates[c] for c in currencies]).ravel(),
    })
    return _Fx(frame=frame[FX_RATES_COLUMNS], usd_per_unit=rates)


# ---------------------------------------------------------------------------- one pipeline

def _simulate_pipeline(spec: CompanySpec, p: PipelineSpec, m: int, cal: _Calendar, fx: _Fx,
                       seed: int, stream: int) -> dict:
    """Deals and events of one pipeline, as arrays indexed by the pipeline's local deal number."""
    rng = _rng(seed, stream)
    n_open = len(p.stages)

    # 1. creation
    weights = cal.creation_weights(p, cal.days)
    day = _choose(rng, weights, m)
    second = np.floor((rng.normal(p.creation_hour_utc_mean, p.creation_hour_utc_sd, m) * 3600) % DAY)
    created = cal.seconds(cal.days)[day] + second.astype(np.int64)

    # 2. attributes and the true win probability
    history_fraction = (day + 0.5) / cal.n_days
    owner_w = np.array([o.weight for o in p.owners])
    active = np.column_stack([(history_fraction >= o.active_from) & (history_fraction < o.active_to)
                              for o in p.owners]) if m else np.zeros((0, len(p.owners)), bool)
    owner = _choose_rows(rng, active * owner_w)
    source = _choose(rng, [s.weight for s in p.lead_sources], m)
    segment = _choose(rng, [s.weight for s in p.segments], m)
    region = _choose(rng, [r.weight for r in p.regions], m)
    product = _choose(rng, [r.weight for r in p.products], m)

    owner_effect = np.array([o.skill for o in p.owners])[owner]
    source_effect = np.array([s.effect for s in p.lead_sources])[source]
    segment_effect = np.array([s.effect for s in p.segments])[segment]
    noise = rng.normal(0.0, spec.noise_sd, m)
    p_if_answered = 1 / (1 + np.exp(-(p.base_logit + owner_effect + source_effect + segment_effect + noise)))
    unanswered = rng.random(m) < p.unanswered_share
    will_win = ~unanswered & (rng.random(m) < p_if_answered)
    p_win_true = (1 - p.unanswered_share) * p_if_answered
    cls = np.where(unanswered, _UNANSWERED, np.where(will_win, _WIN, _LOSE))
    speed = np.array([s.speed for s in p.segments])[segment] * np.exp(rng.normal(0, spec.speed_sigma, m))

    # amount: lognormal in the pipeline currency, sold in the region's currency at that day's rate
    median = np.array([s.amount_median for s in p.segments])[segment]
    sigma = np.array([s.amount_sigma for s in p.segments])[segment]
    value = median * np.exp(sigma * rng.standard_normal(m))  # pipeline currency
    region_ccy = np.array([r.currency or p.currency for r in p.regions], dtype=object)
    currency = region_ccy[region]
    amount = value.copy()
    for ccy in set(region_ccy) - {p.currency}:
        sel = currency == ccy
        amount[sel] = value[sel] * fx.usd_per_unit[p.currency][day[sel]] / fx.usd_per_unit[ccy][day[sel]]
    amount = np.maximum(np.round(amount / p.amount_rounding) * p.amount_rounding, p.amount_minimum)

    # 3. paths and times
    path = _paths(spec, p, rng, cls, speed, created)
    n_events = np.bincount(path["deal"], minlength=m)
    first = np.concatenate([[0], np.cumsum(n_events)[:-1]]).astype(np.int64)
    last = first + n_events - 1
    closes_at = path["ts"][last]

    # 4. cut at the export time: the events are in time order, so what is kept is a prefix
    keep = path["ts"] <= cal.end_ts
    kept = np.bincount(path["deal"][keep], minlength=m)
    last_kept = first + kept - 1
    current = path["stage"][last_kept]
    is_closed = current > n_open
    closed_at = np.where(is_closed, path["ts"][last_kept], -1)
    outcome = np.where(current == n_open + 1, "won", np.where(current == n_open + 2, "lost", "open"))

    reason_names, final_reason, interim_reason = _lost_reasons(p, rng, cls, path["final_open"],
                                                               path["reopen_deals"], path["reopen_stage"])
    reason = np.full(m, -1)
    is_lost = current == n_open + 2
    reason[is_lost] = final_reason[is_lost]
    interim = is_lost & (path["kind"][last_kept] == _INTERIM_LOST)
    reason[interim] = interim_reason[interim]

    expected_close = _expected_close(spec, p, rng, created, segment, np.minimum(closes_at, cal.end_ts))
    title = _titles(spec, p, rng, product)

    has_back = np.zeros(m, bool)
    has_back[path["back_deals"]] = True
    reopened = np.zeros(m, bool)
    reopened[path["reopen_deals"]] = True
    return dict(
        spec=p, m=m, created=created, day=day, owner=owner, source=source, segment=segment,
        region=region, product=product, amount=amount, currency=currency, value=value,
        expected_close=expected_close, closed_at=closed_at, outcome=outcome, reason=reason,
        reason_names=reason_names, current=current, title=title, closes_at=closes_at,
        owner_effect=owner_effect, source_effect=source_effect, segment_effect=segment_effect,
        noise=noise, p_if_answered=p_if_answered, unanswered=unanswered, will_win=will_win,
        p_win_true=p_win_true, speed=speed, has_back=has_back, reopened=reopened,
        ev_deal=path["deal"][keep], ev_stage=path["stage"][keep], ev_ts=path["ts"][keep],
        n_events_total=len(path["deal"]),
    )


def _paths(spec: CompanySpec, p: PipelineSpec, rng: np.random.Generator, cls: np.ndarray,
           speed: np.ndarray, created: np.ndarray) -> dict:
    """Every deal's full stage path (before the cut) as flat arrays sorted by deal, then time.

    Stages are coded by stage_order: open 1..n, won n+1, lost n+2. Events get an ordering key
    16*stage + k so the extra moves (back, lost-and-reopened) slot in after the stage they leave.
    """
    m, n = len(cls), len(p.stages)
    won_code, lost_code = n + 1, n + 2
    engaged, wins, loses = cls != _UNANSWERED, cls == _WIN, cls == _LOSE

    final_open = np.ones(m, np.int64)
    final_open[wins] = n
    lose_rows = np.flatnonzero(loses)
    final_open[lose_rows] = 2 + _choose(rng, [s.drop_weight for s in p.stages[1:]], len(lose_rows))

    skip = np.array([s.skip_probability for s in p.stages])
    skip[0] = 0.0
    visited = (np.arange(1, n + 1) <= final_open[:, None]) & (rng.random((m, n)) >= skip)
    visited[:, 0] = True
    visited[lose_rows, final_open[lose_rows] - 1] = True  # the stage a deal is lost in was reached

    eligible = engaged & visited[:, 1:].any(axis=1)
    back_deals = np.flatnonzero(eligible & (rng.random(m) < spec.backward_share))
    back_col, back_prev = _pick_visited_stage(rng, visited, back_deals)
    reopen_deals = np.flatnonzero(eligible & (rng.random(m) < spec.reopen_share))
    reopen_col, _ = _pick_visited_stage(rng, visited, reopen_deals)
    reopen_lost = loses[reopen_deals]
    reopen_col[reopen_lost] = final_open[reopen_deals[reopen_lost]] - 1  # reopened where it was lost

    rows, cols = np.nonzero(visited)
    everyone = np.arange(m)
    parts = [
        (rows, cols + 1, 16 * (cols + 1), _VISIT),
        (back_deals, back_prev + 1, 16 * (back_col + 1) + 1, _BACK),
        (back_deals, back_col + 1, 16 * (back_col + 1) + 2, _VISIT),
        (reopen_deals, np.full(len(reopen_deals), lost_code), 16 * (reopen_col + 1) + 3, _INTERIM_LOST),
        (reopen_deals, reopen_col + 1, 16 * (reopen_col + 1) + 4, _VISIT),
        (everyone, np.where(wins, won_code, lost_code), np.full(m, 16 * won_code), _TERMINAL),
    ]
    deal = np.concatenate([a for a, *_ in parts]).astype(np.int64)
    stage = np.concatenate([b for _, b, *_ in parts]).astype(np.int64)
    key = np.concatenate([c for *_, c, _ in parts]).astype(np.int64)
    kind = np.concatenate([np.full(len(a), k, np.int8) for a, *_, k in parts])
    order = np.lexsort((key, deal))
    deal, stage, kind = deal[order], stage[order], kind[order]

    # stays: the time from each event to the next event of the same deal
    e = len(deal)
    has_next = np.zeros(e, bool)
    has_next[:-1] = deal[1:] == deal[:-1]
    next_stage = np.zeros(e, np.int64)
    next_stage[:-1] = stage[1:]
    z = rng.standard_normal(e)
    med = np.array([s.median_days for s in p.stages] + [1.0, 1.0])[stage - 1]
    sig = np.array([s.sigma for s in p.stages] + [0.0, 0.0])[stage - 1]
    days = med * np.exp(sig * z) * speed[deal]
    days = np.where((next_stage == lost_code) & (stage <= n), days * spec.lost_linger, days)
    days = np.where(kind == _BACK, spec.backward_stay_median_days * np.exp(0.8 * z), days)
    days = np.where(kind == _INTERIM_LOST,
                    spec.reopen_delay_median_days * np.exp(spec.reopen_delay_sigma * z), days)
    unanswered = (cls == _UNANSWERED)[deal]
    days = np.where(unanswered, p.unanswered_close_median_days * np.exp(p.unanswered_close_sigma * z), days)
    stay = np.where(has_next, np.maximum(np.ceil(np.minimum(days, spec.max_stay_days) * DAY), 60), 0)
    stay = stay.astype(np.int64)

    elapsed = np.cumsum(stay) - stay  # time before each event, counted from the first event overall
    first = np.flatnonzero(np.concatenate([[True], deal[1:] != deal[:-1]])) if e else np.zeros(0, np.int64)
    ts = created[deal] + elapsed - elapsed[first][deal]
    return dict(deal=deal, stage=stage, kind=kind, ts=ts, final_open=final_open,
                back_deals=back_deals, reopen_deals=reopen_deals, reopen_stage=reopen_col + 1)


def _pick_visited_stage(rng: np.random.Generator, visited: np.ndarray, rows: np.ndarray):
    """For each row, one visited stage after the first (uniformly) and the visited stage before it,
    as 0-based columns. Every row must have a visited stage after the first."""
    n = visited.shape[1]
    vis = visited[rows]
    later = vis.copy()
    later[:, 0] = False
    count = later.sum(axis=1)
    pick = np.floor(rng.random(len(rows)) * count).astype(np.int64) + 1
    col = np.argmax(later & (np.cumsum(later, axis=1) == pick[:, None]), axis=1)
    seen = np.maximum.accumulate(np.where(vis, np.arange(n), -1), axis=1)
    prev = seen[np.arange(len(rows)), col - 1] if len(rows) else np.zeros(0, np.int64)
    return col.astype(np.int64), prev.astype(np.int64)


def _lost_reasons(p: PipelineSpec, rng: np.random.Generator, cls: np.ndarray, final_open: np.ndarray,
                  reopen_deals: np.ndarray, reopen_stage: np.ndarray):
    """Reason indices: unanswered -> no answer; a lost deal's reason mixes the early and the late
    distributions by how far it got. Also a reason for the first loss of reopened deals."""
    names = list(dict.fromkeys([p.no_answer_reason] + [c.name for c in p.lost_reasons_early]
                               + [c.name for c in p.lost_reasons_late]))
    early = np.zeros(len(names))
    late = np.zeros(len(names))
    for c in p.lost_reasons_early:
        early[names.index(c.name)] = c.weight
    for c in p.lost_reasons_late:
        late[names.index(c.name)] = c.weight
    early, late = early / early.sum(), late / late.sum()
    n = len(p.stages)

    def draw(stage: np.ndarray) -> np.ndarray:
        f = np.clip((stage - 2) / max(n - 2, 1), 0, 1)[:, None]
        return _choose_rows(rng, (1 - f) * early + f * late)

    final = np.full(len(cls), -1)
    final[cls == _UNANSWERED] = names.index(p.no_answer_reason)
    lose = cls == _LOSE
    final[lose] = draw(final_open[lose])
    interim = np.full(len(cls), -1)
    interim[reopen_deals] = draw(reopen_stage)
    return names, final, interim


def _expected_close(spec: CompanySpec, p: PipelineSpec, rng: np.random.Generator, created: np.ndarray,
                    segment: np.ndarray, seen_until: np.ndarray) -> np.ndarray:
    """The current expected close (days since epoch): created + a typical cycle, pushed out when it
    passed while the deal was still open (before the export), up to a few times."""
    m = len(created)
    cycle = np.array([s.cycle_days for s in p.segments])[segment] * np.exp(
        spec.expected_close_sigma * rng.standard_normal(m))
    day = created // DAY + np.maximum(np.round(cycle), 1).astype(np.int64)
    for _ in range(spec.max_pushes):
        overdue = (day + 1) * DAY <= seen_until
        push = overdue & (rng.random(m) < spec.push_probability)
        delay = 7 + np.round(rng.exponential(spec.push_mean_days - 7, m)).astype(np.int64)
        day = np.where(push, day + delay, day)
    return day


def _titles(spec: CompanySpec, p: PipelineSpec, rng: np.random.Generator, product: np.ndarray) -> np.ndarray:
    """Titles from a table of every combination, so nothing is formatted per deal."""
    parts = TITLE_PARTS[p.name]
    m = len(product)
    lines = ("",) + tuple("\n" + s for s in parts["second_lines"])
    quoted = rng.random(m) < spec.title_quote_share
    line = np.where(rng.random(m) < spec.title_newline_share,
                    1 + np.floor(rng.random(m) * (len(lines) - 1)).astype(np.int64), 0)
    name = np.floor(rng.random(m) * len(parts["names"])).astype(np.int64)
    products = [c.name for c in p.products]
    if "forms" in parts:
        form = np.floor(rng.random(m) * len(parts["forms"])).astype(np.int64)
        subj = np.floor(rng.random(m) * 3).astype(np.int64)
        table = np.empty((len(parts["forms"]), len(parts["names"]), len(products), 3, 2, len(lines)), object)
        for (a, f), (b, nm), (c, pr), s, q, (d, ln) in _product(parts["forms"], parts["names"], products,
                                                                  range(3), range(2), lines):
            subjects = parts["subjects"][pr]
            company = f'{f} "{nm}"' if q else f"{f} «{nm}»"
            table[a, b, c, s, q, d] = f"{company}, {subjects[s % len(subjects)]}{ln}"
        return table[form, name, product, subj, quoted.astype(int), line]
    kind = np.floor(rng.random(m) * len(parts["kinds"])).astype(np.int64)
    table = np.empty((len(parts["names"]), len(products), len(parts["kinds"]), 2, len(lines)), object)
    for (b, nm), (c, pr), (k, kd), q, (d, ln) in _product(parts["names"], products, parts["kinds"],
                                                           range(2), lines):
        table[b, c, k, q, d] = (f'{nm} — "{pr}" {kd}' if q else f"{nm} — {pr}, {kd}") + ln
    return table[name, product, kind, quoted.astype(int), line]


def _product(*seqs):
    """itertools.product over (index, item) pairs; a range yields plain indices."""
    enumerated = [s if isinstance(s, range) else list(enumerate(s)) for s in seqs]
    return itertools.product(*enumerated)


# ---------------------------------------------------------------------------- assembly

def _assemble(parts: list[dict], cal: _Calendar) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Deals of all pipelines in creation order with native ids; their kept events in that order."""
    created = np.concatenate([d["created"] for d in parts])
    pipe = np.concatenate([np.full(d["m"], i) for i, d in enumerate(parts)])
    local = np.concatenate([np.arange(d["m"]) for d in parts])
    order = np.lexsort((local, pipe, created))
    n = len(order)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    native_id = pd.Series(np.arange(FIRST_NATIVE_ID, FIRST_NATIVE_ID + n)).astype(str).to_numpy(object)

    def cat(getter) -> np.ndarray:
        return np.concatenate([getter(d) for d in parts])[order]

    def names(field: str, attr: str) -> np.ndarray:
        return cat(lambda d: np.array([getattr(x, "name") for x in getattr(d["spec"], attr)], object)[d[field]])

    pipeline_name = cat(lambda d: np.full(d["m"], d["spec"].name, dtype=object))
    stage_names = [[s.name for s in d["spec"].stages] + [d["spec"].won_stage, d["spec"].lost_stage]
                   for d in parts]
    current_stage = np.concatenate([np.array(stage_names[i], object)[d["current"] - 1]
                                    for i, d in enumerate(parts)])[order]
    reason = cat(lambda d: np.array(d["reason_names"] + [None], object)[d["reason"]])
    ts = lambda a: a.astype("datetime64[s]").astype("datetime64[ns]")  # noqa: E731
    closed_at = cat(lambda d: d["closed_at"])
    closed = closed_at >= 0
    closed_at_ts = np.full(n, np.datetime64("NaT"), "datetime64[ns]")
    closed_at_ts[closed] = ts(closed_at[closed])
    exported_at = np.datetime64(cal.end_ts, "s").astype("datetime64[ns]")

    deals = pd.DataFrame({
        "source_system": SOURCE_SYSTEM,
        "native_id": native_id,
        "pipeline": pipeline_name,
        "title": cat(lambda d: d["title"]),
        "owner": names("owner", "owners"),
        "lead_source": names("source", "lead_sources"),
        "segment": names("segment", "segments"),
        "region": names("region", "regions"),
        "product": names("product", "products"),
        "amount": cat(lambda d: d["amount"]),
        "currency": cat(lambda d: d["currency"]),
        "created_at": ts(created[order]),
        "expected_close_date": cat(lambda d: d["expected_close"]).astype("datetime64[D]").astype("datetime64[ns]"),
        "closed_at": closed_at_ts,
        "outcome": cat(lambda d: d["outcome"]).astype(object),
        "lost_reason": reason,
        "current_stage": current_stage,
        "exported_at": np.full(n, exported_at),
    })[DEALS_COLUMNS]

    truth = pd.DataFrame({
        "source_system": SOURCE_SYSTEM,
        "native_id": native_id,
        "pipeline": pipeline_name,
        "p_win_true": cat(lambda d: d["p_win_true"]),
        "will_win": cat(lambda d: d["will_win"]),
        "owner": deals["owner"].to_numpy(),
        "lead_source": deals["lead_source"].to_numpy(),
        "segment": deals["segment"].to_numpy(),
        "region": deals["region"].to_numpy(),
        "product": deals["product"].to_numpy(),
        "created_at": deals["created_at"].to_numpy(),
        "is_unanswered": cat(lambda d: d["unanswered"]),
        "p_win_if_answered": cat(lambda d: d["p_if_answered"]),
        "base_logit": cat(lambda d: np.full(d["m"], d["spec"].base_logit)),
        "owner_effect": cat(lambda d: d["owner_effect"]),
        "source_effect": cat(lambda d: d["source_effect"]),
        "segment_effect": cat(lambda d: d["segment_effect"]),
        "noise_logit": cat(lambda d: d["noise"]),
        "pace": cat(lambda d: d["speed"]),
        "amount_pipeline_currency": cat(lambda d: np.round(d["value"], 2)),
        "has_backward_move": cat(lambda d: d["has_back"]),
        "is_reopened": cat(lambda d: d["reopened"]),
        "closes_at_untruncated": ts(cat(lambda d: d["closes_at"])),
    })

    offsets = np.cumsum([0] + [d["m"] for d in parts])
    ev_pos = np.concatenate([rank[offsets[i] + d["ev_deal"]] for i, d in enumerate(parts)])
    ev_order = np.argsort(ev_pos, kind="stable")
    ev_pos = ev_pos[ev_order]
    ev_stage = np.concatenate([np.array(stage_names[i], object)[d["ev_stage"] - 1]
                               for i, d in enumerate(parts)])[ev_order]
    ev_ts = np.concatenate([d["ev_ts"] for d in parts])[ev_order]
    events = pd.DataFrame({
        "source_system": SOURCE_SYSTEM,
        "native_id": native_id[ev_pos],
        "pipeline": pipeline_name[ev_pos],
        "stage": ev_stage,
        "entered_at": ts(ev_ts),
        "origin": "history",
    })[STAGE_EVENTS_COLUMNS]
    return deals, truth, events


def _pipeline_stages(spec: CompanySpec) -> pd.DataFrame:
    rows = []
    for p in spec.pipelines:
        n = len(p.stages)
        rows += [(p.name, s.name, i + 1, "open", s.crm_probability) for i, s in enumerate(p.stages)]
        rows += [(p.name, p.won_stage, n + 1, "won", 1.0), (p.name, p.lost_stage, n + 2, "lost", 0.0)]
    return pd.DataFrame(rows, columns=PIPELINE_STAGES_COLUMNS)


# ---------------------------------------------------------------------------- targets and spend

def _quarter(day: np.datetime64) -> tuple[int, int]:
    month = int(day.astype("datetime64[M]").astype(np.int64))
    return month // 12 + 1970, (month % 12) // 3 + 1


def _expected_creations(p: PipelineSpec, cal: _Calendar, days: np.ndarray, n_deals: int) -> np.ndarray:
    """Expected deals created per day (any day, also after end_date) under the generating process."""
    scale = n_deals * p.share / cal.creation_weights(p, cal.days).sum()
    return cal.creation_weights(p, days) * scale


def _targets(spec: CompanySpec, parts: list[dict], cal: _Calendar, counts, n_deals: int,
             rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """Quarterly and monthly targets per pipeline: a stretch of 1.05-1.25 x expected bookings.

    Expected bookings by day = sum over segments of expected creations x mean(p_win_true x amount
    x in segment) convolved with the segment's created -> won times (from the simulated wins,
    before the cut)."""
    first_year, first_q = _quarter(cal.start_day)
    last_year, last_q = _quarter(cal.end_day)
    last_index = last_year * 4 + last_q - 1 + 2  # two quarters after the end
    quarters = [(i // 4, i % 4 + 1) for i in range(first_year * 4 + first_q - 1, last_index + 1)]
    grid_end = np.datetime64(f"{quarters[-1][0]}-{3 * quarters[-1][1]:02d}", "M") + 1
    grid = np.arange(cal.start_day, grid_end.astype("datetime64[D]"))
    month_of = grid.astype("datetime64[M]")
    first_month = str(cal.start_day.astype("datetime64[M]"))

    rows, expected = [], {}
    for d in parts:
        p = d["spec"]
        lam = _expected_creations(p, cal, grid, n_deals)
        booked = np.zeros(len(grid))
        for k, seg in enumerate(p.segments):  # per segment: big deals also take longer
            in_seg = d["segment"] == k
            value = float(np.sum(d["p_win_true"] * d["value"] * in_seg)) / d["m"] if d["m"] else 0.0
            wins = d["will_win"] & in_seg
            lags = ((d["closes_at"][wins] - d["created"][wins]) // DAY).astype(np.int64)
            if len(lags) == 0:
                lags = np.array([int(seg.speed * sum(s.median_days for s in p.stages))])
            pmf = np.bincount(np.minimum(lags, len(grid) - 1), minlength=len(grid)) / len(lags)
            booked += np.convolve(lam * value, pmf)[: len(grid)]
        monthly = pd.Series(booked).groupby(month_of.astype(str)).sum()
        stretch = rng.uniform(*spec.target_multiplier, len(quarters))
        expected[p.name] = {}
        for (year, q), mult in zip(quarters, stretch):
            months = [f"{year}-{3 * (q - 1) + k:02d}" for k in (1, 2, 3)]
            exp_q = float(sum(monthly.get(mo, 0.0) for mo in months))
            expected[p.name][f"{year}-Q{q}"] = round(exp_q, 2)
            unit = 10.0 ** max(0, math.floor(math.log10(max(exp_q * mult, 1.0))) - 2)  # 3 significant digits
            target_q = round(exp_q * mult / unit) * unit
            rows.append((f"{year}-Q{q}", p.name, None, None, target_q, p.currency))
            shares = np.array([monthly.get(mo, 0.0) for mo in months])
            shares = shares / shares.sum() if shares.sum() > 0 else np.full(3, 1 / 3)
            split = np.round(target_q * shares[:2] / unit) * unit
            for mo, amount in zip(months, [*split, target_q - split.sum()]):
                if mo >= first_month:  # no monthly target before the history starts
                    rows.append((mo, p.name, None, None, float(amount), p.currency))
    return pd.DataFrame(rows, columns=TARGETS_COLUMNS), expected


def _marketing_spend(spec: CompanySpec, cal: _Calendar, n_deals: int, rng: np.random.Generator) -> pd.DataFrame:
    """Spend per month and lead source: expected leads x cost per lead x noise (budgets are planned
    from expected volume, so spend does not echo the month's random lead count)."""
    months = cal.days.astype("datetime64[M]")
    labels = np.unique(months)
    rows = []
    for p in spec.pipelines:
        lam = _expected_creations(p, cal, cal.days, n_deals)
        per_month = np.bincount(np.searchsorted(labels, months), weights=lam, minlength=len(labels))
        source_share = _normalise([s.weight for s in p.lead_sources])
        noise = np.exp(rng.normal(0.0, spec.spend_noise_sigma, (len(labels), len(p.lead_sources))))
        for i, month in enumerate(labels):
            for j, s in enumerate(p.lead_sources):
                amount = round(float(per_month[i] * source_share[j] * s.cost_per_lead * noise[i, j]), 2)
                rows.append((str(month), s.name, amount, p.currency))
    return pd.DataFrame(rows, columns=MARKETING_SPEND_COLUMNS).sort_values(
        ["month", "lead_source"], kind="stable", ignore_index=True)


# ---------------------------------------------------------------------------- params

def _params(spec: CompanySpec, n_deals: int, seed: int, cal: _Calendar, counts, parts, expected) -> dict:
    params = {
        "n_deals": int(n_deals),
        "seed": int(seed),
        "end_date": cal.end_date.isoformat(),
        "start_date": str(cal.start_day),
        "history_days": cal.n_days,
        "source_system": SOURCE_SYSTEM,
        **dataclasses.asdict(spec),
        "derived": {},
    }
    params["target_multiplier"] = list(spec.target_multiplier)
    recent = cal.days[-28:]
    for p, count, d in zip(spec.pipelines, counts, parts):
        params["derived"][p.name] = {
            "deals": int(count),
            "creation_rate_per_day_at_end": float(_expected_creations(p, cal, recent, n_deals).mean()),
            "mean_p_win_true": float(d["p_win_true"].mean()) if d["m"] else None,
            "stage_events_before_cut": int(d["n_events_total"]),
            "expected_bookings_by_quarter": expected[p.name],
        }
    return _jsonable(params)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
