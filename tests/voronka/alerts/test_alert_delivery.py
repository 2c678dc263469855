"""Retries with exponential backoff; failures are recorded and returned, never raised."""

from __future__ import annotations

import json
import time

import pytest

from voronka.alerts import (
    AlertSettings,
    coverage_alert,
    deliver,
    notify_coverage,
    validate_sinks,
)
from voronka.alerts import sinks as sinks_module

AS_OF = "2026-05-20 09:00:00"


@pytest.fixture
def alert(coverage_row):
    return coverage_alert([coverage_row()], AS_OF)


@pytest.fixture
def sleeps():
    return []


def hook(url_env="HOOK_URL"):
    return validate_sinks([{"type": "webhook", "url_env": url_env}])


def test_a_flaky_endpoint_succeeds_on_the_third_attempt_after_doubling_delays(http_endpoint, alert, sleeps,
                                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_URL", http_endpoint.url)
    http_endpoint.statuses = [503, 500]
    [result] = deliver(alert, hook(), lambda p: tmp_path / p, attempts=3, retry_delay=0.25, sleep=sleeps.append)
    assert result.ok and result.attempts == 3 and sleeps == [0.25, 0.5]
    assert len(http_endpoint.requests) == 3
    assert http_endpoint.requests[0].body == http_endpoint.requests[2].body  # the same alert each time


def test_retry_after_is_honoured_within_a_cap(http_endpoint, alert, sleeps, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_URL", http_endpoint.url)
    http_endpoint.statuses = [429, 429]
    http_endpoint.extra_headers = {"Retry-After": "7"}
    [result] = deliver(alert, hook(), lambda p: tmp_path / p, attempts=3, retry_delay=0.25, sleep=sleeps.append)
    assert result.ok and sleeps == [7.0, 7.0]
    http_endpoint.statuses = [429]
    http_endpoint.extra_headers = {"Retry-After": "3600"}
    sleeps.clear()
    deliver(alert, hook(), lambda p: tmp_path / p, attempts=2, retry_delay=0.25, sleep=sleeps.append)
    assert sleeps == [30.0]


@pytest.mark.parametrize("status,detail", [(400, "HTTP 400 Bad Request: invalid_payload"),
                                           (404, "HTTP 404 Not Found"),
                                           (302, "HTTP 302 Found")])  # a redirect is not followed
def test_a_client_error_is_not_retried(http_endpoint, alert, sleeps, tmp_path, monkeypatch, status, detail):
    monkeypatch.setenv("HOOK_URL", http_endpoint.url)
    http_endpoint.statuses = [status]
    http_endpoint.extra_headers = {"Location": "http://127.0.0.1:9/elsewhere"} if status == 302 else {}
    [result] = deliver(alert, hook(), lambda p: tmp_path / p, attempts=3, sleep=sleeps.append)
    assert not result.ok and result.attempts == 1 and sleeps == []
    assert result.detail.startswith(detail)
    assert len(http_endpoint.requests) == 1


def test_a_dead_endpoint_is_a_recorded_failure_after_the_retries_not_an_exception(closed_port, coverage_row,
                                                                                 sleeps, tmp_path, monkeypatch):
    monkeypatch.setenv("VORONKA_SLACK_WEBHOOK", f"http://127.0.0.1:{closed_port}/services/x")
    settings = AlertSettings(sinks=validate_sinks([
        {"type": "slack", "webhook_url_env": "VORONKA_SLACK_WEBHOOK"},
        {"type": "email", "host": "127.0.0.1", "port": closed_port, "starttls": False,
         "from": "a@example.com", "to": "b@example.com"}]), attempts=3, retry_delay=0.5)
    outcome = notify_coverage([coverage_row()], AS_OF, settings, tmp_path / "alerts", lambda p: tmp_path / p,
                              sleep=sleeps.append)
    assert outcome.decision.action == "send" and outcome.deliveries_failed == 2 and outcome.deliveries_ok == 0
    assert sleeps == [0.5, 1.0, 0.5, 1.0]
    slack, mail = outcome.deliveries
    assert slack.attempts == 3 and "cannot reach the endpoint in VORONKA_SLACK_WEBHOOK" in slack.detail
    assert mail.attempts == 3 and f"cannot reach SMTP server 127.0.0.1:{closed_port}" in mail.detail
    records = [json.loads(line) for line in
               (tmp_path / "alerts" / "deliveries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["sink"], r["ok"], r["attempts"], r["event"]) for r in records] == [
        ("slack", False, 3, "alert"), ("email", False, 3, "alert")]
    assert records[0]["detail"] == slack.detail and records[0]["as_of"] == AS_OF and records[0]["at"]


def test_an_endpoint_that_never_answers_times_out_quickly(silent_port, alert, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{silent_port}/")
    started = time.monotonic()
    [result] = deliver(alert, hook(), lambda p: tmp_path / p, attempts=2, retry_delay=0.0, timeout=0.3)
    assert not result.ok and result.attempts == 2 and "timed out" in result.detail
    assert time.monotonic() - started < 3


def test_a_url_that_is_not_http_is_refused_without_echoing_it(alert, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_URL", "file:///etc/passwd")
    [result] = deliver(alert, hook(), lambda p: tmp_path / p, sleep=lambda s: None)
    assert not result.ok and result.detail == "the value of HOOK_URL is not an http(s) URL"
    assert result.attempts == 1


def test_a_bug_inside_a_sink_becomes_a_failed_delivery(alert, tmp_path, monkeypatch):
    def broken(*args):
        raise KeyError("oops")
    monkeypatch.setitem(sinks_module.SENDERS, "file", broken)
    sinks = validate_sinks([{"type": "file"}])
    [result] = deliver(alert, sinks, lambda p: tmp_path / p, sleep=lambda s: None)
    assert not result.ok and result.detail == "KeyError: 'oops'" and result.attempts == 1


def test_the_file_sink_retries_and_reports_an_unwritable_path(alert, tmp_path, sleeps):
    (tmp_path / "blocked").write_text("a file where a folder should be", encoding="utf-8")
    sinks = validate_sinks([{"type": "file", "path": "blocked/alerts.jsonl"}])
    [result] = deliver(alert, sinks, lambda p: tmp_path / p, attempts=2, retry_delay=0.1, sleep=sleeps.append)
    assert not result.ok and result.attempts == 2 and sleeps == [0.1]
    assert result.sink == "file:alerts.jsonl" and "Error" in result.detail


def test_an_unchecked_sink_is_checked_before_sending(smtp_server, alert, tmp_path):
    server = smtp_server()
    raw = {"type": "email", "host": "127.0.0.1", "port": server.port, "starttls": False,
           "from": "voronka@example.com", "to": "lead@example.com"}  # one address, not a list
    ok, bad = deliver(alert, [raw, {"type": "email", "host": "h"}], lambda p: tmp_path / p, sleep=lambda s: None)
    assert ok.ok and server.messages[0].rcpt_tos == ["lead@example.com"]
    assert not bad.ok and bad.attempts == 0 and bad.detail == "alerts[1] (email): from is required"
