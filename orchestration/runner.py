"""Run the daily job from the command line, stage by stage, with progress and timings."""

from __future__ import annotations

import sys
import time
from contextlib import redirect_stdout

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from voronka import progress
from voronka.config import Workspace
from voronka.errors import PipelineError

MODEL_ASSETS = ("win_model", "time_to_close_model")
BACKTEST_ASSETS = ("forecast_backtest",)
FORECAST_ASSETS = ("deal_scores", "revenue_forecast", "pipeline_coverage", "coverage_alerts",
                   "export_freshness_alerts", "forecast_health_alerts", "leadership_report")
# The console shows Voronka's own lines only: a failed step is reported by run_stage in one line
# (a failed model gate is an outcome, not an error, and Dagster would print its stack trace);
# every event stays in the workspace's Dagster instance for `voronka ui`.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def stage_selections(defs: dg.Definitions, train: bool = True) -> list[tuple[str, str, list[dg.AssetKey]]]:
    """(stage name, job, asset keys) in order; the model stage only when `train`."""
    keys = list(defs.resolve_asset_graph().get_all_asset_keys())
    ingest = [k for k in keys if k.path[0] == "raw"]
    models = [dg.AssetKey(n) for n in MODEL_ASSETS]
    backtest = [dg.AssetKey(n) for n in BACKTEST_ASSETS]
    downstream = [dg.AssetKey(n) for n in FORECAST_ASSETS]
    dbt = [k for k in keys if k not in ingest + models + backtest + downstream]
    stages = [("ingest", "daily_refresh", ingest), ("dbt build", "daily_refresh", dbt)]
    if train:  # the backtest reruns with the (weekly) retraining, not every day
        stages.append(("model training (win probability, time to close) and forecast backtest",
                       "weekly_retrain", models + backtest))
    stages.append(("scores, forecast, coverage checks, alerts and report", "daily_refresh", downstream))
    return stages


# A failed model gate keeps the previous model (or the stage baseline) in use; later stages run.
GATE_CHECKS = {"model_quality_gate"}


def run_stage(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[dg.AssetKey],
              name: str, job_name: str = "daily_refresh") -> tuple[list[str], list[str]]:
    """Materialise one stage; returns (checks that did not pass, blocking ones among them);
    raises PipelineError when an asset failed for another reason than a blocking check."""
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(run_config=QUIET_LOGS, instance=instance,
                                    asset_selection=keys, raise_on_error=False)
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed_checks = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in failed]
    blocking = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in failed
                if getattr(e, "blocking", False)]
    # A blocking check that fails stops what depends on it in this run; that is a check result,
    # not a broken pipeline.
    if not result.success and not blocking:
        raise PipelineError(f"stage '{name}' failed: {_first_failure(result)}")
    return failed_checks, blocking


def _first_failure(result) -> str:
    """The first failed step's error in one line ('what went wrong', not 'step X failed')."""
    failure = next((e for e in result.all_events if e.is_step_failure), None) \
        or next((e for e in result.all_events if e.is_failure), None)
    if failure is None:
        return "see `voronka ui`"
    error = getattr(failure.step_failure_data, "error", None) if failure.is_step_failure else None
    while error is not None and error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause  # Dagster wraps what the asset raised
    text = (f"{failure.step_key}: {error.message}" if error is not None
            else failure.message or "").strip()
    return text.splitlines()[0] if text else "see `voronka ui`"


def workspace_instance(workspace: Workspace) -> dg.DagsterInstance:
    """The workspace's persistent Dagster instance, so `voronka ui` shows the CLI's runs."""
    workspace.create()
    dagster_yaml = workspace.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        # DuckDB has one writer: runs started from the UI queue one at a time.
        dagster_yaml.write_text("concurrency:\n  runs:\n    max_concurrent_runs: 1\n"
                                "telemetry:\n  enabled: false\n", encoding="utf-8")
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(workspace.dagster_home)))


def run_pipeline(workspace: Workspace, as_of: str | None = None, quiet: bool = False,
                 retrain: bool = False) -> dict:
    """Materialise the daily job stage by stage (ingest → dbt → [models] → scores, forecast,
    checks and alerts). Models are trained when asked or when none is in use yet."""
    from orchestration.definitions import build_definitions

    instance = workspace_instance(workspace)
    defs = build_definitions(str(workspace.home), as_of=as_of)
    store = workspace.model_store()
    train = retrain or any(store.current_version(n) is None for n in MODEL_ASSETS)
    stages = stage_selections(defs, train=train)
    timings, checks_failed = {}, []
    log_path = workspace.home / "logs" / "last_run.log"
    log_path.parent.mkdir(exist_ok=True)
    # The bars of the long assets (ingest, dbt, training, backtest, Monte Carlo), on a terminal.
    with progress.shown(quiet):
        for i, (name, job_name, keys) in enumerate(stages, 1):
            if not quiet:
                print(f"[{i}/{len(stages)}] {name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            # dbt's log lines go to the workspace log, so stdout carries only Voronka's output.
            with open(log_path, "w" if i == 1 else "a", encoding="utf-8") as log, redirect_stdout(log):
                try:
                    failed, blocking = run_stage(defs, instance, keys, name, job_name)
                finally:
                    progress.finish()  # a bar a failed asset left open ends before the next line
            checks_failed += failed
            timings[name] = round(time.perf_counter() - started, 2)
            if not quiet:
                print(f"[{i}/{len(stages)}] {name} done in {timings[name]:.1f} s", file=sys.stderr, flush=True)
            # Stages are separate Dagster runs, so a blocking check does not stop the next stage by
            # itself: stop here, as one daily_refresh run would, rather than build on bad data.
            stopping = [c for c in blocking if c.rpartition(":")[2] not in GATE_CHECKS]
            if stopping:
                raise PipelineError(f"stage '{name}': blocking check failed ({', '.join(stopping)}); "
                                    f"later stages were not run (details: `voronka ui`, {log_path})")
    from ml.registry import usage_notes

    return {"timings": timings, "checks_failed": checks_failed, "model_notes": usage_notes(store)}
