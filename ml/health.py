"""Funnel-health checks as plain functions: each takes frames and returns a `Health` verdict
(passed, severity, a one-line summary and the rows behind it). The Dagster asset checks in
orchestration/assets/forecast.py are thin wrappers over these.

- prob_hit_target: P(revenue >= target) of this and next month and quarter below a floor.
- new_pipeline_need: the deals being created are fewer than next period's target needs ("the
  funnel is drying up"): what the target still needs from deals not yet created, against what
  the model expects them to bring at the current creation rate.
- stalled_share: too many open deals stalled in their stage.
- export_freshness: a source's newest export is older than allowed (wall clock; never on a replay).
- missing_fx: deal amounts in a currency with no rate to the reporting currency.
- stage_shortfall / segment_shortfall: where a short pipeline is short (for the coverage check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from ml.forecast import ALL, MODEL

OK, WARN, ERROR = "ok", "warn", "error"
# The year the coverage detail compares the pipeline with (typical stage counts, segment shares).
WINDOW_DAYS = 365


@dataclass
class Health:
    passed: bool
    severity: str  # warn | error (meaningful when not passed)
    summary: str
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: dict = field(default_factory=dict)


def preferred_method(forecast: pd.DataFrame) -> pd.DataFrame:
    """The rows of the method leadership reads: 'model' when present, else the baseline."""
    if "method" not in forecast or forecast.empty:
        return forecast
    method = MODEL if (forecast["method"] == MODEL).any() else forecast["method"].iloc[0]
    return forecast[forecast["method"] == method]


def prob_hit_target(forecast: pd.DataFrame, floor: float) -> Health:
    """Fails when a period/scope with a target has P(hit target) below `floor`; ERROR when the
    target is above the forecast's P90 (P(hit) < 10%: out of reach without a change)."""
    rows = preferred_method(forecast)
    rows = rows[rows["target"].notna() & rows["prob_hit_target"].notna()]
    low = rows[rows["prob_hit_target"] < floor]
    cols = [c for c in ["period", "pipeline", "segment", "owner", "currency", "target", "expected", "p10",
                        "p90", "prob_hit_target", "method"] if c in low]
    severity = ERROR if (low["prob_hit_target"] < 0.1).any() else WARN
    if rows.empty:  # no target is not a miss (a real export carries none)
        summary = "no target in the forecast periods: P(hit target) is not judged"
    elif low.empty:
        summary = f"P(hit target) at or above {floor:.0%} for all {len(rows)} targeted periods"
    else:
        worst = low.sort_values("prob_hit_target").iloc[0]
        summary = (f"{len(low)} of {len(rows)} targeted periods below {floor:.0%}; worst "
                   f"{worst['period']} {worst['pipeline']}: {worst['prob_hit_target']:.0%}")
    return Health(low.empty, severity, summary, low[cols].reset_index(drop=True),
                  {"rows_checked": len(rows), "below_floor": len(low), "floor": floor})


def new_pipeline_need(forecast: pd.DataFrame, creation: pd.DataFrame, next_periods: list[str],
                      error_ratio: float = 2.0) -> Health:
    """Is new-pipeline creation enough for next period's target?

    For each next period with a target (model rows): still needed from deals not yet created =
    target − booked − expected from the open pipeline. Creation is short when that is more than
    the model expects new deals to bring at the current creation rate; `needed_creation_ratio`
    = needed / expected (the multiple of today's creation rate the target needs). WARN above 1,
    ERROR above `error_ratio` (or when nothing new is expected at all). creation: per pipeline
    (and 'all') created_last_28d and expected_last_28d, shown beside it.
    """
    rows = forecast[(forecast["method"] == MODEL) & forecast["period"].isin(next_periods)
                    & forecast["target"].notna()].copy()
    if rows.empty:
        return Health(True, WARN, "no model forecast with a target for the next periods: nothing to check",
                      figures={"rows_checked": 0})
    rows["needed_from_new"] = rows["target"] - rows["booked"] - rows["from_open_pipeline"]
    rows["needed_creation_ratio"] = np.where(
        rows["needed_from_new"] <= 0, 0.0,
        rows["needed_from_new"] / rows["from_new_pipeline"].where(rows["from_new_pipeline"] > 0, np.nan))
    rows["needed_creation_ratio"] = rows["needed_creation_ratio"].fillna(np.inf)
    if len(creation):
        rows = rows.merge(creation[["pipeline", "created_last_28d", "expected_last_28d"]], on="pipeline", how="left")
    short = rows[rows["needed_creation_ratio"] > 1.0]
    cols = [c for c in ["period", "pipeline", "segment", "owner", "currency", "target", "from_open_pipeline",
                        "from_new_pipeline", "needed_from_new", "needed_creation_ratio", "created_last_28d",
                        "expected_last_28d"] if c in short]
    severity = ERROR if (short["needed_creation_ratio"] > error_ratio).any() else WARN
    if short.empty:
        summary = f"new-pipeline creation covers what the next periods' targets need ({len(rows)} checked)"
    else:
        worst = short.sort_values("needed_creation_ratio").iloc[-1]
        ratio = worst["needed_creation_ratio"]
        summary = (f"{worst['period']} {worst['pipeline']}: the target needs "
                   + ("new deals although none are expected" if not np.isfinite(ratio)
                      else f"{ratio:.1f}x today's creation rate"))
    return Health(short.empty, severity, summary, short[cols].reset_index(drop=True),
                  {"rows_checked": len(rows), "short": len(short)})


