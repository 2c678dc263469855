"""The one Definitions: every asset, check, job, schedule, sensor and resource of Voronka."""


import dagster as dg

from orchestration.assets.dbt import (
    DBT_EXECUTABLE,
    VoronkaDbtCliResource,
    voronka_dbt,
    voronka_dbt_models,
)
from orchestration.assets.forecast import (
    amounts_convert_to_reporting_currency,
    coverage_alerts,
    coverage_meets_requirement,
    export_freshness_alerts,
    exports_are_fresh,
    forecast_health_alerts,
    new_pipeline_meets_target_need,
    pipeline_coverage,
    prob_hit_target_above_floor,
    revenue_forecast,
    stalled_share_within_limit,
)
from orchestration.assets.ingest import every_row_accounted_for, raw_tables
from orchestration.assets.models import deal_scores, forecast_backtest, trained_models
from orchestration.assets.quality import raw_quality_checks
from orchestration.assets.report import leadership_report
from orchestration.resources import WorkspaceResource
from orchestration.sensors import build_inbox_sensor

ALL_ASSETS = [raw_tables, voronka_dbt_models, trained_models, deal_scores, revenue_forecast,
              pipeline_coverage, coverage_alerts, export_freshness_alerts, forecast_health_alerts, leadership_report,
              forecast_backtest]
ALL_CHECKS = [every_row_accounted_for, coverage_meets_requirement, *raw_quality_checks]
ALL_CHECKS += [prob_hit_target_above_floor, new_pipeline_meets_target_need, stalled_share_within_limit,
               exports_are_fresh, amounts_convert_to_reporting_currency]

# The stages, as asset selections that together cover the whole graph (tests/orchestration/test_runner.py
# checks that every asset is in exactly one). A new asset goes into the stage of its group.
INGEST = dg.AssetSelection.groups("ingest")
TRANSFORM = dg.AssetSelection.assets(voronka_dbt_models)
MODEL_TRAINING = dg.AssetSelection.assets(trained_models, forecast_backtest)
SCORE_AND_FORECAST = dg.AssetSelection.assets(deal_scores) | dg.AssetSelection.groups("forecast", "alerts", "report")

# One job per stage: `voronka run` runs them one after another (orchestration/runner.py).
ingest_job = dg.define_asset_job(
    "ingest", selection=INGEST,
    description="Read the inbox's new export files into raw.* (checks: every row accounted for, quality).")
transform_job = dg.define_asset_job(
    "transform", selection=TRANSFORM,
    description="dbt build: staging → intermediate → marts and their data tests (a test that does not "
                "pass is an observation on its model).")
train_models_job = dg.define_asset_job(
    "train_models", selection=MODEL_TRAINING,
    description="Train the win and time-to-close models (quality-gated) and rerun the forecast backtest.")
score_and_forecast_job = dg.define_asset_job(
    "score_and_forecast", selection=SCORE_AND_FORECAST,
    description="Score open deals → forecast → coverage and funnel-health checks → alerts → report.")
STAGE_JOBS = [ingest_job, transform_job, train_models_job, score_and_forecast_job]

# The scheduled jobs are unions of the stages.
daily_refresh = dg.define_asset_job(
    "daily_refresh",
    selection=INGEST | TRANSFORM | SCORE_AND_FORECAST,
    description="Ingest what is new → dbt build → score open deals → forecast → coverage checks → alerts.",
)
weekly_retrain = dg.define_asset_job(
    "weekly_retrain",
    selection=MODEL_TRAINING | dg.AssetSelection.assets(deal_scores),
    description="Retrain the win and time-to-close models (quality-gated), rescore open deals and "
                "rerun the forecast backtest.",
)
daily_schedule = dg.ScheduleDefinition(
    job=daily_refresh, cron_schedule="0 6 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
weekly_schedule = dg.ScheduleDefinition(
    job=weekly_retrain, cron_schedule="0 3 * * 1", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def build_definitions(home: str | dg.EnvVar, as_of: str | None = None) -> dg.Definitions:
    """Definitions bound to a workspace; the CLI and tests pass a path, `dagster dev` the env."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[*STAGE_JOBS, daily_refresh, weekly_retrain],
        schedules=[daily_schedule, weekly_schedule],
        sensors=[build_inbox_sensor(daily_refresh)],
        resources={
            "workspace": WorkspaceResource(home=home, as_of=as_of),
            "dbt": VoronkaDbtCliResource(project_dir=voronka_dbt, dbt_executable=DBT_EXECUTABLE),
        },
        # DuckDB has one writer at a time, so steps run one after another in one process.
        executor=dg.in_process_executor,
    )


defs = build_definitions(dg.EnvVar("VORONKA_HOME"))
