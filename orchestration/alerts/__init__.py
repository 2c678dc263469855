"""Alert sinks (no Dagster imports): build an alert from coverage rows and deliver it.

Sinks are configured in voronka.yaml; a delivery failure is recorded and returned, never raised,
so a dead endpoint does not fail the pipeline.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class Alert:
    kind: str  # e.g. pipeline_coverage
    severity: str  # warn | error
    as_of: str
    title: str
    lines: list[str]
    rows: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Delivery:
    sink: str
    ok: bool
    detail: str


def _money(amount: float, currency: str) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(amount) >= size:
            return f"{amount / size:,.1f}{unit} {currency}"
    return f"{amount:,.0f} {currency}"


def coverage_alert(rows: list[dict], as_of: str) -> Alert | None:
    """One alert for every period/pipeline whose coverage is below the requirement."""
    bad = [r for r in rows if r["status"] in ("warn", "error")]
    if not bad:
        return None
    severity = "error" if any(r["status"] == "error" for r in bad) else "warn"
    lines = []
    for r in bad:
        lines.append(
            f"{r['pipeline']} {r['period']}: coverage {r['coverage']:.2f}x against "
            f"{r['required_coverage']:.1f}x required; open pipeline {_money(r['open_pipeline'], r['currency'])} "
            f"for a remaining target of {_money(r['gap'], r['currency'])}, short by "
            f"{_money(r['shortfall'], r['currency'])} of pipeline"
        )
    return Alert(
        kind="pipeline_coverage",
        severity=severity,
        as_of=as_of,
        title=f"Pipeline coverage below target in {len(bad)} period/pipeline(s)",
        lines=lines,
        rows=bad,
    )


def write_file_sink(alert: Alert, path: Path) -> Delivery:
    """Append the alert as one JSON line (JSON-encodes every CRM-provided string)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"sent_at": datetime.utcnow().isoformat(timespec="seconds"), **alert.as_dict()}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return Delivery(sink=f"file:{path.name}", ok=True, detail=str(path))


def deliver(alert: Alert, sinks: tuple | list, resolve_path) -> list[Delivery]:
    """Send to every configured sink; `resolve_path` turns a configured path into a Path."""
    results = []
    for sink in sinks:
        kind = sink.get("type")
        try:
            if kind == "file":
                results.append(write_file_sink(alert, resolve_path(sink.get("path", "alerts/alerts.jsonl"))))
            else:
                results.append(Delivery(sink=str(kind), ok=False, detail=f"sink type {kind!r} is not supported yet"))
        except OSError as err:
            results.append(Delivery(sink=str(kind), ok=False, detail=f"{type(err).__name__}: {err}"))
    return results
