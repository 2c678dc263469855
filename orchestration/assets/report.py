"""The leadership report: a thin asset over voronka/report (report_data → HTML file)."""

import dagster as dg

from orchestration.assets import models
from orchestration.assets.dbt import voronka_dbt_models
from orchestration.assets.forecast import pipeline_coverage, revenue_forecast
from orchestration.assets.models import deal_scores
from orchestration.resources import WorkspaceResource
from voronka.report.data import report_data
from voronka.report.render import render_report, write_report
from voronka.report.summary import funnel_markdown, headline_summary

MARTS = [dg.AssetKey(name) for name in ("mart_funnel_conversion", "fct_stage_transitions", "mart_bookings",
                                        "mart_targets", "mart_pipeline_snapshot")]
# Read when the dbt project has them (time in stage, losses by reason, the weekly waterfall) and
# the weekly backtest's results: lineage only, the report says "not available yet" without them.
OPTIONAL = [dg.AssetKey(name) for name in ("mart_time_in_stage", "mart_stage_losses", "mart_pipeline_waterfall")
            if dg.AssetKey(name) in voronka_dbt_models.keys]
OPTIONAL += [getattr(models, "forecast_backtest")] if hasattr(models, "forecast_backtest") else []


@dg.asset(
    group_name="report",
    owners=["team:revenue-operations"],
    deps=[revenue_forecast, pipeline_coverage, deal_scores, *MARTS, *OPTIONAL],
    kinds={"html"},
    description="The leadership report: one self-contained HTML file (headline forecast and coverage, "
                "forecast fan chart, funnel per pipeline, what changed this week, deals that need "
                "attention, model quality), written to <workspace>/reports/voronka_report.html and a "
                "dated copy. Sections whose marts are not built yet say so.",
)
def leadership_report(context: dg.AssetExecutionContext, workspace: WorkspaceResource) -> dg.MaterializeResult:
    with workspace.connect() as con:
        data = report_data(con, model_store=workspace.workspace.model_store())
    latest, dated = write_report(render_report(data), workspace.workspace.reports, data["as_of"])
    context.log.info(f"leadership report written to {latest}")
    summary = {k: v for k, v in headline_summary(data).items() if v is not None}
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(latest)),
        "dated_copy": dg.MetadataValue.path(str(dated)) if dated else "none",
        **summary,
        "funnel": dg.MetadataValue.md(funnel_markdown(data)),
    })
