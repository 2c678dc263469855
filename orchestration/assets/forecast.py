"""Forecast, coverage and alerts: thin assets over ml/ and orchestration/alerts/."""


import dagster as dg
import pandas as pd

from ml.coverage import pipeline_coverage as compute_coverage
from ml.forecast import weighted_pipeline_forecast
from orchestration.alerts import notify_coverage
from orchestration.resources import WorkspaceResource
from orchestration.warehouse_queries import read_table, replace_table

MARTS = [dg.AssetKey("mart_pipeline_snapshot"), dg.AssetKey("mart_bookings"), dg.AssetKey("mart_targets")]


def _inputs(con) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (read_table(con, "main.mart_pipeline_snapshot"), read_table(con, "main.mart_bookings"),
            read_table(con, "main.mart_targets"))


def _markdown(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[columns].copy()
    for c in shown.select_dtypes("float").columns:
        shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else f"{v:,.2f}")
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return header + "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False))


@dg.asset(group_name="forecast", deps=MARTS,
          description="Revenue per period (this/next month and quarter) and pipeline: booked, "
                      "expected, P10/P50/P90 and P(hit target). Method: weighted pipeline (baseline).")
def revenue_forecast(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    config = workspace.config()
    as_of = workspace.as_of_time()
    with workspace.connect() as con:
        snapshot, bookings, targets = _inputs(con)
        forecast = weighted_pipeline_forecast(
            snapshot, bookings, targets, as_of.date(), config.reporting_currency,
            draws=config.forecast_draws, seed=config.seed)
        forecast.insert(0, "as_of", as_of)
        replace_table(con, "main.revenue_forecast", forecast)
    quarter = forecast[(forecast.period_grain == "quarter") & (forecast.pipeline == "all")].iloc[0]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(forecast),
        "as_of": str(as_of),
        "this_quarter": quarter.period,
        "this_quarter_p50": float(quarter.p50),
        "this_quarter_p10_p90": f"{quarter.p10:,.0f} – {quarter.p90:,.0f} {config.reporting_currency}",
        "forecast": dg.MetadataValue.md(_markdown(forecast, ["period", "pipeline", "target", "booked",
                                                              "expected", "p10", "p50", "p90"])),
    })


@dg.asset(group_name="forecast", deps=MARTS,
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
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(coverage),
        "periods_below_required": int((coverage.status != "ok").sum()),
        "coverage": dg.MetadataValue.md(_markdown(coverage, ["period", "pipeline", "coverage",
                                                              "required_coverage", "status"])),
    })


@dg.asset_check(asset=pipeline_coverage, name="coverage_meets_requirement",
                description="WARN below the required coverage, ERROR below the critical coverage.")
def coverage_meets_requirement(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    with workspace.connect(read_only=True) as con:
        coverage = read_table(con, "main.pipeline_coverage")
    short = coverage[coverage.status != "ok"]
    severity = (dg.AssetCheckSeverity.ERROR if (short.status == "error").any()
                else dg.AssetCheckSeverity.WARN)
    return dg.AssetCheckResult(
        passed=short.empty,
        severity=severity,
        metadata={
            "rows_checked": len(coverage),
            "rows_below_required": len(short),
            "worst_coverage": float(short.coverage.min()) if len(short) and short.coverage.notna().any() else None,
            "shortfall_total": float(short[short.period_grain == "quarter"].shortfall.sum()),
            "short": dg.MetadataValue.md(_markdown(short, ["period", "pipeline", "coverage", "shortfall", "status"]))
            if len(short) else "none",
        },
    )


@dg.asset(group_name="alerts", deps=[pipeline_coverage],
          description="Alerts the configured sinks when coverage turns short, reminds while it stays "
                      "short and sends a recovery notice when it is back (state in alerts/state.json).")
def coverage_alerts(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    config = workspace.config()
    with workspace.connect(read_only=True) as con:
        coverage = read_table(con, "main.pipeline_coverage")
    as_of = str(coverage["as_of"].iloc[0]) if len(coverage) else str(workspace.as_of_time())
    rows = coverage.drop(columns=["as_of"]).astype(object)
    rows = rows.where(rows.notna(), None).to_dict("records")
    outcome = notify_coverage(rows, as_of, config.alert_settings(), workspace.workspace.alerts,
                              workspace.workspace.resolve)
    context.log.info(f"coverage alert: {outcome.decision.action} ({outcome.decision.reason})")
    for d in outcome.deliveries:
        (context.log.info if d.ok else context.log.warning)(
            f"alert to {d.sink}: {'sent' if d.ok else d.detail} ({d.attempts} attempt(s))")
    for warning in outcome.warnings:
        context.log.warning(warning)
    return dg.MaterializeResult(metadata={
        "decision": outcome.decision.action,
        "reason": outcome.decision.reason,
        "as_of": outcome.decision.as_of,
        "scopes_below_target": len(outcome.decision.scopes),
        "alert_sent": outcome.notice is not None,
        "severity": outcome.notice.severity if outcome.notice else "none",
        "deliveries_ok": outcome.deliveries_ok,
        "deliveries_failed": outcome.deliveries_failed,
    })
