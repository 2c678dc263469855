"""How the checks other than coverage speak in an alert (export freshness, the funnel-health
checks, missing FX rates): the scope
each failing row stands for, its severity and its line. Rows are those of the ml.health verdicts
(plain dicts here: no pandas, no Dagster)."""

from __future__ import annotations

import math

from voronka.alerts.model import CheckAlert, _money

# Every alert kind, in the order a reader meets them; `alert_on` in voronka.yaml picks from these.
ALERT_KINDS = ("pipeline_coverage", "export_freshness", "prob_hit_target", "new_pipeline", "stalled_deals",
               "missing_fx")


def _scope(row: dict) -> str:
    """"<period> <pipeline>", with the segment/owner of a scoped target after it."""
    extra = "".join(f" {key}={row[key]}" for key in ("segment", "owner") if row.get(key))
    return f"{row['period']} {row['pipeline']}{extra}"


def _currency(row: dict) -> str:
    return row.get("currency") or ""


EXPORT_FRESHNESS = CheckAlert(
    kind="export_freshness",
    what="CRM exports late",
    scope=lambda r: str(r["source_system"]),
    # No export at all (source "exports") is an error; a late one a warning.
    severity=lambda r: "error" if r.get("newest_export") is None else "warn",
    line=lambda r: ("no CRM export has been loaded yet: check the export job and the inbox"
                    if r.get("newest_export") is None else
                    f"{r['source_system']}: no export for {r['age_days']:.0f} days (newest {r['newest_export']}, "
                    f"allowed {r['max_age_days']:g}); the forecast and the funnel are as of that export"),
)

PROB_HIT_TARGET = CheckAlert(
    kind="prob_hit_target",
    what="Chance to hit the target below the floor",
    scope=_scope,
    # Below 10% the target is above the forecast's P90: out of reach without a change.
    severity=lambda r: "error" if r["prob_hit_target"] < 0.1 else "warn",
    line=lambda r: (f"{_scope(r)}: {r['prob_hit_target']:.0%} chance to reach the target of "
                    f"{_money(r['target'], _currency(r))}; expected {_money(r['expected'], _currency(r))} "
                    f"(P10–P90 {_money(r['p10'], _currency(r))} – {_money(r['p90'], _currency(r))})"),
)

NEW_PIPELINE = CheckAlert(
    kind="new_pipeline",
    what="The funnel is drying up: new deals short of what the target needs",
    scope=_scope,
    severity=lambda r: "error" if not math.isfinite(r["needed_creation_ratio"]) or r["needed_creation_ratio"] > 2
    else "warn",
    line=lambda r: (f"{_scope(r)}: the target still needs {_money(r['needed_from_new'], _currency(r))} from deals "
                    f"not created yet; at today's creation rate they bring "
                    f"{_money(r['from_new_pipeline'], _currency(r))}"
                    + (f" ({r['needed_creation_ratio']:.1f}x short)" if math.isfinite(r["needed_creation_ratio"])
                       else "")),
)

STALLED_DEALS = CheckAlert(
    kind="stalled_deals",
    what="Too many open deals stalled in their stage",
    scope=lambda r: str(r["pipeline"]),
    severity=lambda r: "warn",
    line=lambda r: (f"{r['pipeline']}: {r['stalled_share']:.0%} of open deals stalled ({r['stalled_deals']} of "
                    f"{r['open_deals']}, {_money(r['stalled_amount'], _currency(r))})"),
)

MISSING_FX = CheckAlert(
    kind="missing_fx",
    what="Deal amounts with no FX rate to the reporting currency",
    scope=lambda r: r["currency"] or "(no currency)",
    severity=lambda r: "error",
    line=lambda r: (f"{r['deals']} deal(s) in {r['currency'] or '(no currency)'} worth "
                    f"{_money(r['amount'], r['currency'] or '').strip()} ({r['open_deals']} open) have no rate to "
                    f"{r['reporting_currency']}: they count as nothing in bookings, the pipeline and the forecast "
                    "until an fx_rates file gives one"),
)
