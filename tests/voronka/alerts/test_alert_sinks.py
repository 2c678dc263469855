"""What arrives at a real local Slack-like endpoint, JSON webhook and SMTP server."""

from __future__ import annotations

import email
import email.policy
import json
import logging
from pathlib import Path

import pytest

from voronka.alerts import (
    AlertSettings,
    coverage_alert,
    deliver,
    notify_coverage,
    validate_sinks,
)

AS_OF = "2026-05-20 09:00:00"
EVIL = "Enterprise <script>alert(1)</script> & Co"


def sinks(*raw):
    return validate_sinks(list(raw))


def send(alert, *raw, tmp_path: Path, **options):
    options = {"attempts": 1, "timeout": 5.0, "sleep": lambda s: None, **options}
    return deliver(alert, sinks(*raw), lambda p: tmp_path / p, **options)


@pytest.fixture
def evil_alert(coverage_row):
    return coverage_alert([coverage_row(pipeline=EVIL, status="error", coverage=0.5),
                           coverage_row(pipeline="B2B", period="2026-06")], AS_OF)


def test_slack_gets_text_and_blocks_with_crm_strings_escaped(http_endpoint, evil_alert, tmp_path, monkeypatch):
    monkeypatch.setenv("VORONKA_SLACK_WEBHOOK", f"{http_endpoint.url}/services/T0/B0/xyz")
    [result] = send(evil_alert, {"type": "slack", "webhook_url_env": "VORONKA_SLACK_WEBHOOK"}, tmp_path=tmp_path)
    assert result.ok and result.sink == "slack" and result.attempts == 1, result
    [request] = http_endpoint.requests
    assert request.path == "/services/T0/B0/xyz"
    assert request.headers["content-type"].startswith("application/json")
    payload = request.json()
    assert set(payload) == {"text", "blocks"}
    assert [b["type"] for b in payload["blocks"]] == ["section", "section", "context"]
    assert payload["blocks"][0]["text"] == {"type": "mrkdwn", "text": f":rotating_light: *{evil_alert.title}*"}
    body = payload["blocks"][1]["text"]["text"]
    escaped = "Enterprise &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co 2026-Q2: coverage 0.50x"
    assert escaped in body and escaped in payload["text"]
    assert body.count("\n• ") == 1 and body.startswith("• ")  # one bullet per scope
    # No raw control character from the CRM survives anywhere in the payload.
    every_text = json.dumps(payload)
    assert "<script>" not in every_text and "& Co" not in every_text
    assert "as of 2026-05-20 09:00:00" in payload["blocks"][2]["elements"][0]["text"]


def test_slack_splits_long_alerts_under_its_section_limit(http_endpoint, coverage_row, tmp_path, monkeypatch):
    monkeypatch.setenv("VORONKA_SLACK_WEBHOOK", http_endpoint.url)
    rows = [coverage_row(pipeline=f"Pipeline {'x' * 80} {i}", period="2026-Q2") for i in range(60)]
    [result] = send(coverage_alert(rows, AS_OF), {"type": "slack", "webhook_url_env": "VORONKA_SLACK_WEBHOOK"},
                    tmp_path=tmp_path)
    payload = http_endpoint.requests[0].json()
    sections = [b["text"]["text"] for b in payload["blocks"][1:-1]]
    assert result.ok and len(sections) > 1 and all(len(s) <= 3000 for s in sections)
    assert sections[-1].endswith("… and 20 more") and len(payload["blocks"]) <= 50


