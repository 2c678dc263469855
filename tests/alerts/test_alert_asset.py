"""The coverage_alerts asset: decides, delivers, and says what it did in its metadata."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd

from orchestration.assets.forecast import coverage_alerts
from orchestration.config import Workspace
from orchestration.resources import WorkspaceResource
from orchestration.warehouse_queries import replace_table


def write_coverage(workspace: Workspace, rows: list[dict], as_of: str) -> None:
    frame = pd.DataFrame(rows)
    frame.insert(0, "as_of", datetime.fromisoformat(as_of))
    with duckdb.connect(str(workspace.warehouse)) as con:
        replace_table(con, "main.pipeline_coverage", frame)


def materialize(home) -> dict:
    result = dg.materialize([coverage_alerts], resources={"workspace": WorkspaceResource(home=str(home))})
    assert result.success
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_the_asset_sends_once_stays_quiet_then_recovers(http_endpoint, coverage_row, tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "ws").create()
    workspace.config_path.write_text(
        "alert_reminder_hours: 48\n"
        "alerts:\n"
        "  - type: file\n"
        "  - type: webhook\n"
        "    url_env: VORONKA_TEST_HOOK\n", encoding="utf-8")
    monkeypatch.setenv("VORONKA_TEST_HOOK", f"{http_endpoint.url}/voronka")

    write_coverage(workspace, [coverage_row("SaaS"), coverage_row("B2B", coverage=4.0, status="ok")],
                   "2026-05-20 06:00:00")
    first = materialize(workspace.home)
    assert first["decision"] == "send" and first["alert_sent"] is True and first["severity"] == "warn"
    assert (first["deliveries_ok"], first["deliveries_failed"], first["scopes_below_target"]) == (2, 0, 1)
    assert len(http_endpoint.requests) == 1 and http_endpoint.requests[0].json()["event"] == "alert"

    write_coverage(workspace, [coverage_row("SaaS"), coverage_row("B2B", coverage=4.0, status="ok")],
                   "2026-05-21 06:00:00")
    second = materialize(workspace.home)
    assert second["decision"] == "none" and second["alert_sent"] is False
    assert (second["deliveries_ok"], second["deliveries_failed"]) == (0, 0) and len(http_endpoint.requests) == 1

    write_coverage(workspace, [coverage_row("SaaS", coverage=3.2, status="ok")], "2026-05-22 06:00:00")
    third = materialize(workspace.home)
    assert third["decision"] == "recover" and third["severity"] == "ok" and third["deliveries_ok"] == 2
    assert http_endpoint.requests[-1].json()["event"] == "recovery"
    assert (workspace.alerts / "state.json").exists() and (workspace.alerts / "deliveries.jsonl").exists()
