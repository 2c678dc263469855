"""Formatting of the `voronka` command's output: the column lists of each command, and render(),
which shows rows as a table fitted to the terminal (money headers in the reporting currency,
percentages, coverage), JSON or CSV. Pure formatting: no workspace, no warehouse."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
from datetime import date, datetime

FUNNEL_KEYS = ["pipeline", "stage", "stage_order", "reached", "step_conversion",
               "cumulative_conversion", "lost_here"]
FORECAST_KEYS = ["period", "pipeline", "currency", "target", "booked", "expected", "from_open_pipeline",
                 "from_new_pipeline", "p10", "p50", "p90", "prob_hit_target", "method"]
BACKTEST_METRIC_KEYS = ["method", "horizon", "wape", "wape_mean", "bias", "interval_coverage", "pinball_loss",
                        "n_origins"]
BACKTEST_ORIGIN_KEYS = ["origin", "method", "horizon", "period", "pipeline", "expected", "p10", "p50", "p90",
                        "actual"]
COVERAGE_KEYS = ["period", "pipeline", "target", "booked", "open_pipeline", "coverage",
                 "required_coverage", "status"]
# stage_events_derived: events Voronka derived (from snapshots, or a history's creation events);
# deals_missing / deals_deleted: deals a full export no longer carries / marks deleted or merged.
# flagged: deals loaded with a flag instead of quarantined (is_close_date_only, ...; by flag).
INGEST_KEYS = ["file", "source_system", "rows_read", "rows_loaded", "rows_quarantined", "flagged", "deals",
               "stage_events", "stage_events_derived", "deals_missing", "deals_deleted"]
QUARANTINE_KEYS = ["export_file", "row_number", "reason", "raw_row"]
_CONTROL = str.maketrans({c: " " for c in [*map(chr, range(0, 32)), "\x7f"]})
PERCENT_KEYS = {"step_conversion", "cumulative_conversion", "p_win", "p_win_baseline",
                "p_close_this_period", "p_close_next_period", "prob_hit_target", "drop_off", "win_rate",
                "wape", "wape_mean", "bias", "interval_coverage"}
# Money in the reporting currency (a column named `amount` is in the deal's own currency: not here).
MONEY_KEYS = {"target", "booked", "expected", "p10", "p50", "p90", "open_pipeline", "amount_reporting",
              "gap", "shortfall", "from_open_pipeline", "from_new_pipeline", "won_amount_reporting",
              "target_amount_reporting", "at_risk_amount", "amount_change", "period_amount_reporting"}
CURRENCY_KEYS = ("currency", "reporting_currency")
MIN_TEXT_WIDTH, LONG_TEXT_WIDTH = 12, 32
FUNNEL_TIME_KEYS = ["median_days_in_stage", "p90_days_in_stage", "mean_days_in_stage_closed"]
FUNNEL_BY_FIELDS = ("owner", "lead_source", "segment", "region", "product")
CHANGES_KEYS = ["pipeline", "change_type", "deals", "amount_reporting", "period_deals",
                "period_amount_reporting"]
CHANGED_DEAL_KEYS = ["deal_key", "pipeline", "change_type", "status_from", "status_to", "stage_from",
                     "stage_to", "amount_from_reporting", "amount_to_reporting", "expected_close_date_from",
                     "expected_close_date_to"]

DEAL_KEYS = ["deal_key", "pipeline", "stage", "owner", "amount_reporting", "p_win", "p_win_baseline",
             "expected_close_date", "p_close_this_period", "p_close_next_period", "days_in_stage",
             "is_stalled", "top_drivers"]


def _clean(value):
    if value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _clean(value.item())
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def _compact_money(value: float) -> str:
    a = abs(value)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if a >= size:
            # Three significant digits, as the report shows money: 1.59M, 95.2K, 132K.
            digits = 2 if a < size * 10 else 1 if a < size * 100 else 0
            text = f"{a / size:.{digits}f}{suffix}"
            break
    else:
        text = f"{a:,.0f}"
    return ("-" if value < 0 else "") + text


def _cell(key: str, value, compact: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in PERCENT_KEYS and isinstance(value, (int, float)):
        return f"{value:.1%}"
    if key in MONEY_KEYS and isinstance(value, (int, float)):
        return _compact_money(value) if compact else f"{value:,.0f}"
    if key == "coverage" and isinstance(value, (int, float)):
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:,.2f}"
    text = str(value).replace("\n", " ")
    # A date stored as a midnight timestamp reads as the date.
    return text[:10] if len(text) == 19 and text.endswith("T00:00:00") else text


def _terminal_width() -> int | None:
    """Columns to fit a table into: the terminal's (or $COLUMNS); None when output is piped."""
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((120, 24)).columns


