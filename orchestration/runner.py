"""Run the daily job from the command line, stage by stage, with progress and timings."""

from __future__ import annotations

import sys
import time
from contextlib import redirect_stdout

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from orchestration.config import Workspace

STAGE_NAMES = ("ingest", "dbt build", "forecast, coverage checks and alerts")
FORECAST_ASSETS = ("revenue_forecast", "pipeline_coverage", "coverage_alerts")
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


class PipelineError(RuntimeError):
    """A stage failed; the message names it and the first line of the failure."""


def stage_selections(defs: dg.Definitions) -> list[tuple[str, list[dg.AssetKey]]]:
    keys = list(defs.resolve_asset_graph().get_all_asset_keys())
    ingest = [k for k in keys if k.path[0] == "raw"]
    downstream = [dg.AssetKey(n) for n in FORECAST_ASSETS]
    dbt = [k for k in keys if k not in ingest and k not in downstream]
    return list(zip(STAGE_NAMES, (ingest, dbt, downstream)))


def run_stage(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[dg.AssetKey],
              name: str) -> list[str]:
    """Materialise one stage; returns the checks that did not pass; raises PipelineError."""
    job = defs.resolve_job_def("daily_refresh")
    result = job.execute_in_process(run_config=QUIET_LOGS, instance=instance,
                                    asset_selection=keys, raise_on_error=False)
    if not result.success:
        failure = next((e for e in result.all_events if e.is_failure), None)
        detail = (failure.message or "") if failure is not None else "see `voronka ui`"
        raise PipelineError(f"stage '{name}' failed: {detail.strip().splitlines()[0] if detail.strip() else ''}")
    return [f"{e.asset_key.to_user_string()}:{e.check_name}"
            for e in result.get_asset_check_evaluations() if not e.passed]


def workspace_instance(workspace: Workspace) -> dg.DagsterInstance:
    """The workspace's persistent Dagster instance, so `voronka ui` shows the CLI's runs."""
    workspace.create()
    dagster_yaml = workspace.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        # DuckDB has one writer: runs started from the UI queue one at a time.
        dagster_yaml.write_text("concurrency:\n  runs:\n    max_concurrent_runs: 1\n"
                                "telemetry:\n  enabled: false\n", encoding="utf-8")
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(workspace.dagster_home)))


def run_pipeline(workspace: Workspace, as_of: str | None = None, quiet: bool = False) -> dict:
    """Materialise the daily job stage by stage (ingest → dbt → forecast, checks and alerts)."""
    from orchestration.definitions import build_definitions

    instance = workspace_instance(workspace)
    defs = build_definitions(str(workspace.home), as_of=as_of)
    stages = stage_selections(defs)
    timings, checks_failed = {}, []
    log_path = workspace.home / "logs" / "last_run.log"
    log_path.parent.mkdir(exist_ok=True)
    for i, (name, keys) in enumerate(stages, 1):
        if not quiet:
            print(f"[{i}/{len(stages)}] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        # dbt's log lines go to the workspace log, so stdout carries only Voronka's output.
        with open(log_path, "w" if i == 1 else "a", encoding="utf-8") as log, redirect_stdout(log):
            checks_failed += run_stage(defs, instance, keys, name)
        timings[name] = round(time.perf_counter() - started, 2)
        if not quiet:
            print(f"[{i}/{len(stages)}] {name} done in {timings[name]:.1f} s", file=sys.stderr, flush=True)
    return {"timings": timings, "checks_failed": checks_failed}
