"""The CLI's ingest command, the inbox sensor and the Definitions as `dagster dev` loads them."""

from __future__ import annotations

import json

import dagster as dg

from orchestration.definitions import build_definitions, daily_refresh
from orchestration.resources import WorkspaceResource
from orchestration.sensors import build_inbox_sensor
from voronka.cli import main

STAGES = "pipeline,stage,stage_order,kind,crm_probability\nSales,New,1,open,0.1\nSales,Won,2,won,1\nSales,Lost,3,lost,0\n"


def test_ingest_prints_the_per_file_summary_and_a_line_per_refused_file(tmp_path, capsys):
    good = tmp_path / "stages.csv"
    good.write_text(STAGES, encoding="utf-8")
    bad = tmp_path / "notes.csv"
    bad.write_text("hello;world\n1;2\n", encoding="utf-8")
    ws = tmp_path / "ws"
    code = main(["ingest", str(good), str(bad), "--workspace", str(ws), "--format", "json", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    rows = json.loads(out)
    assert rows == [{"file": "stages.csv", "source_system": "canonical", "rows_read": 3, "rows_loaded": 3,
                     "rows_quarantined": 0, "flagged": None, "deals": 0, "stage_events": 0, "stage_events_derived": 0,
                     "deals_missing": 0, "deals_deleted": 0}]
    refused = [line for line in err.splitlines() if "refused" in line]
    assert len(refused) == 1 and "notes.csv" in refused[0]
    assert (ws / "inbox" / "stages.csv").exists()
    # The same file again is a no-op and not an error.
    assert main(["ingest", str(good), "--workspace", str(ws), "--format", "json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_missing_file_and_a_bad_date_are_one_line_errors(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "nope.csv"), "--workspace", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"voronka: error: no such file: {tmp_path / 'nope.csv'}"
    assert main(["run", "--as-of", "last tuesday", "--workspace", str(tmp_path)]) == 1
    assert "--as-of: not a date" in capsys.readouterr().err


def test_inbox_sensor_requests_a_run_only_for_new_or_changed_files(tmp_path):
    resource = WorkspaceResource(home=str(tmp_path))
    resource.workspace.create()
    sensor = build_inbox_sensor(daily_refresh)
    with dg.build_sensor_context(resources={"workspace": resource}) as context:
        assert isinstance(sensor(context), dg.SkipReason)
        (tmp_path / "inbox" / "deals.csv").write_text("a\n", encoding="utf-8")
        first = sensor(context)
        assert isinstance(first, dg.RunRequest)
        context.update_cursor(context.cursor)
        assert isinstance(sensor(context), dg.SkipReason)
        (tmp_path / "inbox" / "deals.csv").write_text("a\nb\n", encoding="utf-8")
        second = sensor(context)
        assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key


def test_the_definitions_list_the_whole_graph(tmp_path):
    defs = build_definitions(str(tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw/deals", "raw/stage_events", "fct_stage_transitions", "mart_funnel_conversion",
            "mart_pipeline_snapshot", "mart_bookings", "mart_targets", "revenue_forecast",
            "pipeline_coverage", "coverage_alerts"} <= keys
    assert defs.resolve_job_def("daily_refresh") is not None
    assert defs.resolve_schedule_def("daily_refresh_schedule").cron_schedule == "0 6 * * *"
    assert defs.resolve_sensor_def("inbox_sensor") is not None
    dg.Definitions.validate_loadable(defs)
