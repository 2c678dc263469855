"""Workspace configuration and the coverage alert's file sink."""

from __future__ import annotations

import json
import re

import pytest

from voronka.alerts import coverage_alert, deliver
from voronka.config import VoronkaConfig, Workspace, resolve_workspace
from voronka.errors import ConfigError


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
    ("alerts:\n  - type: pager\n", "alerts[0]: unknown sink type 'pager' (known: file, slack, webhook, email)"),
    ("alerts:\n  - type: slack\n", "alerts[0] (slack): webhook_url_env is required"),
    ("alerts:\n  - type: slack\n    webhook_url: https://hooks.slack.com/x\n",
     "alerts[0] (slack): secrets are not written in voronka.yaml; put the value in an environment variable "
     "and name it with webhook_url_env"),
    ("alerts:\n  - type: email\n    host: h\n    from: a@x.io\n    to: b@x.io\n    password: hunter2\n",
     "name it with password_env"),
    ("alerts:\n  - type: email\n    host: h\n    from: a@x.io\n    to: b@x.io\n    starttls: false\n"
     "    username: u\n    password_env: P\n", "only sent over STARTTLS"),
    ("alerts:\n  - type: email\n    host: h\n    from: a@x.io\n    to: [b@x.io, nobody]\n",
     "to must be one email address"),
    ("alerts:\n  - type: webhook\n    url_env: U\n    headers_env: {Authorization: Bearer xyz}\n",
     "headers_env.Authorization must be the name of an environment variable"),
    ("alerts:\n  - type: slack\n    webhook_url_env: A\n  - type: slack\n    webhook_url_env: B\n",
     "two sinks are named 'slack'"),
    ("alerts:\n  - type: slack\n    webhook_url_env: A\n    chanel: x\n", "unknown setting 'chanel'"),
    ("alert_reminder_hours: -1\n", "alert_reminder_hours must not be negative"),
    ("alert_retry_attempts: 0\n", "alert_retry_attempts must be between 1 and 10"),
    ("alert_timeout_seconds: 600\n", "alert_timeout_seconds must be between 0.1 and 120"),
    ("alert_on: [pipeline_coverage, stale_exports]\n", "alert_on: unknown alert kind 'stale_exports' (known: "
     "pipeline_coverage, export_freshness, prob_hit_target, new_pipeline, stalled_deals, missing_fx)"),
    ("alert_on: pipeline_coverage\n", "alert_on must be a list of alert kinds"),
])
def test_a_bad_config_is_one_clear_error(tmp_path, text, words):
    ws = Workspace(tmp_path).create()
    ws.config_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(words)):
        ws.config()


def test_a_secret_pasted_where_its_variable_name_belongs_is_not_echoed(tmp_path):
    ws = Workspace(tmp_path).create()
    ws.config_path.write_text(
        "alerts:\n  - type: slack\n    webhook_url_env: https://hooks.slack.com/services/T1/B2/s3cr3t\n",
        encoding="utf-8")
    with pytest.raises(ConfigError, match="webhook_url_env must be the name of an environment variable") as err:
        ws.config()
    assert "s3cr3t" not in str(err.value)


def test_alert_settings_have_defaults_and_are_read_from_the_file(tmp_path):
    default = VoronkaConfig().alert_settings()
    assert (default.reminder_hours, default.attempts, default.retry_delay, default.timeout) == (24.0, 3, 0.5, 10.0)
    assert default.sinks == ({"type": "file", "path": "alerts/alerts.jsonl", "name": "file:alerts.jsonl"},)
    config = VoronkaConfig.from_mapping({
        "alert_reminder_hours": "0", "alert_retry_attempts": 5, "alert_retry_delay_seconds": 0,
        "alert_timeout_seconds": 2.5,
        "alerts": [{"type": "email", "host": "smtp.example.com", "username": "u", "password_env": "SMTP_PASSWORD",
                    "from": "v@example.com", "to": "lead@example.com"}]})
    settings = config.alert_settings()
    assert (settings.reminder_hours, settings.attempts, settings.retry_delay, settings.timeout) == (0.0, 5, 0.0, 2.5)
    [sink] = settings.sinks
    assert sink["port"] == 587 and sink["starttls"] is True and sink["to"] == ["lead@example.com"]
    assert sink["name"] == "email"


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
