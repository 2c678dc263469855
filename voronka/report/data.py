"""What the leadership report shows, read from the warehouse into a plain dict (no Dagster).

`report_data(con, ...)` is the only place the report gets numbers: the renderer formats what is
here and computes nothing. Every figure comes from a mart (or, where the marts do not hold it yet,
from the dbt staging/intermediate models and raw tables the marts are built from), and a section
whose inputs are missing says so instead of failing:

- headline: this quarter's forecast (method 'model' when the forecast has it, else the weighted
  pipeline), target, booked, P(hit target); coverage for this and next quarter with its status.
- fan: months of actual bookings and targets, with the forecast's P10/P50/P90 for the months it
  covers.
- funnels: per pipeline, the stages with reached counts, step conversion, time in stage (median
  and p90) when known, deals lost at each stage and the main lost reasons.
- changes: the open pipeline a week before as_of and now, with what moved in between (new,
  advanced, moved back, won, lost, pushed) — from a dbt waterfall mart when there is one, else
  computed from the deals and stage transitions; pushed needs close-date history.
- attention: stalled deals, the biggest deals at risk and deals pushed repeatedly, with owners.
- quality: the backtest's WAPE by method and the models' hold-out metrics from their cards.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ml.periods import month_of, quarter_of

ALL = "all"
STATUS_ORDER = {"ok": 0, "warn": 1, "error": 2}
# Candidate names of the dbt pipeline-changes (waterfall) mart, newest convention first.
WATERFALL_TABLE = "main.mart_pipeline_waterfall"
BACKTEST_TABLE = "main.backtest_results"
MONTHS_OF_HISTORY = 12
AT_RISK_P_WIN = 0.05        # a deal below this win probability is at risk ...
AT_RISK_BELOW_STAGE = 0.15  # ... and so is one this far below its stage's historical win rate
FEATURE_NAMES = {"amount_reporting": "amount", "pipeline_stage": "stage", "stage_position": "stage position",
                 "owner_win_rate": "owner's win rate", "source_win_rate": "source's win rate",
                 "n_stage_moves": "stage moves", "lead_source": "lead source", "days_in_stage": "days in stage"}


# ---------------------------------------------------------------- small reads

def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, _, name = table.rpartition(".")
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema or "main", name]).fetchone()[0])


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    schema, _, name = table.rpartition(".")
    return [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema or "main", name]).fetchall()]


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def _value(v: Any) -> Any:
    """A plain Python value: None for NaN/NaT, float/int/str/bool/date otherwise."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.to_pydatetime()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    return v