def stalled_share(scores: pd.DataFrame, max_share: float) -> Health:
    """Share of open deals stalled in their stage (days in stage above the stage's p90), overall
    and per pipeline; fails when any is above `max_share` (WARN)."""
    if scores.empty:
        return Health(True, WARN, "no open deals", figures={"open_deals": 0})
    amount = scores["amount_reporting"].fillna(0)
    by = scores.assign(amount=amount, stalled_amount=amount * scores["is_stalled"]).groupby("pipeline", observed=True).agg(
        open_deals=("is_stalled", "size"), stalled_deals=("is_stalled", "sum"),
        open_amount=("amount", "sum"), stalled_amount=("stalled_amount", "sum")).reset_index()
    total = pd.DataFrame([{"pipeline": ALL, "open_deals": by["open_deals"].sum(),
                           "stalled_deals": by["stalled_deals"].sum(), "open_amount": by["open_amount"].sum(),
                           "stalled_amount": by["stalled_amount"].sum()}])
    table = pd.concat([by, total], ignore_index=True)
    table["stalled_share"] = table["stalled_deals"] / table["open_deals"].where(table["open_deals"] > 0)
    over = table[table["stalled_share"] > max_share]
    overall = float(total["stalled_deals"].iloc[0] / max(total["open_deals"].iloc[0], 1))
    summary = (f"{overall:.0%} of open deals stalled (limit {max_share:.0%})" if over.empty else
               "stalled share above " + f"{max_share:.0%}: " + ", ".join(
                   f"{r.pipeline} {r.stalled_share:.0%}" for r in over.itertuples()))
    return Health(over.empty, WARN, summary, table, {"stalled_share": overall, "max_stalled_share": max_share})


def export_freshness(newest_by_source: dict, now: datetime, max_age_days: float,
                     replay_as_of: str | None = None) -> Health:
    """The newest export of each source system (source -> time) against the wall clock `now`:
    fails when one is older than `max_age_days` — "no HubSpot export for 4 days" while amoCRM
    still comes in is a broken export job too. A replay (`--as-of`) analyses old data on purpose,
    so it never fails; with no export at all it fails (ERROR). rows: source_system,
    newest_export, age_days, max_age_days, status (ok / warn)."""
    columns = ["source_system", "newest_export", "age_days", "max_age_days", "status"]
    if replay_as_of:
        return Health(True, WARN, f"replay as of {replay_as_of}: freshness is not judged",
                      pd.DataFrame(columns=columns), {"replay_as_of": replay_as_of})
    if not newest_by_source:
        return Health(False, ERROR, "no export loaded yet", pd.DataFrame(columns=columns),
                      {"max_export_age_days": max_age_days})
    rows = pd.DataFrame({"source_system": list(newest_by_source),
                         "newest_export": pd.to_datetime(list(newest_by_source.values()))})
    rows["age_days"] = ((pd.Timestamp(now) - rows["newest_export"]) / pd.Timedelta(days=1)).round(2)
    rows["max_age_days"] = float(max_age_days)
    rows["status"] = np.where(rows["age_days"] > max_age_days, WARN, OK)
    rows = rows.sort_values("age_days", ascending=False).reset_index(drop=True)
    stale = rows[rows["status"] == WARN]
    if stale.empty:
        oldest = rows.iloc[0]
        summary = (f"every source exported within {max_age_days:g} days (oldest: "
                   f"{oldest['source_system']}, {oldest['age_days']:.1f} days ago)")
    else:
        summary = "; ".join(f"no {r.source_system} export for {r.age_days:.0f} days (newest "
                            f"{r.newest_export}, limit {max_age_days:g})" for r in stale.itertuples())
    return Health(stale.empty, WARN, summary, rows,
                  {"sources": len(rows), "stale_sources": len(stale), "max_export_age_days": max_age_days,
                   "oldest_age_days": float(rows["age_days"].max())})


