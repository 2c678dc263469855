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


def test_inbox_sensor_does_not_rerun_files_already_loaded(tmp_path, capsys):
    """`voronka ui` on a loaded workspace: the sensor's first tick (empty cursor) sees files the
    loader already took (same sha256) and starts nothing; a new file, or a loaded one whose
    content changed, starts a run naming only that file."""
    stages = tmp_path / "stages.csv"
    stages.write_text(STAGES, encoding="utf-8")
    assert main(["ingest", str(stages), "--workspace", str(tmp_path / "ws"), "--quiet"]) == 0
    capsys.readouterr()
    resource = WorkspaceResource(home=str(tmp_path / "ws"))
    inbox = tmp_path / "ws" / "inbox"
    sensor = build_inbox_sensor(daily_refresh)
    with dg.build_sensor_context(resources={"workspace": resource}) as context:
        skipped = sensor(context)
        assert isinstance(skipped, dg.SkipReason), skipped
        # A copy under another name, and the same file touched: still the same content.
        (inbox / "stages (1).csv").write_bytes(stages.read_bytes())
        (inbox / "stages.csv").write_text(STAGES, encoding="utf-8")
        assert isinstance(sensor(context), dg.SkipReason)
        (inbox / "targets.csv").write_text("period,scope_pipeline,scope_owner,scope_segment,target_amount,"
                                           "currency\n2026-05,,,,100,USD\n", encoding="utf-8")
        request = sensor(context)
        assert isinstance(request, dg.RunRequest) and request.tags["voronka/new_files"] == "targets.csv"
        (inbox / "stages.csv").write_text(STAGES + "Sales,Paused,4,open,0.2\n", encoding="utf-8")
        changed = sensor(context)
        assert isinstance(changed, dg.RunRequest) and changed.tags["voronka/new_files"] == "stages.csv"
        assert changed.run_key != request.run_key


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


# A stand-in for `dagster dev`: records how it was started, then waits. Like dagster dev it stops
# cleanly on a KeyboardInterrupt (Python's own SIGINT handler, absent when the process started with
# SIGINT ignored) and maps SIGTERM to whatever SIGINT does; the stop is recorded.
FAKE_DAGSTER = """#!{python}
import json, os, signal, sys, time
record = os.environ["FAKE_DAGSTER_RECORD"]
signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))  # as dagster's setup_interrupt_handlers
if os.environ.get("FAKE_DAGSTER_IGNORES_SIGINT"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
with open(record, "w") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid(), "VORONKA_HOME": os.environ["VORONKA_HOME"],
                         "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}}) + "\\n")
try:
    while True:
        time.sleep(0.1)
except KeyboardInterrupt:
    with open(record, "a") as fh:
        fh.write("stopped by SIGINT\\n")
"""


def _start_ui(tmp_path, *options, **extra_env):
    import os
    import subprocess
    import sys
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "dagster"
    fake.write_text(FAKE_DAGSTER.format(python=sys.executable), encoding="utf-8")
    fake.chmod(0o755)
    record = tmp_path / "record.txt"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "FAKE_DAGSTER_RECORD": str(record), **extra_env}
    # Started as a shell starts a background job (`voronka ui &`): with SIGINT ignored, which the
    # children it starts would inherit.
    command = [sys.executable, "-m", "voronka.cli", "ui", "--workspace", str(tmp_path / "ws"), "--port", "3999",
               *options]
    ui = subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command], env=env,
                          stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (record.exists() and record.read_text().strip()):
        assert time.monotonic() < deadline and ui.poll() is None, ui.stderr.read() if ui.poll() is not None else ""
        time.sleep(0.1)
    return ui, record


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_voronka_ui_forwards_sigterm_to_dagster_dev_waits_and_exits(tmp_path):
    import signal
    import subprocess

    ui, record = _start_ui(tmp_path)
    started = json.loads(record.read_text().splitlines()[0])
    assert started["argv"] == ["dev", "-m", "orchestration.definitions", "--port", "3999"]
    assert started["VORONKA_HOME"] == str(tmp_path / "ws")
    assert started["DAGSTER_HOME"] == str(tmp_path / "ws" / "dagster_home")
    ui.send_signal(signal.SIGTERM)
    try:
        code = ui.wait(timeout=20)
    except subprocess.TimeoutExpired:
        ui.kill()
        raise AssertionError("voronka ui did not stop on SIGTERM")
    assert code == 0
    assert record.read_text().splitlines()[1:] == ["stopped by SIGINT"]  # forwarded once, as SIGINT
    assert not _alive(started["pid"])
    assert "Traceback" not in ui.stderr.read()


def test_voronka_ui_kills_a_dagster_dev_that_does_not_stop(tmp_path):
    import signal

    ui, record = _start_ui(tmp_path, "--stop-timeout", "1", FAKE_DAGSTER_IGNORES_SIGINT="1")
    started = json.loads(record.read_text().splitlines()[0])
    ui.send_signal(signal.SIGINT)
    assert ui.wait(timeout=20) == 0
    assert not _alive(started["pid"])
    assert "did not stop within 1 s: killed" in ui.stderr.read()


def test_the_funnel_table_says_how_many_closed_deals_have_an_unknown_outcome(capsys):
    from voronka.cli import _print_closed_unknown

    rows = [{"pipeline": "Лизинг", "stage": "Заявка", "closed_unknown_deals": 7},
            {"pipeline": "Лизинг", "stage": "Договор", "closed_unknown_deals": 7},
            {"pipeline": "SaaS", "stage": "Lead", "closed_unknown_deals": 0}]
    _print_closed_unknown(rows, None)
    out = capsys.readouterr().out
    assert "Лизинг: 7." in out and "SaaS" not in out and "stage_outcomes" in out
    by_owner = [{**rows[0], "owner": "Анна", "closed_unknown_deals": 2},
                {**rows[0], "owner": "Олег", "closed_unknown_deals": 5}]
    _print_closed_unknown(by_owner, "owner")
    assert "Лизинг / Анна: 2, Лизинг / Олег: 5." in capsys.readouterr().out
    _print_closed_unknown(rows[2:], None)
    assert capsys.readouterr().out == ""
