"""Workspace configuration and the coverage alert's file sink."""

from __future__ import annotations

import json

import pytest

from orchestration.alerts import coverage_alert, deliver
from orchestration.config import VoronkaConfig, Workspace, resolve_workspace
from orchestration.ingest.errors import ConfigError


def test_a_new_workspace_gets_the_default_config(tmp_path):
    ws = Workspace(tmp_path / "ws").create()
    config = ws.config()
    assert config.reporting_currency == "USD" and config.required_coverage == 3.0
    assert ws.inbox.is_dir() and ws.config_path.exists()


def test_workspace_resolution_prefers_the_flag_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VORONKA_HOME", str(tmp_path / "env"))
    assert resolve_workspace(tmp_path / "flag").home == (tmp_path / "flag").resolve()
    assert resolve_workspace().home == (tmp_path / "env").resolve()
    monkeypatch.delenv("VORONKA_HOME")
    monkeypatch.chdir(tmp_path)
    assert resolve_workspace().home == (tmp_path / "voronka_workspace").resolve()


@pytest.mark.parametrize("text,words", [
    ("required_coverage: -1\n", "required_coverage must be positive"),
    ("reporting_curency: EUR\n", "unknown setting 'reporting_curency'"),
    ("reporting_currency: [\n", "not valid YAML"),
    ("required_coverage: 1.0\ncritical_coverage: 2.0\n", "critical_coverage must not exceed"),
    ("alerts: slack\n", "alerts must be a list"),
])
def test_a_bad_config_is_one_clear_error(tmp_path, text, words):
    ws = Workspace(tmp_path).create()
    ws.config_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        ws.config()


def test_config_normalises_values():
    config = VoronkaConfig.from_mapping({"reporting_currency": " eur ", "required_coverage": "2.5"})
    assert config.reporting_currency == "EUR" and config.required_coverage == 2.5


ROWS = [
    {"period": "2026-Q4", "pipeline": "SaaS <b>", "currency": "USD", "coverage": 2.1, "required_coverage": 3.0,
     "open_pipeline": 2_100_000.0, "gap": 1_000_000.0, "shortfall": 900_000.0, "status": "warn"},
    {"period": "2026-Q4", "pipeline": "B2B", "currency": "USD", "coverage": 4.0, "required_coverage": 3.0,
     "open_pipeline": 400.0, "gap": 100.0, "shortfall": 0.0, "status": "ok"},
]


def test_coverage_alert_names_the_scope_and_the_shortfall_in_money():
    alert = coverage_alert(ROWS, "2026-11-20")
    assert alert.severity == "warn" and len(alert.lines) == 1
    assert "SaaS <b> 2026-Q4: coverage 2.10x against 3.0x required" in alert.lines[0]
    assert "short by 900.0k USD" in alert.lines[0]
    assert coverage_alert([ROWS[1]], "2026-11-20") is None


def test_file_sink_appends_json_lines_and_unknown_sinks_fail_without_raising(tmp_path):
    alert = coverage_alert(ROWS, "2026-11-20")
    sinks = [{"type": "file", "path": "alerts/a.jsonl"}, {"type": "pager"}]
    results = deliver(alert, sinks, lambda p: tmp_path / p)
    deliver(alert, sinks[:1], lambda p: tmp_path / p)
    assert [r.ok for r in results] == [True, False] and "not supported" in results[1].detail
    lines = (tmp_path / "alerts/a.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["kind"] == "pipeline_coverage" and record["rows"][0]["pipeline"] == "SaaS <b>"