def missing_fx(by_currency: pd.DataFrame, reporting_currency: str) -> Health:
    """Deals whose amount has no rate to the reporting currency, per currency (currency, deals,
    open_deals, amount): without a rate they count as nothing in bookings, the pipeline and the
    forecast, so money leadership reads is missing. ERROR when any."""
    if by_currency.empty:
        return Health(True, ERROR, f"every deal amount converts to {reporting_currency}",
                      figures={"currencies_without_rate": 0, "deals_without_rate": 0})
    rows = by_currency.assign(reporting_currency=reporting_currency).reset_index(drop=True)
    summary = "; ".join(f"{r.deals} deal(s) in {r.currency or '(no currency)'} ({r.amount:,.0f})"
                        for r in rows.itertuples())
    return Health(False, ERROR, f"no rate to {reporting_currency}: {summary}", rows,
                  {"currencies_without_rate": len(rows), "deals_without_rate": int(rows["deals"].sum())})


# ---------------------------------------------------------------- where a pipeline is short

def typical_stage_counts(stays: pd.DataFrame, as_of, window_days: int = WINDOW_DAYS) -> pd.DataFrame:
    """Average number of deals in each open stage over the `window_days` before `as_of`: the
    time the stays spent inside the window / the window (Little's law from the stays).

    stays: pipeline, stage, stage_kind, entered_at, exited_at (null = still there)."""
    as_of = pd.Timestamp(as_of)
    start = as_of - pd.Timedelta(days=window_days)
    s = stays[stays["stage_kind"] == "open"]
    entered = pd.to_datetime(s["entered_at"]).clip(lower=start)
    exited = pd.to_datetime(s["exited_at"]).fillna(as_of).clip(upper=as_of)
    inside = ((exited - entered) / pd.Timedelta(days=1)).clip(lower=0)
    out = s.assign(days=inside.to_numpy()).groupby(["pipeline", "stage"])["days"].sum() / window_days
    return out.rename("typical_open_deals").reset_index()


def stage_shortfall(open_deals: pd.DataFrame, typical: pd.DataFrame, pipeline: str = ALL) -> pd.DataFrame:
    """Stages holding fewer open deals than they typically do, with the money that would take at
    the stage's current average deal size. open_deals: pipeline, stage, amount_reporting."""
    deals = open_deals if pipeline == ALL else open_deals[open_deals["pipeline"] == pipeline]
    typ = typical if pipeline == ALL else typical[typical["pipeline"] == pipeline]
    now = deals.groupby(["pipeline", "stage"]).agg(open_deals=("amount_reporting", "size"),
                                                   open_amount=("amount_reporting", "sum")).reset_index()
    table = typ.merge(now, on=["pipeline", "stage"], how="left").fillna({"open_deals": 0, "open_amount": 0.0})
    avg = (table["open_amount"] / table["open_deals"].where(table["open_deals"] > 0)).fillna(
        deals["amount_reporting"].mean() if len(deals) else 0.0)
    table["short_deals"] = (table["typical_open_deals"] - table["open_deals"]).clip(lower=0)
    table["short_amount"] = table["short_deals"] * avg
    table = table[table["short_deals"] >= 1].sort_values("short_amount", ascending=False)
    return table.reset_index(drop=True)


def segment_shortfall(period_open: pd.DataFrame, won: pd.DataFrame, required_pipeline: float, as_of,
                      window_days: int = WINDOW_DAYS) -> pd.DataFrame:
    """Segments whose open pipeline for the period is below their share of the last year's
    bookings times the pipeline the period requires (required coverage x gap).

    period_open: segment, amount_reporting (the deals counted in the period);
    won: segment, amount_reporting, closed_at (won deals)."""
    as_of = pd.Timestamp(as_of)
    recent = won[(pd.to_datetime(won["closed_at"]) > as_of - pd.Timedelta(days=window_days))
                 & (pd.to_datetime(won["closed_at"]) <= as_of)]
    share = recent.groupby("segment")["amount_reporting"].sum()
    share = share / share.sum() if share.sum() > 0 else share
    open_ = period_open.groupby("segment")["amount_reporting"].sum()
    table = pd.DataFrame({"share_of_bookings": share, "open_pipeline": open_}).fillna(0.0)
    table["needed_pipeline"] = table["share_of_bookings"] * required_pipeline
    table["short_amount"] = (table["needed_pipeline"] - table["open_pipeline"]).clip(lower=0)
    table = table[table["short_amount"] > 0].sort_values("short_amount", ascending=False)
    return table.rename_axis("segment").reset_index()