def _common_currency(rows: list[dict], reporting: str | None) -> str | None:
    """The one currency the rows name, else (when they name none) the reporting currency."""
    found = {str(r[k]) for r in rows for k in CURRENCY_KEYS if r.get(k)}
    if len(found) == 1:
        return found.pop()
    return None if found else reporting


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _printable(text, limit: int = 40) -> str:
    """CRM text for a terminal line: control characters (escape sequences, new lines) shown as
    '?', and no longer than `limit`."""
    import unicodedata

    clean = "".join("?" if unicodedata.category(c).startswith("C") else c for c in str(text))
    return _shorten(clean, limit)


def _table(rows: list[dict], keys: list[str], title: str | None, currency: str | None,
           width: int | None) -> str:
    """A text table: money headers carry the currency, percentages and coverage formatted; when
    `width` is given it fits it: compact money (1.74M), then shortened
    headers of number columns, then shortened text, then fewer columns (named in a last line)."""
    shown = [k for k in keys if not (currency and k in CURRENCY_KEYS)]
    numeric = {k: all(isinstance(r[k], (int, float)) or r[k] is None for r in rows) for k in keys}
    limits: dict[str, int] = {}
    hidden: list[str] = []
    compact = False

    def build():
        heads = [f"{k} ({currency})" if currency and k in MONEY_KEYS and not compact else k for k in shown]
        cells = [[_cell(k, r[k], compact) for k in shown] for r in rows]
        for i, k in enumerate(shown):
            if k in limits:
                heads[i] = _shorten(heads[i], limits[k])
                for c in cells:
                    c[i] = _shorten(c[i], limits[k])
        return heads, cells, [max([len(heads[i])] + [len(c[i]) for c in cells]) for i in range(len(shown))]

    while True:
        heads, cells, widths = build()
        excess = sum(widths) + 2 * (len(widths) - 1) - (width or 0)
        if width is None or excess <= 0:
            break
        if not compact and any(k in MONEY_KEYS for k in shown):
            compact = True
            continue
        # Long text first (down to LONG_TEXT_WIDTH), then long headers over short numbers (the
        # one that saves most, no more than needed), then text down to MIN_TEXT_WIDTH.
        long_text = [(w, k) for w, k in zip(widths, shown) if not numeric[k] and w > LONG_TEXT_WIDTH]
        if long_text:
            w, k = max(long_text)
            limits[k] = max(LONG_TEXT_WIDTH, w - excess)
            continue
        spare = [(widths[i] - max([len(c[i]) for c in cells] + [7]), i) for i, k in enumerate(shown) if numeric[k]]
        saving, i = max(spare, default=(0, -1))
        if saving > 0:
            limits[shown[i]] = widths[i] - min(saving, excess)
            continue
        text = [(w, k) for w, k in zip(widths, shown) if not numeric[k] and w > MIN_TEXT_WIDTH]
        if text:
            w, k = max(text)
            limits[k] = max(MIN_TEXT_WIDTH, w - excess)
            continue
        if len(shown) > 2:
            hidden.insert(0, shown.pop())
            continue
        break

    def line(values):
        return "  ".join(v.rjust(w) if numeric[k] else v.ljust(w)
                         for v, w, k in zip(values, widths, shown)).rstrip()

    out = ([title] if title else []) + [line(heads), line(["-" * w for w in widths])]
    out += [line(c) for c in cells] or ["(no rows)"]
    if compact and currency:
        out.append(f"(money in {currency})")
    if hidden:
        out.append(f"({len(hidden)} more column(s) not shown: {', '.join(hidden)}; "
                   "a wider terminal or --format csv|json shows them)")
    return "\n".join(out)


def render(rows: list[dict], keys: list[str], fmt: str, title: str | None = None,
           width: int | None = -1, currency: str | None = None) -> str:
    """rows as a table (fitted to the terminal; width=None: never shortened), JSON or CSV.
    `currency`: the workspace's reporting currency, which money headers name when the rows name none
    (the command that read the workspace gives it)."""
    currency = _common_currency(rows, currency)
    rows = [{k: _clean(r.get(k)) for k in keys} for r in rows]
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            # Neutralise spreadsheet formulas in text a CRM provided.
            writer.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@\t\r" else v)
                             for k, v in r.items()})
        return buf.getvalue().rstrip("\n")
    return _table(rows, keys, title, currency, _terminal_width() if width == -1 else width)
