"""Send when coverage turns bad, remind while it stays bad, recover when it is good again —
keyed on the run's as-of time, with the state in alerts/state.json."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

import pytest

from voronka.alerts import AlertSettings, decide, notify_coverage, validate_sinks
from voronka.alerts.state import next_entry, save_state

T0 = "2026-05-20 06:00:00"


def at(hours: float) -> str:
    return str(datetime.fromisoformat(T0) + timedelta(hours=hours))


@pytest.fixture
def slack_settings(http_endpoint, monkeypatch):
    monkeypatch.setenv("VORONKA_SLACK_WEBHOOK", f"{http_endpoint.url}/services/x")
    return AlertSettings(sinks=validate_sinks([{"type": "slack", "webhook_url_env": "VORONKA_SLACK_WEBHOOK"},
                                               {"type": "file"}]),
                         reminder_hours=24, attempts=1)


def test_bad_then_quiet_then_reminder_then_new_scope_then_replay_then_recovery(http_endpoint, slack_settings,
                                                                               coverage_row, tmp_path):
    alerts_dir = tmp_path / "alerts"
    saas_bad = [coverage_row("SaaS", status="warn"), coverage_row("B2B", coverage=5.0, status="ok")]
    both_bad = [coverage_row("SaaS", status="warn"), coverage_row("B2B", coverage=0.5, status="error")]
    good = [coverage_row("SaaS", coverage=3.5, status="ok"), coverage_row("B2B", coverage=None, status="ok")]

    def run(rows, as_of):
        before = len(http_endpoint.requests)
        outcome = notify_coverage(rows, as_of, slack_settings, alerts_dir, lambda p: tmp_path / p)
        arrived = [r.json() for r in http_endpoint.requests[before:]]
        return outcome, arrived

    outcome, arrived = run(saas_bad, at(0))
    assert outcome.decision.action == "send" and outcome.deliveries_ok == 2
    assert len(arrived) == 1 and "below target in 1 period/pipeline(s)" in arrived[0]["text"]

    for hours in (1, 23.5):  # same bad, inside the reminder interval: nothing
        outcome, arrived = run(saas_bad, at(hours))
        assert outcome.decision.action == "none" and arrived == [] and outcome.deliveries == []

    outcome, arrived = run(saas_bad, at(24))
    assert outcome.decision.action == "remind" and len(arrived) == 1
    assert arrived[0]["text"].startswith("Reminder: Pipeline coverage below target")
    assert "(since 2026-05-20T06:00:00)" in arrived[0]["text"]

    outcome, arrived = run(saas_bad, at(30))  # the reminder clock restarted at hour 24
    assert outcome.decision.action == "none" and arrived == []

    outcome, arrived = run(both_bad, at(31))  # a new pipeline goes bad: alert again, at once
    assert outcome.decision.action == "send" and "B2B" in outcome.decision.reason and len(arrived) == 1
    assert "2026-Q2: coverage 0.50x" in arrived[0]["text"]

    outcome, arrived = run(good, at(2))  # an older as-of (a replay) must not re-trigger
    assert outcome.decision.action == "none" and outcome.decision.stale and arrived == []

    outcome, arrived = run(good, at(40))
    assert outcome.decision.action == "recover" and len(arrived) == 1
    assert arrived[0]["text"].startswith("Pipeline coverage back on target in 2 period/pipeline(s)")
    assert "SaaS 2026-Q2: coverage 3.50x" in arrived[0]["text"]
    assert "B2B 2026-Q2: target already booked" in arrived[0]["text"]
    assert arrived[0]["blocks"][0]["text"]["text"].startswith(":white_check_mark:")

    for hours in (41, 100):  # good stays good: nothing, ever
        outcome, arrived = run(good, at(hours))
        assert outcome.decision.action == "none" and arrived == []

    events = [json.loads(line)["event"] for line in (alerts_dir / "alerts.jsonl").read_text("utf-8").splitlines()]
    assert events == ["alert", "reminder", "alert", "recovery"]
    delivered = [json.loads(line) for line in (alerts_dir / "deliveries.jsonl").read_text("utf-8").splitlines()]
    assert [(d["event"], d["sink"]) for d in delivered][::2] == [
        ("alert", "slack"), ("reminder", "slack"), ("alert", "slack"), ("recovery", "slack")]
    state = json.loads((alerts_dir / "state.json").read_text("utf-8"))["kinds"]["pipeline_coverage"]
    assert state["status"] == "good" and state["as_of"] == "2026-05-24T10:00:00" and state["scopes"] == {}


def test_replaying_the_same_as_of_twice_sends_once(slack_settings, coverage_row, http_endpoint, tmp_path):
    rows = [coverage_row()]
    for _ in range(3):
        notify_coverage(rows, T0, slack_settings, tmp_path / "alerts", lambda p: tmp_path / p)
    assert len(http_endpoint.requests) == 1


def test_a_notice_that_reached_no_sink_is_sent_again_next_run(closed_port, http_endpoint, coverage_row, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("VORONKA_SLACK_WEBHOOK", f"http://127.0.0.1:{closed_port}/dead")
    settings = AlertSettings(sinks=validate_sinks([{"type": "slack", "webhook_url_env": "VORONKA_SLACK_WEBHOOK"}]),
                             attempts=1)
    first = notify_coverage([coverage_row()], at(0), settings, tmp_path / "alerts", lambda p: tmp_path / p)
    assert first.decision.action == "send" and first.deliveries_failed == 1
    monkeypatch.setenv("VORONKA_SLACK_WEBHOOK", http_endpoint.url)
    second = notify_coverage([coverage_row()], at(1), settings, tmp_path / "alerts", lambda p: tmp_path / p)
    assert second.decision.action == "send" and second.deliveries_ok == 1 and len(http_endpoint.requests) == 1
    third = notify_coverage([coverage_row()], at(2), settings, tmp_path / "alerts", lambda p: tmp_path / p)
    assert third.decision.action == "none"


def entry_after(*steps, reminder_hours=24.0):
    """Run decide/next_entry over (scopes, as_of) steps, every notice delivered; return the actions."""
    entry, actions = None, []
    for scopes, as_of in steps:
        decision = decide("k", entry, scopes, as_of, reminder_hours)
        actions.append(decision.action)
        entry = next_entry(entry, decision, delivered=True)
    return actions


def test_an_escalation_from_warn_to_error_alerts_but_an_improvement_does_not():
    actions = entry_after(({"Q2 A": "warn"}, at(0)), ({"Q2 A": "error"}, at(1)), ({"Q2 A": "warn"}, at(2)),
                          ({"Q2 A": "error"}, at(3)))
    assert actions == ["send", "send", "none", "send"]


def test_a_scope_that_recovers_alone_then_falls_again_counts_as_new():
    actions = entry_after(({"Q2 A": "warn", "Q2 B": "warn"}, at(0)), ({"Q2 A": "warn"}, at(1)),
                          ({"Q2 A": "warn", "Q2 B": "warn"}, at(2)))
    assert actions == ["send", "none", "send"]


def test_reminders_can_be_turned_off_and_timezones_compare_in_utc():
    assert entry_after(({"Q2 A": "warn"}, at(0)), ({"Q2 A": "warn"}, at(1000)), reminder_hours=0) == ["send", "none"]
    # 06:00 UTC then 2026-05-21 08:00+03:00 (= 05:00 UTC): 23 h, no reminder yet; 06:00 UTC next day: 24 h
    assert entry_after(({"Q2 A": "warn"}, "2026-05-20T06:00:00+00:00"), ({"Q2 A": "warn"}, "2026-05-21T08:00:00+03:00"),
                       ({"Q2 A": "warn"}, "2026-05-21T06:00:00Z")) == ["send", "none", "remind"]


def test_state_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "alerts" / "state.json"
    save_state(path, {"pipeline_coverage": {"status": "bad"}})

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_state(path, {"pipeline_coverage": {"status": "good"}})
    assert json.loads(path.read_text("utf-8"))["kinds"]["pipeline_coverage"]["status"] == "bad"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary file left behind


def test_a_corrupt_state_file_is_a_warning_not_a_failure(coverage_row, tmp_path):
    alerts_dir = tmp_path / "alerts"
    alerts_dir.mkdir()
    (alerts_dir / "state.json").write_text("{not json", encoding="utf-8")
    settings = AlertSettings(sinks=validate_sinks([{"type": "file"}]))
    outcome = notify_coverage([coverage_row()], T0, settings, alerts_dir, lambda p: tmp_path / p)
    assert outcome.decision.action == "send" and outcome.deliveries_ok == 1
    assert "not a Voronka alert state file" in outcome.warnings[0]
    assert json.loads((alerts_dir / "state.json").read_text("utf-8"))["kinds"]["pipeline_coverage"]["status"] == "bad"
