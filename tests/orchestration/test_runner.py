"""The command-line runner runs each stage as its own Dagster run, so it must stop after a stage
whose blocking check failed (as one daily_refresh run would), except for the model quality gate,
which only keeps the previous model (or the stage baseline) in use."""

from __future__ import annotations

import os

import dagster as dg
import pytest

import orchestration.definitions as definitions
from orchestration import runner
from voronka.config import Workspace

STAGES = [("ingest", "ingest"), ("transform", "dbt build"), ("train_models", "model training"),
          ("score_and_forecast", "scores and forecast")]


@pytest.fixture
def stages_run(monkeypatch, tmp_path):
    """Replaces the graph with four named stages; returns (the list of stages run, a setter for
    what each stage's checks return)."""
    ran: list[str] = []
    outcomes: dict[str, tuple[list[str], list[str]]] = {}
    monkeypatch.setattr(definitions, "build_definitions", lambda home, as_of=None: object())
    monkeypatch.setattr(runner, "STAGES", STAGES)

    def fake_run_stage(defs, instance, job_name, name):
        ran.append(name)
        return outcomes.get(name, ([], []))

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    monkeypatch.setattr(runner, "current_marts_note", lambda workspace, as_of: None)
    return ran, outcomes, Workspace(tmp_path / "home")


def test_all_stages_run_and_non_blocking_failures_are_reported(stages_run):
    ran, outcomes, workspace = stages_run
    outcomes["dbt build"] = (["mart_funnel_conversion:freshness"], [])
    outcome = runner.run_pipeline(workspace, quiet=True, retrain=True)
    assert ran == [s[1] for s in STAGES]
    assert outcome["checks_failed"] == ["mart_funnel_conversion:freshness"]
    assert set(outcome["timings"]) == {s[1] for s in STAGES}


def test_blocking_raw_check_stops_before_dbt(stages_run):
    ran, outcomes, workspace = stages_run
    failed = "raw/deals:every_row_accounted_for"
    outcomes["ingest"] = ([failed], [failed])
    with pytest.raises(runner.PipelineError) as err:
        runner.run_pipeline(workspace, quiet=True, retrain=True)
    assert ran == ["ingest"]
    assert "stage 'ingest'" in str(err.value) and failed in str(err.value)


def test_failed_model_gate_does_not_stop_scoring(stages_run):
    ran, outcomes, workspace = stages_run
    gate = "win_model:model_quality_gate"
    outcomes["model training"] = ([gate], [gate])
    outcome = runner.run_pipeline(workspace, quiet=True, retrain=True)
    assert ran == [s[1] for s in STAGES]
    assert outcome["checks_failed"] == [gate]


def test_a_failing_step_is_one_line_naming_its_error_and_nothing_else_is_printed(tmp_path, capsys):
    @dg.asset
    def broken_asset():
        raise ValueError("the export has no deals")

    defs = dg.Definitions(assets=[broken_asset], jobs=[dg.define_asset_job("ingest")],
                          executor=dg.in_process_executor)
    with pytest.raises(runner.PipelineError) as err:
        runner.run_stage(defs, dg.DagsterInstance.ephemeral(), "ingest", "ingest")
    assert str(err.value) == "stage 'ingest' failed: broken_asset: ValueError: the export has no deals"
    out, printed = capsys.readouterr()
    assert out == "" and "Traceback" not in printed and "Stack Trace" not in printed and "ERROR" not in printed


def test_a_day_with_nothing_new_skips_the_dbt_build_and_says_so(stages_run, monkeypatch, capsys):
    ran, _, workspace = stages_run
    monkeypatch.setattr(runner, "current_marts_note", lambda workspace, as_of: "nothing new")
    outcome = runner.run_pipeline(workspace, quiet=False, retrain=True)
    # Scoring, checks and alerts still run: export freshness and reminders depend on today.
    assert ran == ["ingest", "model training", "scores and forecast"]
    assert "[2/4] dbt build skipped: nothing new" in capsys.readouterr().err
    assert "dbt build" in outcome["timings"]


def test_without_training_the_model_stage_is_left_out():
    assert [job for job, _ in runner.pipeline_stages(train=False)] == ["ingest", "transform", "score_and_forecast"]
    assert [job for job, _ in runner.pipeline_stages(train=True)] == [
        "ingest", "transform", "train_models", "score_and_forecast"]


def test_the_stage_jobs_cover_the_whole_graph_once_and_compose_the_scheduled_jobs(tmp_path):
    """Every asset is in exactly one stage job (a new asset whose group no stage selects fails
    here), the runner runs those jobs in graph order, and daily_refresh/weekly_retrain are their unions."""
    defs = definitions.build_definitions(str(tmp_path))
    graph = defs.resolve_asset_graph()
    everything = set(graph.get_all_asset_keys())
    stage_keys = {job.name: set(defs.resolve_job_def(job.name).asset_layer.selected_asset_keys)
                  for job in definitions.STAGE_JOBS}
    assert [job for job, _ in runner.STAGES] == list(stage_keys)
    assert set.union(*stage_keys.values()) == everything
    assert sum(len(keys) for keys in stage_keys.values()) == len(everything)  # no asset in two stages
    assert dg.AssetKey(["raw", "deals"]) in stage_keys["ingest"]
    assert dg.AssetKey("fct_stage_transitions") in stage_keys["transform"]
    assert {dg.AssetKey("win_model"), dg.AssetKey("forecast_backtest")} <= stage_keys["train_models"]
    assert {dg.AssetKey("deal_scores"), dg.AssetKey("revenue_forecast"), dg.AssetKey("leadership_report")} \
        <= stage_keys["score_and_forecast"]
    # A stage reads only what earlier stages (or itself) make.
    made: set = set()
    for job, keys in stage_keys.items():
        upstream = {parent for key in keys for parent in graph.get(key).parent_keys}
        assert upstream <= made | keys, (job, upstream - made - keys)
        made |= keys
    daily = set(defs.resolve_job_def("daily_refresh").asset_layer.selected_asset_keys)
    weekly = set(defs.resolve_job_def("weekly_retrain").asset_layer.selected_asset_keys)
    assert daily == everything - stage_keys["train_models"]
    assert weekly == stage_keys["train_models"] | {dg.AssetKey("deal_scores")}


def test_the_workspace_instance_is_persistent_and_leaves_the_environment_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "/somewhere/else")
    workspace = Workspace(tmp_path / "home")
    instance = runner.workspace_instance(workspace)
    assert instance.is_persistent and instance.root_directory == str(workspace.dagster_home)
    assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1  # its dagster.yaml
    assert os.environ["DAGSTER_HOME"] == "/somewhere/else"
