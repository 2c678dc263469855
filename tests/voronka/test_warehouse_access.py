"""One way to open the warehouse in a run, and read commands while another process holds it.

The holder is a real second process (DuckDB's lock is per process): it opens the warehouse
read-write, as a `voronka run` step does, says so on stdout, and keeps it for a while."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ml.coverage import COVERAGE_COLUMNS, NO_TARGET
from orchestration.assets.forecast import coverage_meets_requirement
from orchestration.resources import WorkspaceResource
from orchestration.sensors import build_inbox_sensor
from voronka import warehouse_access
from voronka.cli import EXIT_BUSY, main
from voronka.config import Workspace
from voronka.ingest.warehouse import ensure_raw_schema
from voronka.warehouse_reads import replace_table

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    """A warehouse with one coverage row (2026-Q2 SaaS, coverage 2.0x) and no target."""
    workspace = Workspace(tmp_path / "ws").create()
    with duckdb.connect(str(workspace.warehouse)) as con:
        ensure_raw_schema(con)
        row = {"period": "2026-Q2", "period_grain": "quarter", "pipeline": "SaaS", "currency": "USD",
               "target": 1e6, "booked": 0.0, "open_pipeline": 2e6, "gap": 1e6, "coverage": 2.0,
               "required_coverage": 3.0, "shortfall": 1e6, "status": "warn"}
        replace_table(con, "main.pipeline_coverage",
                      pd.DataFrame([{"as_of": datetime(2026, 5, 20), **row}]))
    return workspace


def hold(warehouse, seconds: float) -> subprocess.Popen:
    """A second process holding the warehouse read-write for `seconds` (returns once it holds it)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(warehouse), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_a_read_command_waits_then_says_in_one_line_that_a_run_holds_the_warehouse(workspace, capsys,
                                                                                    monkeypatch):
    monkeypatch.setattr(warehouse_access, "READ_WAIT_SECONDS", 1.0)
    holder = hold(workspace.warehouse, 30)
    try:
        started = time.monotonic()
        code = main(["coverage", "--workspace", str(workspace.home), "--format", "json"])
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    out, err = capsys.readouterr()
    assert code == EXIT_BUSY and out == ""
    assert waited >= 1.0  # it waited before giving up
    [line] = err.strip().splitlines()  # one line, no traceback
    assert line.startswith("voronka: busy: the warehouse") and f"process {holder.pid}" in line
    assert "Traceback" not in err


def test_a_read_command_reads_once_the_run_releases_the_warehouse(workspace, capsys):
    holder = hold(workspace.warehouse, 1.5)  # shorter than READ_WAIT_SECONDS
    try:
        code = main(["coverage", "--workspace", str(workspace.home), "--format", "json"])
    finally:
        holder.wait()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"pipeline": "SaaS"' in out and '"coverage": 2.0' in out


def test_every_read_command_that_opens_the_warehouse_says_busy_instead_of_a_traceback(workspace, capsys,
                                                                                      monkeypatch, tmp_path):
    monkeypatch.setattr(warehouse_access, "READ_WAIT_SECONDS", 0.3)
    home = str(workspace.home)
    commands = [["funnel"], ["forecast"], ["deals"], ["backtest"], ["report"],
                ["export", "--table", "pipeline_coverage", "--out", str(tmp_path / "c.csv")],
                ["changes", "--from", "2026-05-01", "--to", "2026-05-20"], ["funnel", "--as-of", "2026-05-01"],
                ["ingest", str(tmp_path / "c.csv")]]
    (tmp_path / "c.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    holder = hold(workspace.warehouse, 60)
    try:
        for command in commands:
            code = main([*command, "--workspace", home])
            err = capsys.readouterr().err
            assert code == EXIT_BUSY, (command, err)
            assert len(err.strip().splitlines()) == 1 and "voronka: busy:" in err, (command, err)
    finally:
        holder.kill()
        holder.wait()


def test_the_run_resource_nests_connections_with_one_configuration(workspace):
    """The root cause of `voronka run` exiting 1 without targets: the coverage check held the
    warehouse read-only and as_of_time() opened it read-write in the same process."""
    resource = WorkspaceResource(home=str(workspace.home))
    with resource.connect() as outer:
        assert resource.as_of_time() is not None  # a nested connection
        assert outer.execute("select count(*) from main.pipeline_coverage").fetchone()[0] == 1


def test_the_coverage_check_passes_and_says_how_to_add_a_target_when_there_is_none(workspace):
    with duckdb.connect(str(workspace.warehouse)) as con:
        replace_table(con, "main.pipeline_coverage", pd.DataFrame(columns=["as_of", *COVERAGE_COLUMNS]))
    result = coverage_meets_requirement(dg.build_asset_check_context(
        resources={"workspace": WorkspaceResource(home=str(workspace.home))}))
    assert result.passed
    assert result.description == NO_TARGET and "docs/crm-exports.md" in NO_TARGET


def test_the_inbox_sensor_waits_for_the_next_tick_while_a_run_holds_the_warehouse(workspace):
    (workspace.inbox / "deals.csv").write_text("a\n", encoding="utf-8")
    sensor = build_inbox_sensor(dg.define_asset_job("j"))
    holder = hold(workspace.warehouse, 30)
    try:
        with dg.build_sensor_context(resources={"workspace": WorkspaceResource(home=str(workspace.home))}) as ctx:
            skipped = sensor(ctx)
    finally:
        holder.kill()
        holder.wait()
    assert isinstance(skipped, dg.SkipReason) and "run holds the warehouse" in skipped.skip_message
