"""Forecast, coverage, funnel-health checks and alerts: thin assets over ml/ and
voronka/alerts/."""

from datetime import datetime

import dagster as dg
import pandas as pd

from ml import health
from ml.coverage import NO_TARGET
from ml.coverage import pipeline_coverage as compute_coverage
from ml.features import DEAL_COLUMNS, prepare
from ml.forecast import (
    ALL,
    FORECAST_COLUMNS,
    model_forecast,
    score_forecast_inputs,
    weighted_pipeline_forecast,
)
from ml.periods import current_and_next
from orchestration.assets.models import (
    TIME_TO_CLOSE,
    WIN_MODEL,
    _load_in_use,
    deal_scores,
)
from orchestration.resources import WorkspaceResource
from voronka import progress
from voronka.alerts import notify_check, notify_coverage
from voronka.alerts.checks import (
    EXPORT_FRESHNESS,
    MISSING_FX,
    NEW_PIPELINE,
    PROB_HIT_TARGET,
    STALLED_DEALS,
)
from voronka.warehouse_reads import (
    canonical_frames,
    deals_without_fx,
    read_table,
    replace_table,
    table_exists,
)

MARTS = [dg.AssetKey("mart_pipeline_snapshot"), dg.AssetKey("mart_bookings"), dg.AssetKey("mart_targets"),
         dg.AssetKey("mart_scoped_targets")]
RAW_DEALS = dg.AssetKey(["raw", "deals"])
# The revenue_forecast steps its bar counts; each note names the step running.
FORECAST_STEPS = ("as-of timeline", "model inputs", "Monte Carlo (model)", "Monte Carlo (weighted pipeline)")
CREATION_COLUMNS = ["pipeline", "created_last_28d", "expected_last_28d", "expected_next_28d", "growth_per_year",
                    "rate_cv"]


def _inputs(con) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # The snapshot in a fixed order: the Monte Carlo draws by position (same warehouse, same draws).
    return (con.execute("select * from main.mart_pipeline_snapshot order by deal_key").df(),
            read_table(con, "main.mart_bookings"), read_table(con, "main.mart_targets"))


def _markdown(frame: pd.DataFrame, columns: list[str]) -> str:
    columns = [c for c in columns if c in frame]
    shown = frame[columns].copy()
    for c in shown.select_dtypes("float").columns:
        shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:,.2f}")
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return header + "\n".join("| " + " | ".join(_md_cell(v) for v in row) + " |" for row in shown.itertuples(index=False))