def test_json_webhook_posts_the_alert_with_headers_from_config_and_env(http_endpoint, evil_alert, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("HOOK_URL", f"{http_endpoint.url}/hooks/voronka")
    monkeypatch.setenv("HOOK_TOKEN", "Bearer t0ken")
    [result] = send(evil_alert, {"type": "webhook", "url_env": "HOOK_URL", "headers": {"X-Team": "revops"},
                                 "headers_env": {"Authorization": "HOOK_TOKEN"}}, tmp_path=tmp_path)
    assert result.ok and result.detail == "HTTP 200"
    [request] = http_endpoint.requests
    assert request.path == "/hooks/voronka"
    assert request.headers["authorization"] == "Bearer t0ken" and request.headers["x-team"] == "revops"
    body = request.json()
    assert body["source"] == "voronka" and body["event"] == "alert" and body["kind"] == "pipeline_coverage"
    assert body["severity"] == "error" and body["as_of"] == AS_OF and body["title"] == evil_alert.title
    assert body["rows"][0]["pipeline"] == EVIL  # JSON carries the CRM string as it is, JSON-encoded
    assert body["scopes"] == {f"2026-Q2 {EVIL}": "error", "2026-06 B2B": "warn"}


def parse(mail) -> email.message.EmailMessage:
    return email.message_from_bytes(mail.content, policy=email.policy.default)


def test_email_plain_smtp_subject_body_and_recipients(smtp_server, evil_alert, tmp_path):
    server = smtp_server()
    sink = {"type": "email", "host": "127.0.0.1", "port": server.port, "starttls": False,
            "from": "voronka@example.com", "to": ["lead@example.com", "cro@example.com"]}
    [result] = send(evil_alert, sink, tmp_path=tmp_path)
    assert result.ok and result.detail == "sent to 2 of 2 recipient(s)", result
    [mail] = server.messages
    assert mail.mail_from == "voronka@example.com" and mail.rcpt_tos == ["lead@example.com", "cro@example.com"]
    assert mail.login is None and not mail.over_tls
    msg = parse(mail)
    assert msg["Subject"] == f"[Voronka] {evil_alert.title}"
    assert msg["From"] == "voronka@example.com" and msg["To"] == "lead@example.com, cro@example.com"
    assert msg.get_content_type() == "text/plain"
    body = msg.get_content()
    assert f"- {EVIL} 2026-Q2: coverage 0.50x" in body and "As of: 2026-05-20 09:00:00" in body


def test_email_over_starttls_logs_in_with_the_password_from_the_environment(smtp_server, tls_cert, evil_alert,
                                                                           tmp_path, monkeypatch):
    server = smtp_server(tls=True, user="voronka", password="pa55-word")
    monkeypatch.setenv("VORONKA_SMTP_PASSWORD", "pa55-word")
    sink = {"type": "email", "host": "127.0.0.1", "port": server.port, "tls_ca_file": str(tls_cert[0]),
            "username": "voronka", "password_env": "VORONKA_SMTP_PASSWORD",
            "from": "voronka@example.com", "to": "lead@example.com"}
    [result] = send(evil_alert, sink, tmp_path=tmp_path)
    assert result.ok, result
    [mail] = server.messages
    assert mail.over_tls and mail.login == "voronka" and mail.rcpt_tos == ["lead@example.com"]
    assert parse(mail)["Subject"] == f"[Voronka] {evil_alert.title}"


def test_email_refuses_an_untrusted_certificate_and_a_wrong_password(smtp_server, tls_cert, evil_alert,
                                                                    tmp_path, monkeypatch):
    server = smtp_server(tls=True, user="voronka", password="right")
    monkeypatch.setenv("VORONKA_SMTP_PASSWORD", "wrong")
    sink = {"type": "email", "host": "127.0.0.1", "port": server.port, "username": "voronka",
            "password_env": "VORONKA_SMTP_PASSWORD", "from": "voronka@example.com", "to": "lead@example.com"}
    [untrusted] = send(evil_alert, sink, tmp_path=tmp_path, attempts=3)
    assert not untrusted.ok and "certificate not trusted" in untrusted.detail and "tls_ca_file" in untrusted.detail
    assert untrusted.attempts == 1  # retrying cannot fix a certificate
    assert server.logins == []  # the password never went over an unverified connection
    [refused] = send(evil_alert, {**sink, "tls_ca_file": str(tls_cert[0])}, tmp_path=tmp_path, attempts=3)
    assert not refused.ok and "refused the login for voronka (code 535)" in refused.detail
    assert refused.attempts == 1 and server.messages == []
    assert server.logins and set(server.logins) == {("voronka", "wrong")}  # smtplib tries PLAIN, then LOGIN


@pytest.mark.parametrize("sink,variable", [
    ({"type": "slack", "webhook_url_env": "VORONKA_TEST_UNSET_SLACK"}, "VORONKA_TEST_UNSET_SLACK"),
    ({"type": "webhook", "url_env": "VORONKA_TEST_HOOK", "headers_env": {"Authorization": "VORONKA_TEST_UNSET_TOKEN"}},
     "VORONKA_TEST_UNSET_TOKEN"),
    ({"type": "email", "host": "127.0.0.1", "username": "u", "password_env": "VORONKA_TEST_UNSET_PASSWORD",
      "from": "a@example.com", "to": "b@example.com"}, "VORONKA_TEST_UNSET_PASSWORD"),
])
def test_a_missing_environment_variable_is_a_clear_failed_delivery(sink, variable, evil_alert, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("VORONKA_TEST_HOOK", "http://127.0.0.1:9/never-called")
    monkeypatch.delenv(variable, raising=False)
    [result] = send(evil_alert, sink, tmp_path=tmp_path, attempts=3)
    assert not result.ok and result.attempts == 0
    assert result.detail.startswith(f"environment variable {variable} is not set")


def test_secrets_appear_in_no_log_record_file_or_delivery(http_endpoint, smtp_server, tls_cert, closed_port,
                                                          coverage_row, tmp_path, monkeypatch, caplog, capsys):
    """Success, HTTP error, dead endpoint and a refused login all run; no secret value shows up."""
    slack_secret = "T0SECRET/B0SECRET/slackTokenSecret123"
    header_secret = "Bearer hdr-secret-456"
    smtp_secret = "smtp-secret-789"
    dead_secret = "deadTokenSecret000"
    server = smtp_server(tls=True, user="voronka", password=smtp_secret)
    monkeypatch.setenv("SLACK_OK", f"{http_endpoint.url}/services/{slack_secret}")
    monkeypatch.setenv("SLACK_DEAD", f"http://127.0.0.1:{closed_port}/services/{dead_secret}")
    monkeypatch.setenv("HOOK_URL", f"{http_endpoint.url}/hook/{slack_secret}")
    monkeypatch.setenv("HOOK_AUTH", header_secret)
    monkeypatch.setenv("SMTP_PASSWORD", smtp_secret)
    monkeypatch.setenv("SMTP_WRONG", smtp_secret + "-wrong")
    email_sink = {"type": "email", "host": "127.0.0.1", "port": server.port, "tls_ca_file": str(tls_cert[0]),
                  "username": "voronka", "from": "voronka@example.com", "to": "lead@example.com"}
    configured = sinks(
        {"type": "slack", "name": "slack-ok", "webhook_url_env": "SLACK_OK"},
        {"type": "slack", "name": "slack-dead", "webhook_url_env": "SLACK_DEAD"},
        {"type": "webhook", "url_env": "HOOK_URL", "headers_env": {"Authorization": "HOOK_AUTH"}},
        {**email_sink, "name": "email-ok", "password_env": "SMTP_PASSWORD"},
        {**email_sink, "name": "email-wrong", "password_env": "SMTP_WRONG"},
    )
    http_endpoint.statuses = [200, 500, 500]  # slack ok; the webhook fails with 500 and is retried
    settings = AlertSettings(sinks=configured, attempts=2, retry_delay=0.0, timeout=5.0)
    caplog.set_level(logging.DEBUG)
    outcome = notify_coverage([coverage_row()], AS_OF, settings, tmp_path / "alerts", lambda p: tmp_path / p)
    assert [(d.sink, d.ok) for d in outcome.deliveries] == [
        ("slack-ok", True), ("slack-dead", False), ("webhook", False), ("email-ok", True), ("email-wrong", False)]
    assert http_endpoint.requests[1].headers["authorization"] == header_secret  # the secret was used
    assert len(server.messages) == 1
    out, err = capsys.readouterr()
    places = {"log": caplog.text, "stdout": out, "stderr": err,
              "outcome": repr(outcome) + repr(outcome.deliveries),
              **{str(p): p.read_text(encoding="utf-8") for p in (tmp_path / "alerts").rglob("*") if p.is_file()}}
    assert (tmp_path / "alerts" / "deliveries.jsonl").exists() and (tmp_path / "alerts" / "state.json").exists()
    for secret in (slack_secret, "slackTokenSecret123", header_secret, "hdr-secret-456", smtp_secret, dead_secret):
        for where, text in places.items():
            assert secret not in text, f"{secret!r} leaked into {where}"
