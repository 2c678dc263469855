"""The command-line runner runs each stage as its own Dagster run, so it must stop after a stage
whose blocking check failed (as one daily_refresh run would), except for the model quality gate,
which only keeps the previous model (or the stage baseline) in use."""

from __future__ import annotations

import dagster as dg
import pytest

import orchestration.definitions as definitions
from orchestration import runner
from voronka.config import Workspace

STAGES = [("ingest", "daily_refresh", []), ("dbt build", "daily_refresh", []),
          ("model training", "weekly_retrain", []), ("scores and forecast", "daily_refresh", [])]


@pytest.fixture
def stages_run(monkeypatch, tmp_path):
    """Replaces the graph with four named stages; returns (the list of stages run, a setter for
    what each stage's checks return)."""
    ran: list[str] = []
    outcomes: dict[str, tuple[list[str], list[str]]] = {}
    monkeypatch.setattr(definitions, "build_definitions", lambda home, as_of=None: object())
    monkeypatch.setattr(runner, "stage_selections", lambda defs, train=True: STAGES)

    def fake_run_stage(defs, instance, keys, name, job_name="daily_refresh"):
        ran.append(name)
        return outcomes.get(name, ([], []))

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    return ran, outcomes, Workspace(tmp_path / "home")


def test_all_stages_run_and_non_blocking_failures_are_reported(stages_run):
    ran, outcomes, workspace = stages_run
    outcomes["dbt build"] = (["mart_funnel_conversion:freshness"], [])
    outcome = runner.run_pipeline(workspace, quiet=True, retrain=True)
    assert ran == [s[0] for s in STAGES]
    assert outcome["checks_failed"] == ["mart_funnel_conversion:freshness"]
    assert set(outcome["timings"]) == {s[0] for s in STAGES}


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
    assert ran == [s[0] for s in STAGES]
    assert outcome["checks_failed"] == [gate]


def test_a_failing_step_is_one_line_naming_its_error_and_nothing_else_is_printed(tmp_path, capsys):
    @dg.asset
    def broken_asset():
        raise ValueError("the export has no deals")

    defs = dg.Definitions(assets=[broken_asset], jobs=[dg.define_asset_job("daily_refresh")],
                          executor=dg.in_process_executor)
    with pytest.raises(runner.PipelineError) as err:
        runner.run_stage(defs, dg.DagsterInstance.ephemeral(), [dg.AssetKey("broken_asset")], "ingest")
    assert str(err.value) == "stage 'ingest' failed: broken_asset: ValueError: the export has no deals"
    out, printed = capsys.readouterr()
    assert out == "" and "Traceback" not in printed and "Stack Trace" not in printed and "ERROR" not in printed