def _md_cell(value) -> str:
    """A table cell of the Dagster UI's markdown: CRM text cannot break the table or add markup."""
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _scoped(con, as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Targets scoped to a segment or an owner, for this and the next month and quarter, and what
    those scopes booked so far: main.mart_scoped_targets (mart_targets holds only company-wide
    ones), converted there as mart_targets and mart_bookings convert."""
    keys = ["period", "pipeline", "segment", "owner"]
    if not table_exists(con, "main.mart_scoped_targets"):
        return (pd.DataFrame(columns=[*keys, "target_amount_reporting"]),
                pd.DataFrame(columns=[*keys, "won_amount_reporting"]))
    scoped = con.execute("select * from main.mart_scoped_targets order by period, pipeline, segment, owner").df()
    scoped = scoped[scoped["period"].isin({p.label for p in current_and_next(as_of.date())})].reset_index(drop=True)
    return scoped[[*keys, "target_amount_reporting"]], scoped[[*keys, "won_amount_reporting"]]


def _model_rows(context, workspace: WorkspaceResource, frames: dict, as_of: datetime, bookings: pd.DataFrame,
                targets: pd.DataFrame, config, bar=progress.OFF) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """(model forecast rows, creation figures); (None, empty) when no model was ever trained —
    the baseline rows are written alone then. `bar` is advanced past the three model steps."""
    store = workspace.workspace.model_store()
    try:
        win, _, win_in_use = _load_in_use(store, WIN_MODEL)
        ttc, _, _ = _load_in_use(store, TIME_TO_CLOSE)
    except dg.Failure as err:
        context.log.warning(f"model forecast skipped: {err.description}")
        bar.update(3, note=FORECAST_STEPS[3])
        return None, pd.DataFrame(columns=CREATION_COLUMNS)
    timeline = prepare(frames["deals"], frames["stage_events"], frames["pipeline_stages"], cutoff=as_of)
    bar.advance(note=FORECAST_STEPS[1])
    inputs = score_forecast_inputs(timeline, win.model if win_in_use else win.baseline, ttc, as_of,
                                   seed=config.seed)
    bar.advance(note=FORECAST_STEPS[2])
    forecast = model_forecast(inputs.open_deals, inputs.close_given_win, bookings, targets, as_of,
                              config.reporting_currency, new=inputs.new, draws=config.forecast_draws,
                              seed=config.seed, correlation=config.forecast_deal_correlation)
    bar.advance(note=FORECAST_STEPS[3])
    creation = pd.DataFrame([{"pipeline": p, "created_last_28d": f["created_last_28d"],
                              "expected_last_28d": f["expected_last_28d"], "expected_next_28d": f["next_28d"],
                              "growth_per_year": f["growth_per_year"], "rate_cv": inputs.new.rate_cv.get(p)}
                             for p, f in inputs.new.fit.items()], columns=CREATION_COLUMNS)
    if len(creation):
        total = creation[["created_last_28d", "expected_last_28d", "expected_next_28d"]].sum()
        creation = pd.concat([creation, pd.DataFrame([{"pipeline": ALL, **total.to_dict()}])], ignore_index=True)
    return forecast, creation


@dg.asset(group_name="forecast", deps=[*MARTS, deal_scores], owners=["team:data-science"],
          description="Revenue per period (this/next month and quarter) and scope (all, each pipeline; "
                      "segment/owner when they have targets): booked, expected (from the open pipeline "
                      "and from deals not yet created), P10/P50/P90 and P(hit target). Two methods: "
                      "'model' (win model x time to close, Monte Carlo; the default) and "
                      "'weighted_pipeline' (CRM probability x amount; the baseline).")
def revenue_forecast(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    config = workspace.config()
    as_of = workspace.as_of_time()
    with workspace.connect() as con:
        snapshot, bookings, targets = _inputs(con)
        frames = canonical_frames(con, as_of, deal_columns=DEAL_COLUMNS)
        scoped_targets, scoped_bookings = _scoped(con, as_of)
        if len(scoped_targets):
            targets = pd.concat([targets, scoped_targets], ignore_index=True)
            bookings = pd.concat([bookings, scoped_bookings], ignore_index=True)
        with progress.task("revenue forecast", total=len(FORECAST_STEPS), note=FORECAST_STEPS[0]) as bar:
            model, creation = _model_rows(context, workspace, frames, as_of, bookings, targets, config, bar)
            weighted = weighted_pipeline_forecast(
                snapshot, bookings, targets, as_of.date(), config.reporting_currency,
                draws=config.forecast_draws, seed=config.seed)
            bar.advance(note="done")
        forecast = pd.concat([f for f in (model, weighted) if f is not None], ignore_index=True)[FORECAST_COLUMNS]
        forecast.insert(0, "as_of", as_of)
        replace_table(con, "main.revenue_forecast", forecast)
        creation.insert(0, "as_of", as_of)
        replace_table(con, "main.new_pipeline_creation", creation)
    shown = health.preferred_method(forecast)
    quarter = shown[(shown.period_grain == "quarter") & (shown.pipeline == ALL) & shown.segment.isna()
                    & shown.owner.isna()].iloc[0]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(forecast),
        "as_of": str(as_of),
        "method_shown": str(quarter.method),
        "this_quarter": quarter.period,
        "this_quarter_expected": float(quarter.expected),
        "this_quarter_p50": float(quarter.p50),
        "this_quarter_p10_p90": f"{quarter.p10:,.0f} – {quarter.p90:,.0f} {config.reporting_currency}",
        "this_quarter_prob_hit_target": None if pd.isna(quarter.prob_hit_target) else float(quarter.prob_hit_target),
        "forecast": dg.MetadataValue.md(_markdown(forecast, ["period", "pipeline", "segment", "owner", "method",
                                                              "target", "booked", "from_open_pipeline",
                                                              "from_new_pipeline", "expected", "p10", "p50", "p90",
                                                              "prob_hit_target"])),
    })


def _check_result(verdict: health.Health, **extra) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR if verdict.severity == health.ERROR else dg.AssetCheckSeverity.WARN,
        description=verdict.summary,
        metadata={"summary": verdict.summary, **{k: v for k, v in verdict.figures.items() if v is not None},
                  **({"rows": dg.MetadataValue.md(_markdown(verdict.rows, list(verdict.rows.columns)))}
                     if len(verdict.rows) else {}), **extra},
    )


def _prob_hit_verdict(workspace: WorkspaceResource) -> health.Health:
    with workspace.connect() as con:
        forecast = read_table(con, "main.revenue_forecast")
    return health.prob_hit_target(forecast, workspace.config().min_prob_hit_target)


def _new_pipeline_verdict(workspace: WorkspaceResource) -> tuple[health.Health, pd.DataFrame]:
    """(verdict, the creation figures it was judged on)."""
    with workspace.connect() as con:
        forecast = read_table(con, "main.revenue_forecast")
        creation = (read_table(con, "main.new_pipeline_creation")
                    if table_exists(con, "main.new_pipeline_creation") else pd.DataFrame())
    as_of = pd.Timestamp(forecast["as_of"].iloc[0]).date() if len(forecast) else workspace.as_of_time().date()
    _, next_month, _, next_quarter = current_and_next(as_of)
    return health.new_pipeline_need(forecast, creation, [next_month.label, next_quarter.label]), creation


def _stalled_verdict(workspace: WorkspaceResource) -> tuple[health.Health, pd.DataFrame]:
    """(verdict, the deal scores it was judged on)."""
    with workspace.connect() as con:
        scores = read_table(con, "main.deal_scores")
    return health.stalled_share(scores, workspace.config().max_stalled_share), scores


@dg.asset_check(asset=revenue_forecast, name="prob_hit_target_above_floor",
                description="WARN when P(revenue >= target) of this or next month/quarter is below "
                            "min_prob_hit_target; ERROR when the target is above the forecast's P90.")
def prob_hit_target_above_floor(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    return _check_result(_prob_hit_verdict(workspace))


def _missing_fx_verdict(workspace: WorkspaceResource) -> health.Health:
    with workspace.connect() as con:
        by_currency = deals_without_fx(con)
    return health.missing_fx(by_currency, workspace.config().reporting_currency)


@dg.asset_check(asset=revenue_forecast, name="amounts_convert_to_reporting_currency",
                description="ERROR when a deal's amount has no FX rate to the reporting currency (its "
                            "currency has no rate on the day it is converted at): such deals would count as "
                            "nothing in bookings, the pipeline and the forecast. Metadata: the currencies, "
                            "deals and amounts.")
def amounts_convert_to_reporting_currency(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    return _check_result(_missing_fx_verdict(workspace))


@dg.asset_check(asset=revenue_forecast, name="new_pipeline_meets_target_need",
                description="The funnel is drying up: the deals being created bring less than next "
                            "month's/quarter's target still needs beyond the open pipeline. WARN, ERROR "
                            "when the target needs more than twice today's creation rate.")
def new_pipeline_meets_target_need(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    verdict, creation = _new_pipeline_verdict(workspace)
    extra = {}
    if len(creation):
        extra["creation"] = dg.MetadataValue.md(_markdown(creation, CREATION_COLUMNS))
    return _check_result(verdict, **extra)


@dg.asset_check(asset=deal_scores, name="stalled_share_within_limit",
                description="WARN when the share of open deals stalled in their stage (longer than the "
                            "stage's p90) is above max_stalled_share, overall or in a pipeline.")
def stalled_share_within_limit(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    verdict, scores = _stalled_verdict(workspace)
    # astype(bool): an empty table reads as object columns, and indexing by an empty object
    # Series selects columns (none), not rows: KeyError 'pipeline' when no deal is open.
    stages = (scores[scores["is_stalled"].astype(bool)].groupby(["pipeline", "stage"], observed=True).size()
              .sort_values(ascending=False)
              .head(10).rename("stalled_deals").reset_index())
    return _check_result(verdict, most_stalled_stages=dg.MetadataValue.md(
        _markdown(stages, ["pipeline", "stage", "stalled_deals"])) if len(stages) else "none")


def _freshness(workspace: WorkspaceResource) -> health.Health:
    """Each source's newest export against the wall clock: freshness is about the real world,
    unlike everything else, which is judged at the run's as-of time."""
    from voronka.warehouse_reads import newest_export_by_source

    with workspace.connect() as con:
        newest = newest_export_by_source(con)
    return health.export_freshness(newest, datetime.utcnow(), workspace.config().max_export_age_days,
                                   replay_as_of=workspace.as_of)


@dg.asset_check(asset=RAW_DEALS, name="exports_are_fresh",
                description="WARN when a source system's newest export (exported_at, else its newest "
                            "deal) is older than max_export_age_days by the wall clock at run time. A "
                            "replay (--as-of) analyses old data on purpose and never fails.")
def exports_are_fresh(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    return _check_result(_freshness(workspace))


@dg.asset(group_name="alerts", deps=[RAW_DEALS], owners=["team:data-engineering"],
          description="Alerts the configured sinks when a CRM's exports stop arriving (no export for "
                      "max_export_age_days), reminds while they stay late and says when they are back.")
def export_freshness_alerts(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    verdict = _freshness(workspace)
    if workspace.as_of:  # a replay: old data on purpose, and its wall clock says nothing
        return dg.MaterializeResult(metadata={"decision": "none", "reason": verdict.summary})
    if "export_freshness" not in workspace.config().alert_on:
        return dg.MaterializeResult(metadata={"decision": "none", "reason": "off (not in alert_on)"})
    rows = verdict.rows.astype({"newest_export": str}).to_dict("records")
    late = [r for r in rows if r["status"] == health.WARN]
    if not verdict.passed and verdict.severity == health.ERROR:  # nothing loaded at all
        late = [{"source_system": "exports", "newest_export": None}]
    outcome = notify_check(EXPORT_FRESHNESS, late, datetime.utcnow().replace(microsecond=0),
                           workspace.config().alert_settings(), workspace.workspace.alerts, workspace.workspace.resolve)
    return _alert_result(context, "export freshness", outcome, summary=verdict.summary,
                         stale_sources=int(verdict.figures.get("stale_sources", 0)))


@dg.asset(group_name="forecast", deps=MARTS, owners=["team:data-science"],
          description="Open pipeline expected to close in each period / remaining target, "
                      "against the required coverage.")
def pipeline_coverage(workspace: WorkspaceResource) -> dg.MaterializeResult:
    config = workspace.config()
    as_of = workspace.as_of_time()
    with workspace.connect() as con:
        snapshot, bookings, targets = _inputs(con)
        coverage = compute_coverage(snapshot, bookings, targets, as_of.date(), config.reporting_currency,
                                    required=config.required_coverage, critical=config.critical_coverage)
        coverage.insert(0, "as_of", as_of)
        replace_table(con, "main.pipeline_coverage", coverage)
        targets = "loaded" if len(coverage) else _no_coverage_reason(con)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(coverage),
        "targets": targets,
        "periods_below_required": int((coverage.status != "ok").sum()),
        "coverage": dg.MetadataValue.md(_markdown(coverage, ["period", "pipeline", "coverage",
                                                              "required_coverage", "status"])),
    })


def _no_coverage_reason(con) -> str:
    """Why main.pipeline_coverage has no row: no target at all, or none for the current periods."""
    if not con.execute("select count(*) from raw.targets").fetchone()[0]:
        return NO_TARGET
    return "no target for this or next month or quarter: nothing to check"


def coverage_detail(con, coverage: pd.DataFrame, as_of) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Where the short scopes are short: (stages, segments) — see ml.health."""
    from ml.forecast import assign_period
    from ml.periods import parse_period

    short = coverage[coverage.status != "ok"]
    if short.empty:
        return pd.DataFrame(), pd.DataFrame()
    snapshot = read_table(con, "main.mart_pipeline_snapshot")
    # Only the rows the year's window can count (the open-stage stays that had not ended before it,
    # the deals won inside it), not every stay and deal of the warehouse (~20 s at 1M deals).
    as_of = pd.Timestamp(as_of)
    start = (as_of - pd.Timedelta(days=health.WINDOW_DAYS)).to_pydatetime()
    stays = con.execute("select pipeline, stage, stage_kind, entered_at, exited_at "
                        "from main.fct_stage_transitions where stage_kind = 'open' "
                        "and (exited_at is null or exited_at > ?)", [start]).df()
    typical = health.typical_stage_counts(stays, as_of)
    won = con.execute("select pipeline, segment, amount_reporting, closed_at from main.ml_deals "
                      "where outcome = 'won' and closed_at > ? and closed_at <= ?",
                      [start, as_of.to_pydatetime()]).df()
    stages, segments = [], []
    for r in short.itertuples():
        scope = f"{r.period} {r.pipeline}"
        deals = snapshot if r.pipeline == ALL else snapshot[snapshot["pipeline"] == r.pipeline]
        st = health.stage_shortfall(deals, typical, r.pipeline)
        stages.append(st.assign(scope=scope))
        due = assign_period(deals["expected_close_date"], parse_period(r.period), pd.Timestamp(as_of).date())
        in_period = deals[due]
        w = won if r.pipeline == ALL else won[won["pipeline"] == r.pipeline]
        sg = health.segment_shortfall(in_period, w, r.required_coverage * r.gap, as_of)
        segments.append(sg.assign(scope=scope))
    return (pd.concat(stages, ignore_index=True) if stages else pd.DataFrame(),
            pd.concat(segments, ignore_index=True) if segments else pd.DataFrame())


@dg.asset_check(asset=pipeline_coverage, name="coverage_meets_requirement",
                description="WARN below the required coverage, ERROR below the critical coverage. "
                            "Metadata: the short scopes, their shortfall in money, and the stages and "
                            "segments where the pipeline is short.")
def coverage_meets_requirement(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    with workspace.connect() as con:
        coverage = read_table(con, "main.pipeline_coverage")
        if coverage.empty:  # nothing to cover is not a shortfall: the check passes and says why
            summary = _no_coverage_reason(con)
            return dg.AssetCheckResult(passed=True, description=summary,
                                       metadata={"summary": summary, "rows_checked": 0})
        short = coverage[coverage.status != "ok"]
        as_of = coverage["as_of"].iloc[0] if len(coverage) else workspace.as_of_time()
        try:
            stages, segments = coverage_detail(con, coverage, as_of)
        except Exception as err:  # the detail is a help; it never hides the verdict
            stages, segments = pd.DataFrame(), pd.DataFrame()
            dg.get_dagster_logger().warning(f"coverage detail not computed: {err}")
    severity = (dg.AssetCheckSeverity.ERROR if (short.status == "error").any()
                else dg.AssetCheckSeverity.WARN)
    scopes = [f"{r.period} {r.pipeline}" for r in short.itertuples()]
    return dg.AssetCheckResult(
        passed=short.empty,
        severity=severity,
        metadata={
            "rows_checked": len(coverage),
            "rows_below_required": len(short),
            "scopes_short": ", ".join(scopes) if scopes else "none",
            "worst_coverage": float(short.coverage.min()) if len(short) and short.coverage.notna().any() else None,
            "shortfall_total": float(short[short.period_grain == "quarter"].shortfall.sum()),
            "short": dg.MetadataValue.md(_markdown(short, ["period", "pipeline", "target", "booked", "gap",
                                                           "open_pipeline", "coverage", "shortfall", "status"]))
            if len(short) else "none",
            "short_stages": dg.MetadataValue.md(_markdown(stages, ["scope", "pipeline", "stage", "open_deals",
                                                                   "typical_open_deals", "short_deals",
                                                                   "short_amount"]))
            if len(stages) else "none",
            "short_segments": dg.MetadataValue.md(_markdown(segments, ["scope", "segment", "open_pipeline",
                                                                       "share_of_bookings", "needed_pipeline",
                                                                       "short_amount"]))
            if len(segments) else "none",
        },
    )


@dg.asset(group_name="alerts", deps=[pipeline_coverage], owners=["team:revenue-operations"],
          description="Alerts the configured sinks when coverage turns short, reminds while it stays "
                      "short and sends a recovery notice when it is back (state in alerts/state.json).")
def coverage_alerts(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    config = workspace.config()
    if "pipeline_coverage" not in config.alert_on:
        return dg.MaterializeResult(metadata={"decision": "none", "reason": "off (not in alert_on)"})
    with workspace.connect() as con:
        coverage = read_table(con, "main.pipeline_coverage")
    as_of = str(coverage["as_of"].iloc[0]) if len(coverage) else str(workspace.as_of_time())
    rows = coverage.drop(columns=["as_of"]).astype(object)
    rows = rows.where(rows.notna(), None).to_dict("records")
    outcome = notify_coverage(rows, as_of, config.alert_settings(), workspace.workspace.alerts,
                              workspace.workspace.resolve)
    return _alert_result(context, "coverage", outcome, scopes_below_target=len(outcome.decision.scopes))


@dg.asset(group_name="alerts", deps=[revenue_forecast, deal_scores], owners=["team:revenue-operations"],
          description="Alerts the configured sinks when a funnel-health check turns bad — P(hit target) "
                      "below the floor, new deals short of what the target needs, too many stalled "
                      "deals, deal amounts with no FX rate — reminds while it stays bad and says when "
                      "it recovers (one alert kind each).")
def forecast_health_alerts(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    config = workspace.config()
    stalled, _ = _stalled_verdict(workspace)
    limit = stalled.figures.get("max_stalled_share", config.max_stalled_share)
    over = stalled.rows[stalled.rows["stalled_share"] > limit].assign(currency=config.reporting_currency) \
        if len(stalled.rows) else stalled.rows
    failing = {PROB_HIT_TARGET: _prob_hit_verdict(workspace).rows, NEW_PIPELINE: _new_pipeline_verdict(workspace)[0].rows,
               STALLED_DEALS: over, MISSING_FX: _missing_fx_verdict(workspace).rows}
    with workspace.connect() as con:
        forecast = read_table(con, "main.revenue_forecast")
    as_of = str(forecast["as_of"].iloc[0]) if len(forecast) else str(workspace.as_of_time())
    metadata = {}
    for check, rows in failing.items():
        if check.kind not in config.alert_on:
            metadata[check.kind] = "off (not in alert_on)"
            continue
        records = rows.astype(object).where(rows.notna(), None).to_dict("records") if len(rows) else []
        outcome = notify_check(check, records, as_of, config.alert_settings(), workspace.workspace.alerts,
                               workspace.workspace.resolve)
        _log_outcome(context, check.kind, outcome)
        metadata[check.kind] = (f"{outcome.decision.action}: {outcome.decision.reason}; "
                                f"{outcome.deliveries_ok} delivered, {outcome.deliveries_failed} failed")
    return dg.MaterializeResult(metadata={"as_of": as_of, **metadata})


def _log_outcome(context, name: str, outcome) -> None:
    context.log.info(f"{name} alert: {outcome.decision.action} ({outcome.decision.reason})")
    for d in outcome.deliveries:
        (context.log.info if d.ok else context.log.warning)(
            f"alert to {d.sink}: {'sent' if d.ok else d.detail} ({d.attempts} attempt(s))")
    for warning in outcome.warnings:
        context.log.warning(warning)


def _alert_result(context, name: str, outcome, **extra) -> dg.MaterializeResult:
    """Log what an alert asset decided and delivered; the same as its metadata."""
    _log_outcome(context, name, outcome)
    return dg.MaterializeResult(metadata={
        "decision": outcome.decision.action,
        "reason": outcome.decision.reason,
        "as_of": outcome.decision.as_of,
        **extra,
        "alert_sent": outcome.notice is not None,
        "severity": outcome.notice.severity if outcome.notice else "none",
        "deliveries_ok": outcome.deliveries_ok,
        "deliveries_failed": outcome.deliveries_failed,
    })
