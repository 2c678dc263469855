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


def write_exports(workspace: Workspace, newest: dict[str, datetime]) -> None:
    """raw.deals with one deal per source system, exported at the given time."""
    from orchestration.ingest.warehouse import ensure_raw_schema

    with duckdb.connect(str(workspace.warehouse)) as con:
        ensure_raw_schema(con)
        con.execute("delete from raw.deals")
        for source, exported_at in newest.items():
            con.execute("insert into raw.deals (deal_key, source_system, native_id, created_at, exported_at) "
                        "values (?, ?, '1', ?, ?)", [f"{source}:1", source, exported_at, exported_at])


def test_late_exports_alert_once_per_source_then_recover(http_endpoint, tmp_path, monkeypatch):
    """'No export for 3 days' is itself an alert: judged by the wall clock, per source system."""
    from datetime import timedelta

    from orchestration.assets.forecast import export_freshness_alerts

    workspace = Workspace(tmp_path / "ws").create()
    workspace.config_path.write_text("max_export_age_days: 3\nalerts:\n  - type: webhook\n"
                                     "    url_env: VORONKA_TEST_HOOK\n", encoding="utf-8")
    monkeypatch.setenv("VORONKA_TEST_HOOK", f"{http_endpoint.url}/voronka")
    now = datetime.utcnow()

    def run(**resource) -> dict:
        result = dg.materialize([export_freshness_alerts],
                                resources={"workspace": WorkspaceResource(home=str(workspace.home), **resource)})
        assert result.success
        [event] = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    write_exports(workspace, {"amocrm": now - timedelta(hours=5), "hubspot": now - timedelta(days=5)})
    first = run()
    assert first["decision"] == "send" and first["stale_sources"] == 1 and first["deliveries_ok"] == 1
    [arrived] = [r.json() for r in http_endpoint.requests]
    assert arrived["kind"] == "export_freshness" and arrived["event"] == "alert"
    assert list(arrived["scopes"]) == ["hubspot"] and "no export for 5 days" in arrived["lines"][0]

    assert run()["decision"] == "none" and len(http_endpoint.requests) == 1  # still late: no repeat
    assert run(as_of="2026-01-31")["decision"] == "none"  # a replay judges nothing

    write_exports(workspace, {"amocrm": now - timedelta(hours=5), "hubspot": now - timedelta(hours=1)})
    back = run()
    assert back["decision"] == "recover" and http_endpoint.requests[-1].json()["event"] == "recovery"
    assert "hubspot" in http_endpoint.requests[-1].json()["lines"][0]
