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

pipeline_deals.py draws steps 1-4 for one pipeline at a time; sampling.py holds the seeded streams,
the weighted draws and the calendar; this module draws the FX rates and assembles the pipelines
into the canonical frames, with the targets, marketing spend and params.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from voronka.simulator.pipeline_deals import _simulate_pipeline
from voronka.simulator.sampling import DAY, _Calendar, _Fx, _normalise, _rng
from voronka.simulator.spec import DEMO_COMPANY, CompanySpec, PipelineSpec

SOURCE_SYSTEM = "demo"
DEFAULT_END_DATE = date(2026, 6, 30)
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


# ---------------------------------------------------------------------------- FX rates

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


def export_as_of(company: SimulatedCompany, cut: pd.Timestamp) -> SimulatedCompany:
    """The company's export as it stood at `cut`: deals created by then, each in the stage it was
    in, closed only if it had closed by then, and the stage events up to then (the same deals a
    day earlier, for a daily run; a deleted deal's last export)."""
    deals = company.deals[company.deals["created_at"] <= cut].copy()
    events = company.stage_events[(company.stage_events["entered_at"] <= cut)
                                  & company.stage_events["native_id"].isin(deals["native_id"])]
    last = events.sort_values(["native_id", "entered_at"], kind="stable").groupby("native_id").last()
    stage = deals["native_id"].map(last["stage"])
    entered = deals["native_id"].map(last["entered_at"])
    kinds = company.pipeline_stages.set_index(["pipeline", "stage"])["kind"]
    kind = pd.Series(kinds.reindex(pd.MultiIndex.from_arrays([deals["pipeline"], stage])).to_numpy(object),
                     index=deals.index)
    closed = kind != "open"
    same = closed & (deals["outcome"] == kind) & (deals["closed_at"] <= cut)
    deals["closed_at"] = deals["closed_at"].where(same, entered.where(closed))
    deals["lost_reason"] = deals["lost_reason"].where(kind == "lost")
    deals["current_stage"] = stage
    deals["outcome"] = kind
    deals["exported_at"] = cut
    ids = set(deals["native_id"])
    return dataclasses.replace(company, deals=deals.reset_index(drop=True),
                               stage_events=events.reset_index(drop=True),
                               truth=company.truth[company.truth["native_id"].isin(ids)].reset_index(drop=True))
