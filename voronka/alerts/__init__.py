"""Alerts (no Dagster imports): build an alert, decide whether to send it, deliver it.

- model.py     Alert, Delivery; the coverage alert and its recovery notice; CheckAlert for the others
- state.py     send when a check turns bad, remind while it stays bad, notice when it recovers
               (alerts/state.json in the workspace, keyed on the run's as-of time)
- sinks.py     Slack incoming webhook, generic JSON webhook, email over SMTP, JSON-lines file;
               secrets only from the environment variables the config names, read at send time
- delivery.py  retries with exponential backoff; every delivery recorded in alerts/deliveries.jsonl
- notify.py    one kind, one run: decide → deliver → record → store state (`notify_coverage`,
               `notify_check` for the other checks)
- checks.py    how export freshness and the funnel-health checks speak in an alert (CheckAlert)

Sinks are configured in voronka.yaml; a delivery failure is recorded and returned, never raised,
so a dead endpoint does not fail the pipeline.
"""

from voronka.alerts.delivery import deliver, deliver_one, record_deliveries
from voronka.alerts.model import (
                                        Alert,
                                        CheckAlert,
                                        Delivery,
                                        check_alert,
                                        check_recovery,
                                        coverage_alert,
                                        coverage_recovery,
)
from voronka.alerts.notify import (
                                        AlertSettings,
                                        Outcome,
                                        notify,
                                        notify_check,
                                        notify_coverage,
                                        reminder,
)
from voronka.alerts.sinks import (
                                        SINK_TYPES,
                                        email_message,
                                        slack_escape,
                                        slack_payload,
                                        validate_sinks,
)
from voronka.alerts.state import Decision, decide

__all__ = [
    "Alert", "AlertSettings", "CheckAlert", "Decision", "Delivery", "Outcome", "SINK_TYPES", "check_alert", "check_recovery",
    "coverage_alert", "coverage_recovery", "decide", "deliver", "deliver_one", "email_message",
    "notify", "notify_check", "notify_coverage",
    "record_deliveries", "reminder", "slack_escape", "slack_payload", "validate_sinks",
]
