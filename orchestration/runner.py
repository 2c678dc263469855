"""Run the pipeline from the command line, one stage job after another, with progress and timings."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager, redirect_stdout

import dagster as dg

from voronka import progress
from voronka.config import Workspace
from voronka.errors import PipelineError

MODEL_ASSETS = ("win_model", "time_to_close_model")
# (job of orchestration/definitions.py, what the console calls it), in order; the jobs' asset
# selections together are the whole graph.
STAGES = [
    ("ingest", "ingest"),
    ("transform", "dbt build"),
    ("train_models", "model training (win probability, time to close) and forecast backtest"),
    ("score_and_forecast", "scores, forecast, coverage checks, alerts and report"),
]
TRAINING_JOB = "train_models"
TRANSFORM_JOB = "transform"
# The console shows Voronka's own lines only: a failed step is reported by run_stage in one line
# (a failed model gate is an outcome, not an error, and Dagster would print its stack trace);
# every event stays in the workspace's Dagster instance for `voronka ui`.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def pipeline_stages(train: bool = True) -> list[tuple[str, str]]:
    """(job name, stage name) in order; the model stage only when `train` (the backtest reruns
    with the weekly retraining, not every day)."""
    return [(job, name) for job, name in STAGES if train or job != TRAINING_JOB]


# A failed model gate keeps the previous model (or the stage baseline) in use; later stages run.
GATE_CHECKS = {"model_quality_gate"}


def run_stage(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str,
              name: str) -> tuple[list[str], list[str]]:
    """Run one stage's job; returns (checks that did not pass, blocking ones among them);
    raises PipelineError when an asset failed for another reason than a blocking check."""
    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(run_config=QUIET_LOGS, instance=instance, raise_on_error=False)
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    failed_checks = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in failed]
    failed_checks += _dbt_tests_not_passed(result)
    blocking = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in failed
                if getattr(e, "blocking", False)]
    # A blocking check that fails stops what depends on it in this run; that is a check result,
    # not a broken pipeline.
    if not result.success and not blocking:
        raise PipelineError(f"stage '{name}' failed: {_first_failure(result)}")
    return failed_checks, blocking


def _dbt_tests_not_passed(result) -> list[str]:
    """The dbt tests that warned or failed, as '<model>:<test> (<status>)' (they are observations
    on their models, not asset checks: orchestration/assets/dbt.py says why)."""
    named = []
    for event in result.get_asset_observation_events():
        observation = event.asset_observation_data.asset_observation
        test = observation.metadata.get("dbt_test")
        if test is not None:
            named.append(f"{observation.asset_key.to_user_string()}:{getattr(test, 'value', test)}")
    return sorted(set(named))


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


def current_marts_note(workspace: Workspace, as_of: str | None) -> str | None:
    """Why the dbt build can be skipped (nothing loaded, as_of, reporting currency and dbt project
    unchanged since the last successful build: it would rebuild the same marts), or None."""
    from orchestration.assets.dbt import marts_are_current
    from orchestration.resources import WorkspaceResource

    resource = WorkspaceResource(home=str(workspace.home), as_of=as_of)
    at = resource.as_of_time().strftime("%Y-%m-%d %H:%M:%S")
    currency = resource.config().reporting_currency
    with resource.connect() as con:
        if marts_are_current(con, at, currency):
            return f"nothing new since the last build (as of {at}, {currency}): marts are current"
    return None


def workspace_instance(workspace: Workspace) -> dg.DagsterInstance:
    """The workspace's persistent Dagster instance, so `voronka ui` shows the CLI's runs."""
    workspace.create()
    dagster_yaml = workspace.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        # DuckDB has one writer: runs started from the UI queue one at a time.
        dagster_yaml.write_text("concurrency:\n  runs:\n    max_concurrent_runs: 1\n"
                                "telemetry:\n  enabled: false\n", encoding="utf-8")
    with _dagster_home(workspace.dagster_home):
        return dg.DagsterInstance.get()


@contextmanager
def _dagster_home(path):
    """DAGSTER_HOME names the instance's directory (as for `dagster dev`), for this call only: the
    process may run several workspaces (tests, the benchmark)."""
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(path)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved


def run_pipeline(workspace: Workspace, as_of: str | None = None, quiet: bool = False,
                 retrain: bool = False) -> dict:
    """Run the stage jobs one after another (ingest → transform → [train_models] →
    score_and_forecast). Models are trained when asked or when none is in use yet."""
    from orchestration.definitions import build_definitions

    instance = workspace_instance(workspace)
    defs = build_definitions(str(workspace.home), as_of=as_of)
    store = workspace.model_store()
    train = retrain or any(store.current_version(n) is None for n in MODEL_ASSETS)
    stages = pipeline_stages(train=train)
    timings, checks_failed = {}, []
    log_path = workspace.home / "logs" / "last_run.log"
    log_path.parent.mkdir(exist_ok=True)
    # The bars of the long assets (ingest, dbt, training, backtest, Monte Carlo), on a terminal.
    with progress.shown(quiet):
        for i, (job_name, name) in enumerate(stages, 1):
            started = time.perf_counter()
            # A day with nothing new: the build would make the same marts. Later stages still run:
            # export freshness, alert reminders and the report depend on today, not only on the data.
            if job_name == TRANSFORM_JOB and (note := current_marts_note(workspace, as_of)):
                timings[name] = round(time.perf_counter() - started, 2)
                if not quiet:
                    print(f"[{i}/{len(stages)}] {name} skipped: {note}", file=sys.stderr, flush=True)
                continue
            if not quiet:
                print(f"[{i}/{len(stages)}] {name} ...", file=sys.stderr, flush=True)
            # dbt's log lines go to the workspace log, so stdout carries only Voronka's output.
            with open(log_path, "w" if i == 1 else "a", encoding="utf-8") as log, redirect_stdout(log):
                try:
                    failed, blocking = run_stage(defs, instance, job_name, name)
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