def _records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict]:
    frame = frame if columns is None else frame[[c for c in columns if c in frame.columns]]
    return [{k: _value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _float(v: Any) -> float | None:
    v = _value(v)
    return None if v is None else float(v)


def _missing(reason: str) -> dict:
    return {"available": False, "note": reason}


def _company_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows for whole pipelines: the forecast and coverage may also carry scopes per segment or
    owner (where targets are set for them); those have the column filled."""
    keep = pd.Series(True, index=frame.index)
    for column in ("segment", "owner", "scope_segment", "scope_owner"):
        if column in frame:
            keep &= frame[column].isna() | frame[column].astype(str).isin(["", "all"])
    return frame[keep]


# ---------------------------------------------------------------- as of

def report_as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    """The run's as-of time as the marts state it (forecast, then the pipeline snapshot)."""
    for table in ("main.revenue_forecast", "main.pipeline_coverage", "main.mart_pipeline_snapshot",
                  "main.deal_scores"):
        if _exists(con, table) and "as_of" in _columns(con, table):
            value = con.execute(f"select max(as_of) from {table}").fetchone()[0]
            if value is not None:
                return pd.Timestamp(value).to_pydatetime()
    if not _exists(con, "raw.deals") or not _exists(con, "raw.stage_events"):
        return datetime.combine(datetime.utcnow().date(), datetime.max.time()).replace(microsecond=0)
    from voronka.warehouse_reads import newest_data_time

    return newest_data_time(con)


# ---------------------------------------------------------------- headline

def _forecast(con) -> tuple[pd.DataFrame, str | None]:
    """The forecast rows of the preferred method ('model' when present) and that method."""
    if not _exists(con, "main.revenue_forecast"):
        return pd.DataFrame(), None
    forecast = _company_wide(_df(con, "select * from main.revenue_forecast"))
    if forecast.empty:
        return forecast, None
    methods = forecast["method"].dropna().unique().tolist() if "method" in forecast else []
    method = "model" if "model" in methods else ("weighted_pipeline" if "weighted_pipeline" in methods
                                                 else (methods[0] if methods else None))
    if method is not None:
        chosen = forecast[forecast["method"] == method]
    else:
        chosen = forecast
    return chosen.reset_index(drop=True), method


FORECAST_FIELDS = ["period", "period_grain", "pipeline", "currency", "target", "booked", "expected", "p10",
                   "p50", "p90", "prob_hit_target", "open_deals", "from_open_pipeline", "from_new_pipeline",
                   "method"]
COVERAGE_FIELDS = ["period", "period_grain", "pipeline", "target", "booked", "open_pipeline", "gap",
                   "coverage", "required_coverage", "shortfall", "status"]


def headline(con, as_of: date) -> dict:
    this_q, next_q = quarter_of(as_of).label, quarter_of(as_of, 1).label
    forecast, method = _forecast(con)
    out: dict = {"period": this_q, "next_period": next_q, "method": method}
    if forecast.empty:
        out.update(_missing("main.revenue_forecast is not built yet: run `voronka run`"))
        out["coverage"], out["pipelines"] = [], []
    else:
        rows = forecast[(forecast["period"] == this_q) & (forecast["pipeline"] == ALL)]
        if rows.empty:
            out.update(_missing(f"the forecast has no row for {this_q}"))
        else:
            out.update({"available": True, "note": None,
                        **{k: v for k, v in _records(rows, FORECAST_FIELDS)[0].items()
                           if k not in ("pipeline", "period_grain", "period")}})
            if method == "model":
                full = _company_wide(_df(con, "select * from main.revenue_forecast where period = ? and "
                                              "pipeline = ? and method = 'weighted_pipeline'", [this_q, ALL]))
                out["baseline_p50"] = _float(full["p50"].iloc[0]) if len(full) else None
        per_pipeline = forecast[(forecast["period"] == this_q) & (forecast["pipeline"] != ALL)]
        out["pipelines"] = _records(per_pipeline.sort_values("pipeline"), FORECAST_FIELDS)
    coverage = pd.DataFrame()
    if _exists(con, "main.pipeline_coverage"):
        coverage = _company_wide(_df(con, "select * from main.pipeline_coverage"))
    out["coverage"] = []
    for label in (this_q, next_q):
        row = coverage[(coverage["period"] == label) & (coverage["pipeline"] == ALL)] if len(coverage) else coverage
        if len(row):
            out["coverage"].append(_records(row, COVERAGE_FIELDS)[0])
        else:
            out["coverage"].append({"period": label, "pipeline": ALL, "status": None, "coverage": None,
                                    "missing": True})
    by_pipeline = {}
    if len(coverage):
        for r in _records(coverage[(coverage["period"] == this_q) & (coverage["pipeline"] != ALL)],
                          COVERAGE_FIELDS):
            by_pipeline[r["pipeline"]] = r
    for p in out.get("pipelines", []):
        c = by_pipeline.get(p["pipeline"], {})
        p["coverage"], p["coverage_status"] = c.get("coverage"), c.get("status")
    out["currency"] = (out.get("currency") or _reporting_currency(con))
    return out


def _reporting_currency(con) -> str | None:
    for table, column in (("main.revenue_forecast", "currency"), ("main.mart_pipeline_snapshot", "reporting_currency"),
                          ("main.mart_bookings", "reporting_currency")):
        if _exists(con, table) and column in _columns(con, table):
            value = con.execute(f"select max({column}) from {table}").fetchone()[0]
            if value:
                return str(value)
    return None


# ---------------------------------------------------------------- fan chart

def fan(con, as_of: date, months_back: int = MONTHS_OF_HISTORY) -> dict:
    """Monthly actual bookings and targets (company-wide) with the forecast's fan."""
    if not _exists(con, "main.mart_bookings"):
        return _missing("main.mart_bookings is not built yet")
    first = month_of(as_of, -(months_back - 1)).label
    bookings = _df(con, "select period, won_amount_reporting as actual from main.mart_bookings "
                        "where period_grain = 'month' and pipeline = ? and period >= ?", [ALL, first])
    forecast, method = _forecast(con)
    if len(forecast):
        forecast = forecast[(forecast["period_grain"] == "month") & (forecast["pipeline"] == ALL)]
    last = max([month_of(as_of).label] + forecast.get("period", pd.Series(dtype=str)).tolist())
    targets = pd.DataFrame(columns=["period", "target"])
    if _exists(con, "main.mart_targets"):
        targets = _df(con, "select period, target_amount_reporting as target from main.mart_targets "
                           "where period_grain = 'month' and pipeline = ? and period between ? and ?",
                      [ALL, first, last])
    periods, label, i = [], first, 0
    while label <= last:
        periods.append(label)
        i += 1
        label = month_of(as_of, -(months_back - 1) + i).label
    actual = bookings.set_index("period")["actual"]
    target = targets.set_index("period")["target"] if len(targets) else pd.Series(dtype=float)
    fc = forecast.set_index("period") if len(forecast) else pd.DataFrame()
    current = month_of(as_of).label
    points = []
    for p in periods:
        row = fc.loc[p] if len(fc) and p in fc.index else None
        points.append({
            "period": p,
            "is_current": p == current,
            "is_future": p > current,
            "actual": _float(actual.get(p)) if p <= current else None,
            "target": _float(target.get(p)),
            "p10": None if row is None else _float(row["p10"]),
            "p50": None if row is None else _float(row["p50"]),
            "p90": None if row is None else _float(row["p90"]),
        })
    return {"available": True, "note": None, "method": method, "points": points,
            "has_forecast": any(pt["p50"] is not None for pt in points)}


# ---------------------------------------------------------------- funnel

def _durations(con) -> tuple[pd.DataFrame | None, str | None]:
    """Median and p90 days in stage per (pipeline, stage), Kaplan–Meier with open stays censored:
    from the dbt mart (mart_time_in_stage, breakdown 'all') when it is built, else from the funnel
    mart if it carries them, else from main.stage_durations (written with the deal scores)."""
    if _exists(con, "main.mart_time_in_stage"):
        return _df(con, "select pipeline, stage, median_days_in_stage as median_days, "
                        "p90_days_in_stage as p90_days from main.mart_time_in_stage "
                        "where breakdown = 'all'"), "main.mart_time_in_stage"
    columns = _columns(con, "main.mart_funnel_conversion")
    median = next((c for c in columns if c.startswith("median_days")), None)
    p90 = next((c for c in columns if c.startswith("p90_days")), None)
    if median and p90:
        return _df(con, f"select pipeline, stage, {median} as median_days, {p90} as p90_days "
                        "from main.mart_funnel_conversion"), "main.mart_funnel_conversion"
    if _exists(con, "main.stage_durations"):
        return _df(con, "select pipeline, stage, median_days, p90_days from main.stage_durations"), \
            "main.stage_durations"
    return None, None


def _stage_losses(con) -> tuple[pd.DataFrame | None, str | None]:
    """Lost deals per (pipeline, stage, reason): the dbt mart when built, else counted here from
    the deals lost at as_of and the stage of their last open stay (as lost_here counts them)."""
    if _exists(con, "main.mart_stage_losses"):
        return _df(con, "select pipeline, stage, lost_reason, lost_deals from main.mart_stage_losses "
                        "where lost_deals > 0"), "main.mart_stage_losses"
    lost = _lost_deals(con)
    if lost is None:
        return None, None
    lost = lost.assign(lost_reason=lost["lost_reason"].map(_reason))
    grouped = lost.groupby(["pipeline", "stage", "lost_reason"], dropna=False).size().rename("lost_deals")
    return grouped.reset_index(), "main.int_deals_restated_as_of and main.fct_stage_transitions"


def _lost_deals(con) -> pd.DataFrame | None:
    """Deals lost at as_of with their reason and the stage they were lost at (the last open stay
    begun at or before the loss, as mart_funnel_conversion counts lost_here)."""
    if _exists(con, "main.int_deals_restated_as_of"):
        deals = "select deal_key, pipeline, closed_at_as_of as closed_at, lost_reason_as_of as lost_reason " \
                "from main.int_deals_restated_as_of where status_as_of = 'lost'"
    elif _exists(con, "raw.deals"):
        deals = "select deal_key, pipeline, closed_at, lost_reason from raw.deals where outcome = 'lost'"
    else:
        return None
    if not _exists(con, "main.fct_stage_transitions"):
        return _df(con, f"select pipeline, null as stage, lost_reason from ({deals})")
    return _df(con, f"""
        with lost as ({deals}),
        stays as (
            select t.deal_key, t.pipeline, t.stage,
                   row_number() over (partition by t.deal_key order by t.stay_number desc) as recency
            from main.fct_stage_transitions t
            join lost on lost.deal_key = t.deal_key and lost.pipeline = t.pipeline
            where t.stage_kind = 'open' and t.entered_at <= lost.closed_at
        )
        select lost.deal_key, lost.pipeline, stays.stage, lost.lost_reason
        from lost left join stays on stays.deal_key = lost.deal_key and stays.recency = 1
    """)


def _reason(value) -> str:
    value = _value(value)
    return "(none)" if value is None or str(value).strip() == "" else str(value)


def _created(stages: pd.DataFrame) -> int | None:
    """Deals created in the pipeline: reached / cumulative conversion of any stage (the mart's
    denominator), falling back to the first stage's reached."""
    for r in stages.itertuples():
        if r.cumulative_conversion and not pd.isna(r.cumulative_conversion) and r.reached:
            return int(round(r.reached / r.cumulative_conversion))
    return int(stages["reached"].iloc[0]) if len(stages) else None


def funnels(con, top_reasons: int = 5) -> dict:
    if not _exists(con, "main.mart_funnel_conversion"):
        return _missing("main.mart_funnel_conversion is not built yet")
    funnel = _df(con, "select * from main.mart_funnel_conversion order by pipeline, stage_order, stage")
    durations, durations_source = _durations(con)
    funnel = funnel.drop(columns=[c for c in ("median_days", "p90_days") if c in funnel])
    if durations is not None:
        funnel = funnel.merge(durations, on=["pipeline", "stage"], how="left")
    else:
        funnel = funnel.assign(median_days=None, p90_days=None)
    kinds = pd.DataFrame(columns=["pipeline", "stage", "kind"])
    if _exists(con, "main.stg_crm__pipeline_stages"):
        kinds = _df(con, "select pipeline, stage, stage_kind as kind from main.stg_crm__pipeline_stages")
    elif _exists(con, "raw.pipeline_stages"):
        kinds = _df(con, "select pipeline, stage, kind from raw.pipeline_stages")
    funnel = funnel.merge(kinds, on=["pipeline", "stage"], how="left")
    losses, losses_source = _stage_losses(con)
    pipelines = []
    for pipeline, stages in funnel.groupby("pipeline", sort=True):
        stages = stages.sort_values(["stage_order", "stage"])
        first_reached = int(stages["reached"].iloc[0]) if len(stages) else 0
        won_rows = stages[stages["kind"] == "won"]
        lost_here = losses[losses["pipeline"] == pipeline] if losses is not None else None
        rows = []
        for s in _records(stages):
            s["drop_off"] = (s["lost_here"] / s["reached"]) if s.get("reached") else None
            # the '(stage unknown)' row (deals lost at no known stage) has lost_here only
            s["reached_share"] = (s["reached"] / first_reached) if first_reached and s.get("reached") is not None else None
            s["top_reason"], s["top_reason_deals"] = None, None
            if lost_here is not None and s.get("lost_here"):
                at_stage = lost_here[lost_here["stage"] == s["stage"]] \
                    .sort_values(["lost_deals", "lost_reason"], ascending=[False, True])
                if len(at_stage):
                    s["top_reason"] = str(at_stage["lost_reason"].iloc[0])
                    s["top_reason_deals"] = int(at_stage["lost_deals"].iloc[0])
            rows.append(s)
        reasons, lost_total = [], None
        if lost_here is not None:
            counts = lost_here.groupby("lost_reason")["lost_deals"].sum().sort_values(ascending=False, kind="stable")
            lost_total = int(counts.sum())
            for reason, n in counts.head(top_reasons).items():
                reasons.append({"reason": str(reason), "deals": int(n), "share": n / lost_total})
            rest = int(counts.iloc[top_reasons:].sum())
            if rest:
                reasons.append({"reason": None, "deals": rest, "share": rest / lost_total, "other": True})
        pipelines.append({
            "pipeline": pipeline,
            "stages": rows,
            "created": _created(stages),
            "won": int(won_rows["reached"].iloc[0]) if len(won_rows) else None,
            "lost": lost_total,
            # closed, but neither won nor lost (a closed stage of unknown outcome); older marts lack it
            "closed_unknown": (int(stages["closed_unknown_deals"].iloc[0])
                               if "closed_unknown_deals" in stages and len(stages) else None),
            "lost_reasons": reasons,
        })
    return {"available": True, "note": None, "pipelines": pipelines,
            "durations_source": durations_source,
            "durations_note": None if durations_source else "time in stage is not available yet",
            "reasons_source": losses_source}


# ---------------------------------------------------------------- what changed

def _close_date_history(con) -> pd.DataFrame | None:
    """Each change of a deal's expected close date with the previous value; None when no deal has
    more than one recorded value (one export gives no history)."""
    if not _exists(con, "raw.close_date_history"):
        return None
    history = _df(con, """
        select deal_key, changed_at, expected_close_date,
               lag(expected_close_date) over (partition by deal_key order by changed_at) as previous_close_date
        from raw.close_date_history
    """)
    if history.empty or history["previous_close_date"].isna().all():
        return None
    return history


def _pushes(history: pd.DataFrame) -> pd.DataFrame:
    """Changes that moved the expected close into a later month (DESIGN: out of its period)."""
    h = history.dropna(subset=["previous_close_date", "expected_close_date"]).copy()
    new, old = pd.to_datetime(h["expected_close_date"]), pd.to_datetime(h["previous_close_date"])
    later_month = (new.dt.year * 12 + new.dt.month) > (old.dt.year * 12 + old.dt.month)
    return h[later_month.to_numpy()]


FLOWS = ("new", "reopened", "amount_changed", "won", "lost", "closed_unknown")
MOVES = ("advanced", "moved_back")


def _changes_from_mart(con) -> dict:
    """The dbt waterfall (main.mart_pipeline_waterfall), all pipelines: opening + flows = closing
    for the whole open pipeline; pushed and pulled in for the deals due in its close period."""
    frame = _df(con, f"select * from {WATERFALL_TABLE} where pipeline = ? order by step_order", [ALL])
    if frame.empty:
        return _missing(f"{WATERFALL_TABLE} has no rows")
    rows = {r["change_type"]: r for r in _records(frame)}
    first = next(iter(rows.values()))
    window = {"from": first.get("from_at"), "to": first.get("to_at"),
              "days": None if first.get("from_at") is None else (first["to_at"] - first["from_at"]).days}

    def step(name, deals="deals", amount="amount_reporting"):
        r = rows.get(name, {})
        return {"change": name.replace("_", " "), "deals": r.get(deals), "amount": _float(r.get(amount))}

    steps = [step(n) for n in FLOWS if n in rows and (n in ("new", "won", "lost") or rows[n].get("deals"))]
    period = first.get("close_period")
    movements = [step(n) for n in MOVES if n in rows]
    for name in ("pushed", "pulled_in"):
        if name in rows:
            movements.append({**step(name, "period_deals", "period_amount_reporting"),
                              "change": f"{name.replace('_', ' ')} ({'out of' if name == 'pushed' else 'into'} {period})"})
    pushed_note = None
    if _close_date_history(con) is None:
        # One export per deal: no close date has changed yet, so zero pushes would mislead.
        pushed_note = "pushed needs close-date history: it appears after the second export of the same deals"
        movements = [m if not m["change"].startswith(("pushed", "pulled")) else {**m, "deals": None, "amount": None}
                     for m in movements]
    return {"available": True, "source": WATERFALL_TABLE, "note": None, "window": window,
            "start": _float(rows.get("opening", {}).get("amount_reporting")),
            "end": _float(rows.get("closing", {}).get("amount_reporting")),
            "deals_at_start": rows.get("opening", {}).get("deals"),
            "deals_now": rows.get("closing", {}).get("deals"),
            "steps": steps, "movements": movements, "pushed_note": pushed_note, "close_period": period}


def changes(con, as_of: datetime, days: int = 7) -> dict:
    start = as_of - timedelta(days=days)
    window = {"from": start, "to": as_of, "days": days}
    if _exists(con, WATERFALL_TABLE):
        return _changes_from_mart(con)
    needed = ["main.int_deals_restated_as_of", "main.fct_stage_transitions", "main.ml_deals"]
    if not all(_exists(con, t) for t in needed):
        return {**_missing("pipeline changes are not available yet (needs the dbt deals and transitions "
                           "models)"), "window": window}
    params = [start, start, as_of, as_of]
    # amounts at the as-of date's rate, converted by dbt (ml_deals)
    deals = _df(con, f"""
        select d.deal_key, d.pipeline, d.created_at, d.closed_at_as_of, d.status_as_of,
               m.amount_reporting,
               d.created_at <= ? and (d.closed_at_as_of is null or d.closed_at_as_of > ?) as open_at_start,
               d.closed_at_as_of is null as open_now,
               d.created_at > ? - interval {days} day as is_new,
               d.closed_at_as_of > ? - interval {days} day as closed_in_window
        from main.int_deals_restated_as_of d left join main.ml_deals m on m.deal_key = d.deal_key
    """, params)
    moves = _df(con, """
        select t.deal_key, t.is_backward, n.stage_kind as next_kind
        from main.fct_stage_transitions t
        join main.fct_stage_transitions n on n.deal_key = t.deal_key and n.stay_number = t.stay_number + 1
        where t.exited_at > ? and t.exited_at <= ? and t.stage_kind = 'open'
    """, [start, as_of])
    amount = deals.set_index("deal_key")["amount_reporting"].fillna(0.0)

    def total(mask) -> float:
        return float(deals.loc[mask, "amount_reporting"].fillna(0.0).sum())

    start_mask = deals["open_at_start"].fillna(False).astype(bool)
    end_mask = deals["open_now"].fillna(False).astype(bool)
    new_mask = deals["is_new"].fillna(False).astype(bool)
    won_mask = deals["closed_in_window"].fillna(False).astype(bool) & (deals["status_as_of"] == "won")
    lost_mask = deals["closed_in_window"].fillna(False).astype(bool) & (deals["status_as_of"] == "lost")
    start_total, end_total = total(start_mask), total(end_mask)
    new_total, won_total, lost_total = total(new_mask), total(won_mask), total(lost_mask)
    # Deals created and closed inside the week pass through: they are new and won/lost at once.
    steps = [
        {"change": "new", "deals": int(new_mask.sum()), "amount": new_total},
        {"change": "won", "deals": int(won_mask.sum()), "amount": -won_total},
        {"change": "lost", "deals": int(lost_mask.sum()), "amount": -lost_total},
    ]
    other = end_total - (start_total + new_total - won_total - lost_total)
    if abs(other) > 0.5:
        steps.append({"change": "other", "deals": None, "amount": other})
    forward = moves[(~moves["is_backward"].astype(bool)) & (moves["next_kind"] == "open")]
    backward = moves[moves["is_backward"].astype(bool) & (moves["next_kind"] == "open")]
    movements = [
        {"change": "advanced", "deals": int(forward["deal_key"].nunique()),
         "amount": float(amount.reindex(forward["deal_key"].unique()).fillna(0).sum())},
        {"change": "moved back", "deals": int(backward["deal_key"].nunique()),
         "amount": float(amount.reindex(backward["deal_key"].unique()).fillna(0).sum())},
    ]
    history = _close_date_history(con)
    pushed_note = None
    if history is None:
        pushed_note = "pushed needs close-date history: it appears after the second export of the same deals"
        movements.append({"change": "pushed", "deals": None, "amount": None})
    else:
        pushes = _pushes(history)
        in_window = pushes[(pushes["changed_at"] > start) & (pushes["changed_at"] <= as_of)]
        open_keys = set(deals.loc[end_mask, "deal_key"])
        keys = [k for k in in_window["deal_key"].unique() if k in open_keys]
        movements.append({"change": "pushed (to a later month)", "deals": len(keys),
                          "amount": float(amount.reindex(keys).fillna(0).sum())})
    return {"available": True, "source": "computed from int_deals_restated_as_of and fct_stage_transitions",
            "note": None, "window": window, "start": start_total, "end": end_total, "steps": steps,
            "movements": movements, "pushed_note": pushed_note,
            "deals_at_start": int(start_mask.sum()), "deals_now": int(end_mask.sum())}


# ---------------------------------------------------------------- deals needing attention

def drivers(text) -> list[dict]:
    """'segment −38%; owner +18%' (deal_scores.top_drivers) -> [{feature, effect, negative}]."""
    out = []
    for part in str(text or "").split(";"):
        name, _, effect = part.strip().rpartition(" ")
        if not name:
            continue
        out.append({"feature": FEATURE_NAMES.get(name, name.replace("_", " ")), "effect": effect,
                    "negative": effect.startswith(("−", "-"))})
    return out


DEAL_FIELDS = ["deal_key", "title", "pipeline", "stage", "owner", "amount_reporting", "p_win",
               "p_win_baseline", "expected_close_date", "days_in_stage", "stage_p90_days", "top_drivers"]


def attention(con, top_n: int = 8) -> dict:
    if not _exists(con, "main.deal_scores"):
        return _missing("main.deal_scores is not built yet (the models have not scored the open deals)")
    titles = ", s.title" if _exists(con, "main.mart_pipeline_snapshot") else ", null as title"
    join = "left join main.mart_pipeline_snapshot s on s.deal_key = d.deal_key" \
        if _exists(con, "main.mart_pipeline_snapshot") else ""
    scores = _df(con, f"select d.* {titles} from main.deal_scores d {join}")
    stalled = scores[scores["is_stalled"].fillna(False).astype(bool)] \
        .sort_values(["amount_reporting", "deal_key"], ascending=[False, True])
    risky_mask = (scores["p_win"] < AT_RISK_P_WIN) | (scores["p_win"] < scores["p_win_baseline"] - AT_RISK_BELOW_STAGE)
    risky = scores[risky_mask.fillna(False)].copy()
    risky["at_risk_amount"] = risky["amount_reporting"] * (1 - risky["p_win"])
    risky = risky.sort_values(["at_risk_amount", "deal_key"], ascending=[False, True])
    out = {
        "available": True, "note": None,
        "open_deals": int(len(scores)),
        "stalled_total": int(len(stalled)),
        "stalled_amount": float(stalled["amount_reporting"].fillna(0).sum()),
        "stalled": _records(stalled.head(top_n), DEAL_FIELDS),
        "at_risk_total": int(len(risky)),
        "at_risk_amount": float(risky["amount_reporting"].fillna(0).sum()),
        "at_risk": [{**r, "drivers": drivers(r.get("top_drivers"))}
                    for r in _records(risky.head(top_n), DEAL_FIELDS + ["at_risk_amount"])],
        "at_risk_rule": {"p_win_below": AT_RISK_P_WIN, "below_stage_by": AT_RISK_BELOW_STAGE},
    }
    history = _close_date_history(con)
    if history is None:
        out["pushed"], out["pushed_note"] = None, ("needs close-date history: it appears after the second "
                                                   "export of the same deals")
    else:
        pushes = _pushes(history)
        counts = pushes.groupby("deal_key").agg(pushes=("deal_key", "size"),
                                                first_close=("previous_close_date", "min"))
        repeated = scores.merge(counts[counts["pushes"] >= 2], left_on="deal_key", right_index=True)
        repeated = repeated.sort_values(["pushes", "amount_reporting"], ascending=[False, False])
        out["pushed"] = _records(repeated.head(top_n), DEAL_FIELDS + ["pushes", "first_close"])
        out["pushed_total"], out["pushed_note"] = int(len(repeated)), None
    return out


# ---------------------------------------------------------------- model quality

# What leadership reads first: this quarter as forecast at its start; then shorter horizons.
BACKTEST_HORIZONS = ("quarter+0", "month+0", "quarter+1", "month+1")


def _backtest_methods(frame: pd.DataFrame) -> list[dict]:
    from ml.backtest import (
        forecast_metrics,  # scikit-learn and lifelines load only when needed
    )

    rows = []
    for method, g in frame.groupby("method", sort=False):
        if "wape" in g:
            if g["wape"].isna().all():
                continue
            row = {"method": method, "wape": _float(g["wape"].mean()),
                   "origins": int(g["n_origins"].sum()) if "n_origins" in g else int(len(g))}
            for extra in ("bias", "interval_coverage"):
                row[extra] = _float(g[extra].mean()) if extra in g else None
        elif {"expected", "p10", "p50", "p90", "actual"} <= set(g.columns):
            g = g.dropna(subset=["expected", "p50", "actual"])
            if float(g["actual"].sum()) <= 0:
                continue
            # The backtest's own definitions (WAPE of the P50, bias of the mean).
            m = forecast_metrics(g["actual"], g["expected"], g["p10"], g["p50"], g["p90"])
            row = {"method": method, "origins": m["n_origins"], "wape": m["wape"], "bias": m["bias"],
                   "interval_coverage": m["interval_coverage"]}
        else:
            continue
        rows.append(row)
    return sorted(rows, key=lambda r: r["wape"])


def _backtest(con) -> dict:
    """WAPE (and bias, interval coverage) per method over the backtest's origins, all pipelines,
    for the first horizon of BACKTEST_HORIZONS that has booked revenue to compare with: from the
    table's metrics when it carries them, else from its per-origin rows (P50 and mean vs actual)."""
    if not _exists(con, BACKTEST_TABLE):
        return _missing(f"the backtest has not run yet ({BACKTEST_TABLE})")
    frame = _company_wide(_df(con, f"select * from {BACKTEST_TABLE}"))
    if "pipeline" in frame:
        frame = frame[frame["pipeline"] == ALL]
    if frame.empty or "method" not in frame:
        return _missing(f"{BACKTEST_TABLE} has no rows for all pipelines yet")
    if "horizon" in frame:
        horizons = [h for h in BACKTEST_HORIZONS if (frame["horizon"] == h).any()]
        horizons += [h for h in frame["horizon"].dropna().unique() if h not in horizons]
        candidates = [(h, frame[frame["horizon"] == h]) for h in horizons]
    else:
        candidates = [(None, frame)]
    for horizon, rows in candidates:
        methods = _backtest_methods(rows)
        if methods:
            by = {m["method"]: m for m in methods}
            return {"available": True, "note": None, "methods": methods, "horizon": horizon,
                    "model_wape": (by.get("model") or {}).get("wape"),
                    "weighted_pipeline_wape": (by.get("weighted_pipeline") or {}).get("wape")}
    return _missing(f"{BACKTEST_TABLE} has no origin whose periods have bookings to compare with yet")


def _model_cards(models_dir) -> dict:
    """models_dir: the workspace's ModelStore (only its own versions), or a path (every version)."""
    if models_dir is None:
        return _missing("no model store given")
    from ml.registry import ModelStore

    store = models_dir if isinstance(models_dir, ModelStore) else ModelStore(models_dir)
    out = {"available": False, "note": None}
    for name in ("win_model", "time_to_close_model"):
        # The promoted version; else the newest one, marked: the deals are then scored by the
        # stage baseline, and the card says by how much the model fell short.
        version, promoted = store.current_version(name), True
        if version is None:
            versions = store.versions(name)
            if not versions:
                continue
            version, promoted = versions[-1], False
        card = store.card(name, version)
        metrics, base = card.get("metrics", {}), card.get("baseline_metrics", {})
        out[name] = {"version": version, "promoted": promoted,
                     "gate": (card.get("gate") or {}).get("reason"),
                     "metrics": {k: _value(v) for k, v in metrics.items()},
                     "baseline": {k: _value(v) for k, v in base.items()},
                     "rows": card.get("rows", {}), "training_window": card.get("training_window", {}),
                     "reliability": card.get("curves", {}).get("reliability")}
        out["available"] = True
    if not out["available"]:
        out["note"] = f"no trained model in {store.root}"
    return out


def quality(con, models_dir: Path | str | None) -> dict:
    return {"backtest": _backtest(con), "models": _model_cards(models_dir)}


# ---------------------------------------------------------------- everything

def report_data(con: duckdb.DuckDBPyConnection, models_dir: Path | str | None = None,
                as_of: datetime | None = None, top_n: int = 8, change_days: int = 7) -> dict:
    """Everything the report shows, as plain Python values (see the module doc)."""
    as_of = as_of or report_as_of(con)
    day = as_of.date()
    data = {
        "as_of": as_of,
        "currency": _reporting_currency(con),
        "headline": headline(con, day),
        "fan": fan(con, day),
        "funnel": funnels(con),
        "changes": changes(con, as_of, change_days),
        "attention": attention(con, top_n),
        "quality": quality(con, models_dir),
    }
    data["currency"] = data["currency"] or data["headline"].get("currency") or ""
    data["missing"] = [name for name in ("headline", "fan", "funnel", "changes", "attention")
                       if not data[name].get("available")]
    return data
