"""What an alert is; the coverage alert and its recovery notice; the alert of any other check
(CheckAlert: export freshness and the funnel-health checks, voronka/alerts/checks.py)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

EVENTS = ("alert", "reminder", "recovery")


@dataclass
class Alert:
    kind: str  # e.g. pipeline_coverage
    severity: str  # warn | error (ok for a recovery notice)
    as_of: str
    title: str
    lines: list[str]
    rows: list[dict] = field(default_factory=list)
    scopes: dict[str, str] = field(default_factory=dict)  # "<period> <pipeline>" -> warn | error
    event: str = "alert"  # alert | reminder | recovery

    def as_dict(self) -> dict:
        return _jsonable(asdict(self))


@dataclass
class Delivery:
    sink: str
    ok: bool
    detail: str
    attempts: int = 1


def _jsonable(value):
    """NaN and infinities become null, so every payload is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _money(amount: float, currency: str) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(amount) >= size:
            return f"{amount / size:,.1f}{unit} {currency}"
    return f"{amount:,.0f} {currency}"


def coverage_scope(row: dict) -> str:
    """The scope a coverage row speaks for: "<period> <pipeline>" (a period has no space)."""
    return f"{row['period']} {row['pipeline']}"


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
        scopes={coverage_scope(r): r["status"] for r in bad},
    )


def coverage_reminder(alert: Alert, since: str) -> Alert:
    """The same alert, sent again while coverage stays short."""
    return Alert(
        kind=alert.kind, severity=alert.severity, as_of=alert.as_of,
        title=f"Reminder: pipeline coverage still below target in {len(alert.scopes)} "
              f"period/pipeline(s) (since {since})",
        lines=alert.lines, rows=alert.rows, scopes=alert.scopes, event="reminder",
    )


def coverage_recovery(rows: list[dict], recovered: list[str], as_of: str) -> Alert:
    """Every scope that was short is back at or above the required coverage."""
    by_scope = {coverage_scope(r): r for r in rows}
    lines = []
    for scope in recovered:
        r = by_scope.get(scope)
        if r is None:
            period, _, pipeline = scope.partition(" ")
            lines.append(f"{pipeline} {period}: no longer checked (no target in the current periods)")
        elif r.get("coverage") is None:
            lines.append(f"{r['pipeline']} {r['period']}: target already booked")
        else:
            lines.append(f"{r['pipeline']} {r['period']}: coverage {r['coverage']:.2f}x, at or above "
                         f"{r['required_coverage']:.1f}x required")
    return Alert(
        kind="pipeline_coverage",
        severity="ok",
        as_of=as_of,
        title=f"Pipeline coverage back on target in {len(recovered)} period/pipeline(s)",
        lines=lines,
        rows=[by_scope[s] for s in recovered if s in by_scope],
        scopes={},
        event="recovery",
    )


@dataclass(frozen=True)
class CheckAlert:
    """How one funnel-health check speaks in an alert: its kind, what is wrong (for the title),
    and per failing row its scope, severity and one line."""

    kind: str
    what: str  # "P(hit target) below the floor" -> "<what> in 2 scope(s)"
    scope: Callable[[dict], str]
    severity: Callable[[dict], str]  # warn | error
    line: Callable[[dict], str]


def check_alert(check: CheckAlert, rows: list[dict], as_of: str) -> Alert | None:
    """One alert for every failing row of a check (None when none fails)."""
    if not rows:
        return None
    scopes = {check.scope(r): check.severity(r) for r in rows}
    return Alert(kind=check.kind, severity="error" if "error" in scopes.values() else "warn", as_of=as_of,
                 title=f"{check.what} in {len(scopes)} scope(s)", lines=[check.line(r) for r in rows],
                 rows=rows, scopes=scopes)


def check_recovery(check: CheckAlert, recovered: list[str], as_of: str) -> Alert:
    return Alert(kind=check.kind, severity="ok", as_of=as_of,
                 title=f"Back to normal: {check.what.lower()} no longer in {len(recovered)} scope(s)",
                 lines=[f"{s}: passes again" for s in recovered], scopes={}, event="recovery")
