"""One alert kind, one run: decide (state.py), build the notice, deliver it, record, store state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from voronka.alerts.delivery import (
    DEFAULT_ATTEMPTS,
    DEFAULT_RETRY_DELAY,
    DEFAULT_TIMEOUT,
    deliver,
    record_deliveries,
)
from voronka.alerts.model import (
    Alert,
    CheckAlert,
    Delivery,
    check_alert,
    check_recovery,
    coverage_alert,
    coverage_recovery,
)
from voronka.alerts.state import (
    Decision,
    StateError,
    decide,
    load_state,
    next_entry,
    save_state,
)

STATE_FILE = "state.json"
DELIVERIES_FILE = "deliveries.jsonl"


@dataclass(frozen=True)
class AlertSettings:
    """The alert settings of voronka.yaml (VoronkaConfig.alert_settings())."""

    sinks: tuple = ()
    reminder_hours: float = 24.0
    attempts: int = DEFAULT_ATTEMPTS
    retry_delay: float = DEFAULT_RETRY_DELAY
    timeout: float = DEFAULT_TIMEOUT


@dataclass
class Outcome:
    decision: Decision
    notice: Alert | None = None  # what was sent (None when the decision is "none")
    deliveries: list[Delivery] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def deliveries_ok(self) -> int:
        return sum(d.ok for d in self.deliveries)

    @property
    def deliveries_failed(self) -> int:
        return sum(not d.ok for d in self.deliveries)


def reminder(alert: Alert, since: str | None) -> Alert:
    """The same alert again, while the check stays bad."""
    return Alert(kind=alert.kind, severity=alert.severity, as_of=alert.as_of,
                 title=f"Reminder: {alert.title}" + (f" (since {since})" if since else ""),
                 lines=alert.lines, rows=alert.rows, scopes=alert.scopes, event="reminder")


def notify(kind: str, alert: Alert | None, as_of, settings: AlertSettings, alerts_dir: Path,
           resolve_path: Callable[[str], Path], recovery: Callable[[list[str]], Alert], *,
           sleep: Callable[[float], None] = time.sleep, environ: Mapping[str, str] | None = None) -> Outcome:
    """Decide for one alert kind (`alert` is None when the check is good) and act. Never raises
    for a sink, an endpoint or the state file; problems come back as failed deliveries/warnings."""
    warnings = []
    state_path = alerts_dir / STATE_FILE
    try:
        kinds = load_state(state_path)
    except StateError as err:
        warnings.append(f"{err}; starting from an empty alert state")
        kinds = {}
    entry = kinds.get(kind)
    decision = decide(kind, entry, alert.scopes if alert else {}, as_of, settings.reminder_hours)
    notice = None
    if decision.action == "send":
        notice = alert
    elif decision.action == "remind":
        notice = reminder(alert, decision.since)
    elif decision.action == "recover":
        notice = recovery(decision.recovered)
    deliveries = []
    if notice is not None:
        deliveries = deliver(notice, settings.sinks, resolve_path, attempts=settings.attempts,
                             retry_delay=settings.retry_delay, timeout=settings.timeout, sleep=sleep,
                             environ=environ)
        try:
            record_deliveries(alerts_dir / DELIVERIES_FILE, notice, deliveries)
        except OSError as err:
            warnings.append(f"could not record deliveries in {alerts_dir / DELIVERIES_FILE}: {err}")
    delivered = not deliveries or any(d.ok for d in deliveries)
    updated = next_entry(entry, decision, delivered)
    if updated is not None and updated != entry:
        kinds[kind] = updated
        try:
            save_state(state_path, kinds)
        except OSError as err:
            warnings.append(f"could not save the alert state in {state_path}: {err}")
    return Outcome(decision=decision, notice=notice, deliveries=deliveries, warnings=warnings)


def notify_coverage(rows: list[dict], as_of, settings: AlertSettings, alerts_dir: Path,
                    resolve_path: Callable[[str], Path], **options) -> Outcome:
    """The pipeline-coverage alert for one run's coverage rows (main.pipeline_coverage)."""
    as_of_text = str(as_of)
    return notify("pipeline_coverage", coverage_alert(rows, as_of_text), as_of, settings, alerts_dir,
                  resolve_path, lambda recovered: coverage_recovery(rows, recovered, as_of_text), **options)


def notify_check(check: CheckAlert, failing: list[dict], as_of, settings: AlertSettings, alerts_dir: Path,
                 resolve_path: Callable[[str], Path], **options) -> Outcome:
    """The alert of one check for its failing rows (empty: the check passes)."""
    as_of_text = str(as_of)
    return notify(check.kind, check_alert(check, failing, as_of_text), as_of, settings, alerts_dir, resolve_path,
                  lambda recovered: check_recovery(check, recovered, as_of_text), **options)
