"""The pipeline sections of the leadership report: funnels, what changed, deals needing attention
(no Dagster).

- funnels: per pipeline, the stages with reached counts, step conversion, time in stage (median
  and p90) when known, deals lost at each stage and the main lost reasons.
- changes: the open pipeline a week before as_of and now, with what moved in between (new,
  advanced, moved back, won, lost, pushed) — from a dbt waterfall mart when there is one, else
  computed from the deals and stage transitions; pushed needs close-date history.
- attention: stalled deals, the biggest deals at risk and deals pushed repeatedly, with owners.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from voronka.report.reads import (
    ALL,
    _columns,
    _df,
    _exists,
    _float,
    _missing,
    _records,
    _value,
)

# Candidate names of the dbt pipeline-changes (waterfall) mart, newest convention first.
WATERFALL_TABLE = "main.mart_pipeline_waterfall"
AT_RISK_P_WIN = 0.05        # a deal below this win probability is at risk ...
AT_RISK_BELOW_STAGE = 0.15  # ... and so is one this far below its stage's historical win rate
FEATURE_NAMES = {"amount_reporting": "amount", "pipeline_stage": "stage", "stage_position": "stage position",
                 "owner_win_rate": "owner's win rate", "source_win_rate": "source's win rate",
                 "n_stage_moves": "stage moves", "lead_source": "lead source", "days_in_stage": "days in stage"}


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
