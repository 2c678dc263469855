"""Deliver an alert to every sink with retries, and keep a record of each delivery.

A failure is returned as a Delivery (ok=False) and recorded, never raised: a dead endpoint must
not fail the pipeline.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from voronka.alerts.model import Alert, Delivery
from voronka.alerts.sinks import (
    SENDERS,
    MissingSecret,
    SinkError,
    default_name,
    read_secrets,
    redact,
    validate_sink,
)

DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY_DELAY = 0.5  # seconds before the 2nd attempt; doubles after each failure
DEFAULT_TIMEOUT = 10.0  # seconds, per HTTP request or SMTP operation
MAX_RETRY_AFTER = 30.0  # an endpoint's Retry-After is honoured up to this many seconds


def deliver_one(alert: Alert, sink: Mapping, resolve_path: Callable[[str], Path], *, index: int = 0,
                attempts: int = DEFAULT_ATTEMPTS, retry_delay: float = DEFAULT_RETRY_DELAY,
                timeout: float = DEFAULT_TIMEOUT, sleep: Callable[[float], None] = time.sleep,
                environ: Mapping[str, str] | None = None) -> Delivery:
    kind = sink.get("type")
    name = str(sink.get("name") or default_name(sink))
    sender = SENDERS.get(kind)
    if sender is None:
        return Delivery(sink=name, ok=False, detail=f"sink type {kind!r} is not supported", attempts=0)
    try:
        sink = validate_sink(dict(sink), index)  # idempotent; the config has checked it already
        secrets = read_secrets(sink, os.environ if environ is None else environ)
    except ValueError as err:
        return Delivery(sink=name, ok=False, detail=str(err), attempts=0)
    except MissingSecret as err:
        return Delivery(sink=name, ok=False, detail=str(err), attempts=0)
    attempt = 0
    while True:
        attempt += 1
        try:
            detail = sender(sink, alert, secrets, timeout, resolve_path)
            return Delivery(sink=name, ok=True, detail=redact(detail, secrets.values()), attempts=attempt)
        except SinkError as err:
            failure, retry, retry_after = str(err), err.retry, err.retry_after
        except Exception as err:  # a bug in a sink is reported, never raised into the pipeline
            failure, retry, retry_after = f"{type(err).__name__}: {err}", False, None
        if not retry or attempt >= attempts:
            return Delivery(sink=name, ok=False, detail=redact(failure, secrets.values()), attempts=attempt)
        delay = retry_delay * 2 ** (attempt - 1)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        sleep(delay)


def deliver(alert: Alert, sinks, resolve_path: Callable[[str], Path], **options) -> list[Delivery]:
    """Send to every configured sink; `resolve_path` turns a configured path into a Path.

    options: attempts, retry_delay, timeout, sleep (injectable for tests), environ (default:
    os.environ, read now).
    """
    return [deliver_one(alert, sink, resolve_path, index=i, **options) for i, sink in enumerate(sinks)]


def record_deliveries(path: Path, alert: Alert, deliveries: list[Delivery]) -> None:
    """Append one JSON line per delivery: when, which alert, which sink, ok, detail, attempts."""
    if not deliveries:
        return
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for d in deliveries:
            fh.write(json.dumps({"at": now, "as_of": alert.as_of, "kind": alert.kind, "event": alert.event,
                                 "sink": d.sink, "ok": d.ok, "detail": d.detail, "attempts": d.attempts},
                                ensure_ascii=False) + "\n")
