"""The `voronka` command. A user's mistake prints one line and exits 1; only a bug shows a traceback."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

from voronka import progress
from voronka.config import Workspace, resolve_workspace
from voronka.errors import PipelineError, VoronkaUserError, WarehouseBusyError

# EXIT_BUSY: the warehouse is held by a run (or another command) and stayed so for a few seconds.
EXIT_OK, EXIT_USER_ERROR, EXIT_CHECKS_FAILED, EXIT_BUSY = 0, 1, 2, 3

FUNNEL_KEYS = ["pipeline", "stage", "stage_order", "reached", "step_conversion",
               "cumulative_conversion", "lost_here"]
FORECAST_KEYS = ["period", "pipeline", "currency", "target", "booked", "expected", "from_open_pipeline",
                 "from_new_pipeline", "p10", "p50", "p90", "prob_hit_target", "method"]
FORECAST_METHODS = ("model", "weighted_pipeline", "all")
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
# The reporting currency of the workspace last read (money headers say it when rows do not).
_OUTPUT = {"currency": None}


class UserError(VoronkaUserError):
    pass


# ---------------------------------------------------------------- output

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


def _common_currency(rows: list[dict]) -> str | None:
    found = {str(r[k]) for r in rows for k in CURRENCY_KEYS if r.get(k)}
    if len(found) == 1:
        return found.pop()
    return None if found else _OUTPUT["currency"]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
           width: int | None = -1) -> str:
    """rows as a table (fitted to the terminal; width=None: never shortened), JSON or CSV."""
    currency = _common_currency(rows)
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


def _progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- reads

def _connect_read_only(workspace: Workspace):
    """The warehouse, read-only. While a run holds it (DuckDB: one writing process, and no reader
    beside it) wait a few seconds, then WarehouseBusyError: one line, exit EXIT_BUSY."""
    from voronka.warehouse_access import READ_WAIT_SECONDS, open_warehouse

    if not workspace.warehouse.exists():
        raise UserError(f"no warehouse at {workspace.warehouse}: run `voronka demo` or `voronka run` first")
    return open_warehouse(workspace.warehouse, read_only=True, wait_seconds=READ_WAIT_SECONDS)


def _read(workspace: Workspace, table: str, order_by: str, where: str = "", params=None) -> list[dict]:
    _OUTPUT["currency"] = workspace.config().reporting_currency
    con = _connect_read_only(workspace)
    try:
        from voronka.warehouse_reads import table_exists

        if not table_exists(con, table):
            raise UserError(f"{table} is not built yet in {workspace.warehouse}: run `voronka run` first")
        frame = con.execute(f"select * from {table} {where} order by {order_by}", params or []).df()
    finally:
        con.close()
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _pipeline_filter(pipeline: str | None) -> tuple[str, list]:
    return ("where pipeline = ?", [pipeline]) if pipeline else ("", [])


def funnel_rows(workspace: Workspace, pipeline: str | None = None) -> list[dict]:
    where, params = _pipeline_filter(pipeline)
    return _read(workspace, "main.mart_funnel_conversion", "pipeline, stage_order", where, params)


def forecast_rows(workspace: Workspace, pipeline: str | None = None, method: str = "model",
                  quiet: bool = True) -> list[dict]:
    """Forecast rows of one method ('model' by default, falling back to the weighted pipeline
    when no model forecast was made yet) or of both ('all'). A row scoped to a segment or an
    owner shows it after the pipeline ('all segment=Enterprise')."""
    where, params = _pipeline_filter(pipeline)
    rows = _read(workspace, "main.revenue_forecast",
                 "period_grain desc, period, pipeline = 'all' desc, pipeline, segment nulls first, "
                 "owner nulls first, method", where, params)
    if method != "all":
        chosen = [r for r in rows if r.get("method") == method]
        if not chosen and method == "model" and rows:
            _progress("no model forecast yet (no trained models): showing the weighted pipeline; "
                      "`voronka run --retrain` trains them", quiet)
            chosen = [r for r in rows if r.get("method") == "weighted_pipeline"]
        rows = chosen
    for r in rows:
        scope = [f"{k}={r[k]}" for k in ("segment", "owner") if r.get(k) is not None]
        if scope:
            r["pipeline"] = " ".join([str(r["pipeline"]), *scope])
    return rows


def backtest_tables(workspace: Workspace) -> tuple[list[dict], list[dict]]:
    """(per-origin rows, metrics per method and horizon) from main.backtest_results."""
    import pandas as pd

    from ml.backtest import backtest_metrics

    origins = _read(workspace, "main.backtest_results", "origin, method, horizon, pipeline = 'all' desc, pipeline")
    if not origins:
        return [], []
    metrics = backtest_metrics(pd.DataFrame(origins).astype({k: float for k in ("expected", "p10", "p50", "p90",
                                                                                  "actual")}))
    return origins, metrics.astype(object).where(metrics.notna(), None).to_dict("records")


def coverage_rows(workspace: Workspace, pipeline: str | None = None) -> list[dict]:
    where, params = _pipeline_filter(pipeline)
    return _read(workspace, "main.pipeline_coverage",
                 "period_grain desc, period, pipeline = 'all' desc, pipeline", where, params)


def no_coverage_reason(workspace: Workspace) -> str:
    """Why coverage has no row: no target loaded (and how to add one), or none for the current
    periods."""
    from ml.coverage import NO_TARGET
    from voronka.warehouse_reads import table_exists

    con = _connect_read_only(workspace)
    try:
        targets = con.execute("select count(*) from raw.targets").fetchone()[0] \
            if table_exists(con, "raw.targets") else 0
    finally:
        con.close()
    return NO_TARGET if not targets else "no target for this or next month or quarter"


# ---------------------------------------------------------------- commands

def cmd_demo(args) -> int:
    import re

    from voronka.simulator.company import simulate_company
    from voronka.simulator.native_writers import EXPORT_TIMEZONES, write_native

    messy = bool(getattr(args, "messy", False) or getattr(args, "messy_quirks", None) is not None)
    crm = getattr(args, "crm", None) or "canonical"
    if messy:
        from voronka.simulator.messy import MESSY_CRM, parse_quirks, simulate_messy
        from voronka.simulator.messy_export import write_messy

        try:
            quirks = parse_quirks(getattr(args, "messy_quirks", None))
        except ValueError as err:
            raise UserError(f"--messy-quirks: {err}") from None
        if getattr(args, "crm", None) not in (None, "canonical", MESSY_CRM):  # canonical: the default
            raise UserError(f"--messy writes a {MESSY_CRM} export (the CRM where these quirks occur): "
                            "leave out --crm")
        crm = MESSY_CRM
    workspace = resolve_workspace(args.workspace).create()
    end_date = _parse_date(args.end_date, "--end-date") if args.end_date else datetime.utcnow().date()
    before = {p.name for p in workspace.inbox.iterdir() if p.is_file() and not p.name.startswith(".")}
    if messy:
        company = simulate_messy(n_deals=args.deals, seed=args.seed, end_date=end_date, quirks=quirks)
        _progress(f"Simulated a messy company: {len(company.company.deals):,} deals, seed {args.seed}, "
                  f"up to {end_date}, quirks: {', '.join(quirks) or 'none'} ...", args.quiet)
        written = write_messy(company, workspace.inbox, workspace.home / "truth")
    else:
        n_deals = args.deals if args.deals is not None else 5000
        _progress(f"Simulating a demo company: {n_deals:,} deals, seed {args.seed}, up to {end_date} ...",
                  args.quiet)
        company = simulate_company(n_deals=n_deals, seed=args.seed, end_date=end_date)
        written = write_native(company, workspace.inbox, crm, workspace.home / "truth")
    _progress(f"Wrote {len(written)} {crm} export files to {workspace.inbox}", args.quiet)
    others = sorted(before - {p.name for p in written})
    if others:
        _progress(f"Note: the inbox also holds {len(others)} other file(s) ({', '.join(others[:3])}"
                  f"{' …' if len(others) > 3 else ''}); they are loaded too: use a new --workspace to "
                  f"see the {crm} export alone", args.quiet)
    # Local times in the export are read in the workspace's `timezone`: set it to the export's zone.
    zone = EXPORT_TIMEZONES[crm]
    if workspace.config().timezone != zone:
        text = workspace.config_path.read_text(encoding="utf-8")
        text, found = re.subn(r"(?m)^timezone:[ \t]*[^#\n]*?([ \t]*#.*)?$",
                              lambda m: f"timezone: {zone}" + (m.group(1) or ""), text, count=1)
        if not found:
            text = text.rstrip("\n") + f"\ntimezone: {zone}\n"
        workspace.config_path.write_text(text, encoding="utf-8")
        _progress(f"Set timezone: {zone} in {workspace.config_path} (the zone of the {crm} export)", args.quiet)
    from orchestration.runner import (
        run_pipeline,  # Dagster: only the commands that run the graph
    )

    outcome = _run_reporting_ingest(workspace, lambda: run_pipeline(workspace, quiet=args.quiet, retrain=True))
    _print_summary(workspace, args.format)
    _print_data_warnings(workspace)
    if _print_ingest_problems(workspace):
        return EXIT_USER_ERROR
    return _exit_for_checks(outcome, args)


def cmd_run(args) -> int:
    workspace = resolve_workspace(args.workspace)
    as_of = _parse_date(args.as_of, "--as-of").isoformat() + " 23:59:59" if args.as_of else None
    from orchestration.runner import (
        run_pipeline,  # Dagster: only the commands that run the graph
    )

    outcome = _run_reporting_ingest(workspace, lambda: run_pipeline(workspace, as_of=as_of, quiet=args.quiet,
                                                                    retrain=args.retrain))
    _print_summary(workspace, args.format)
    _print_data_warnings(workspace)
    if _print_ingest_problems(workspace):
        return EXIT_USER_ERROR
    return _exit_for_checks(outcome, args)


def _run_reporting_ingest(workspace: Workspace, run):
    """Run the pipeline; if a later stage fails, the inbox files refused or mostly quarantined are
    said first (they are often why)."""
    from voronka.ingest.summary import SUMMARY_FILE

    (workspace.home / "logs" / SUMMARY_FILE).unlink(missing_ok=True)  # this run's, not a stale one
    try:
        return run()
    except PipelineError:
        _print_ingest_problems(workspace)
        raise


def _print_ingest_problems(workspace: Workspace) -> bool:
    """The ingest asset's problem lines (refused inbox files, files above the quarantine limit),
    one line each on stderr; True when there were any."""
    from voronka.ingest.summary import read_summary

    summary = read_summary(workspace.home / "logs") or {}
    for line in summary.get("problems", []):
        print(f"voronka: {line}", file=sys.stderr)
    return bool(summary.get("problems"))


def cmd_ingest(args) -> int:
    from voronka.ingest.loader import load_files
    from voronka.ingest.summary import problem_lines
    from voronka.warehouse_access import READ_WAIT_SECONDS, open_warehouse

    workspace = resolve_workspace(args.workspace).create()
    config = workspace.config()
    targets = []
    for raw in args.paths:
        path = Path(raw)
        if not path.is_file():
            raise UserError(f"no such file: {raw}")
        target = workspace.inbox / path.name
        if path.resolve() != target.resolve():
            shutil.copy2(path, target)
        targets.append(target)
    con = open_warehouse(workspace.warehouse, read_only=False, wait_seconds=READ_WAIT_SECONDS)
    try:
        with progress.shown(args.quiet), progress.task("ingest", total=2 * len(targets)) as bar:
            results = load_files(con, targets, source=args.source, progress=bar.message,
                                 mapping=Path(args.mapping) if args.mapping else None,
                                 timezone=args.timezone or config.timezone,
                                 currency=args.currency, sources=workspace.sources(),
                                 stage_outcomes=config.stage_outcomes)
    finally:
        con.close()
    for r in results:
        if r.status == "already_loaded":
            _progress(f"{r.file}: already loaded (same content), nothing to do", args.quiet)
    rows = [{**r.as_dict(), "flagged": r.flagged_text() or None} for r in results if r.status == "loaded"]
    print(render(rows, INGEST_KEYS, args.format))
    if args.mapping and any(r.status == "loaded" for r in results):
        _remember_source(workspace, Path(args.mapping), [t.name for t in targets], args.quiet)
    problems = problem_lines(results, config.max_quarantined_share)
    for line in problems:
        print(f"voronka: {line}", file=sys.stderr)
    return EXIT_USER_ERROR if problems else EXIT_OK


def source_pattern(file_name: str) -> str:
    """A glob that matches the next exports of the same source: the digits of a date or a counter
    become '*' ('deals_2024-05-01.csv' -> 'deals_*.csv'); a name without digits is kept."""
    import re

    stem, dot, ext = file_name.rpartition(".")
    if not dot:
        stem, ext = file_name, ""
    pattern = re.sub(r"\d+(?:[-_. ]\d+)*", "*", stem)
    return pattern + (f".{ext}" if ext else "")


def _remember_source(workspace: Workspace, mapping: Path, files: list[str], quiet: bool) -> None:
    """Record in voronka.yaml `sources` that exports named like `files` are read with `mapping`, so
    the inbox (`voronka run`, the Dagster sensor) reads the next ones with it; or say how to."""
    import fnmatch

    import yaml

    known = workspace.sources()
    resolved = mapping.resolve()
    patterns = []
    for name in files:
        match = next((m for p, m in known if fnmatch.fnmatch(name, p)), None)
        if match is not None:
            if match.resolve() != resolved:
                print(f"voronka: note: {name} matches a `sources` entry of {workspace.config_path} with "
                      f"another mapping ({match}); the inbox reads its next exports with that one", file=sys.stderr)
            continue
        pattern = source_pattern(name)
        if pattern not in patterns:
            patterns.append(pattern)
    if not patterns:
        return
    try:
        shown = resolved.relative_to(workspace.home)
    except ValueError:
        shown = resolved
    entries = "".join(f"  - pattern: {json.dumps(p, ensure_ascii=False)}\n"
                      f"    mapping: {json.dumps(str(shown), ensure_ascii=False)}\n" for p in patterns)
    text = workspace.config_path.read_text(encoding="utf-8") if workspace.config_path.exists() else ""
    data = yaml.safe_load(text) or {} if text else {}
    if "sources" in data:  # an existing list is the user's: say what to add rather than rewrite it
        print(f"voronka: to read the next exports of this source from the inbox, add to `sources:` in "
              f"{workspace.config_path}:\n{entries.rstrip()}", file=sys.stderr)
        return
    block = "# Exports read with a column mapping (docs/mapping.md); added by `voronka ingest --mapping`.\n" \
            "sources:\n" + entries
    workspace.config_path.write_text(text.rstrip("\n") + ("\n" if text else "") + block, encoding="utf-8")
    workspace.config()  # still valid
    _progress(f"Remembered in {workspace.config_path}: exports named {', '.join(patterns)} are read with "
              f"{shown} (the inbox, `voronka run` and the Dagster sensor use it)", quiet)


def quarantine_rows(workspace: Workspace, export_file: str | None = None) -> list[dict]:
    """raw.quarantine (file, row, reason, the row as read), newest load first."""
    con = _connect_read_only(workspace)
    try:
        from voronka.warehouse_reads import table_exists

        if not table_exists(con, "raw.quarantine"):
            return []
        where, params = ("where q.export_file = ?", [export_file]) if export_file else ("", [])
        frame = con.execute(f"""
            select q.export_file, q.row_number, q.reason, cast(q.raw_row as varchar) as raw_row
            from raw.quarantine q
            left join (select export_file, max(loaded_at) as loaded_at from raw.ingest_log group by 1) l
                on l.export_file = q.export_file
            {where}
            order by l.loaded_at desc nulls last, q.export_file, q.row_number
        """, params).df()
    finally:
        con.close()
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def cmd_quarantine(args) -> int:
    workspace = resolve_workspace(args.workspace)
    rows = quarantine_rows(workspace, args.file)
    if args.file and not rows:
        _progress(f"no quarantined rows of {args.file} (file names: `voronka quarantine` lists all)", args.quiet)
    if args.out:
        import pandas as pd

        from voronka.report.export import ExportError, export_frame

        try:
            n = export_frame(pd.DataFrame(rows, columns=QUARANTINE_KEYS), Path(args.out), sheet="quarantine")
        except ExportError as err:
            raise UserError(str(err)) from None
        except OSError as err:
            raise UserError(f"cannot write {args.out}: {err.strerror or err}") from None
        print(render([{"table": "raw.quarantine", "file": args.out, "rows": n}], ["table", "file", "rows"],
                     args.format))
        return EXIT_OK
    if args.format == "table":  # CRM text on a terminal: no control characters, the row shortened
        rows = [{**r, "raw_row": str(r["raw_row"] or "").translate(_CONTROL)[:200],
                 "reason": str(r["reason"]).translate(_CONTROL)} for r in rows]
    print(render(rows, QUARANTINE_KEYS, args.format,
                 title=f"Quarantined rows ({len(rows)}): rows that could not be placed, with the reason"))
    return EXIT_OK


def cmd_funnel(args) -> int:
    """The funnel per pipeline stage with time in stage (Kaplan–Meier median and p90, and the naive
    mean of the finished stays); --by an attribute or --cohort week|month splits it; --as-of
    rebuilds it as of another date in a scratch copy (the workspace's warehouse is not touched)."""
    workspace = resolve_workspace(args.workspace)
    if args.by and args.cohort:
        raise UserError("funnel: --by and --cohort cannot be combined; choose one")
    breakdown = args.by or (f"created_{args.cohort}" if args.cohort else "all")
    where, params = "where breakdown = ?", [breakdown]
    if args.pipeline:
        where, params = where + " and pipeline = ?", params + [args.pipeline]
    order = "pipeline, breakdown_value, stage_kind = 'won', stage_order, stage"
    if args.as_of:
        as_of = _parse_date(args.as_of, "--as-of").isoformat() + " 23:59:59"
        rows = _rows_built_with(workspace, "mart_funnel_breakdowns", order, where, params,
                                {"as_of": as_of}, args.quiet)
    else:
        try:
            rows = _read(workspace, "main.mart_funnel_breakdowns", order, where, params)
        except UserError:
            if breakdown != "all":
                raise
            rows = funnel_rows(workspace, args.pipeline)  # a warehouse built before the breakdowns
    column = args.by or ("cohort" if args.cohort else None)
    for r in rows:
        if column:
            r[column] = r.get("breakdown_value")
    keys = (FUNNEL_KEYS[:1] + ([column] if column else []) + FUNNEL_KEYS[1:]
            + (["is_immature"] if args.cohort else []) + FUNNEL_TIME_KEYS)
    if args.format != "table":
        keys.append("closed_unknown_deals")  # per pipeline (and breakdown value), on each of its rows
    print(render(rows, keys, args.format))
    if args.format == "table":
        _print_closed_unknown(rows, column)
    return EXIT_OK


def _print_closed_unknown(rows: list[dict], column: str | None) -> None:
    """The closed deals of unknown outcome are in no stage's won or lost count: say how many, per
    pipeline, and how to settle them."""
    counts = {}
    for r in rows:
        if r.get("closed_unknown_deals"):
            counts[(r["pipeline"], r.get(column) if column else None)] = r["closed_unknown_deals"]
    if counts:
        where = ", ".join(f"{p}{f' / {v}' if v is not None else ''}: {n:,}" for (p, v), n in counts.items())
        print(f"Closed with an unknown outcome (counted in no stage's won or lost): {where}. "
              "Settle them with stage_outcomes in voronka.yaml (docs/configuration.md).")


# ---------------------------------------------------------------- funnel and changes helpers

FUNNEL_TIME_KEYS = ["median_days_in_stage", "p90_days_in_stage", "mean_days_in_stage_closed"]
FUNNEL_BY_FIELDS = ("owner", "lead_source", "segment", "region", "product")
CHANGES_KEYS = ["pipeline", "change_type", "deals", "amount_reporting", "period_deals",
                "period_amount_reporting"]
CHANGED_DEAL_KEYS = ["deal_key", "pipeline", "change_type", "status_from", "status_to", "stage_from",
                     "stage_to", "amount_from_reporting", "amount_to_reporting", "expected_close_date_from",
                     "expected_close_date_to"]
DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


def cmd_changes(args) -> int:
    """The pipeline waterfall between two dates (or, with --deals, the deals that changed): the
    built mart (the 7 days up to the run's as-of) unless --from/--to/--period ask for another
    window, which is then built in a scratch copy."""
    import re

    workspace = resolve_workspace(args.workspace)
    window = {}
    if args.from_date:
        window["from_date"] = _parse_date(args.from_date, "--from").isoformat()
    if args.to_date:
        window["to_date"] = _parse_date(args.to_date, "--to").isoformat()
    if "from_date" in window and "to_date" in window and window["from_date"] > window["to_date"]:
        raise UserError(f"changes: --from {window['from_date']} is after --to {window['to_date']}")
    if args.period:
        period = args.period.strip().upper()
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2]|Q[1-4])", period):
            raise UserError(f"--period: not a period: {args.period!r} (expected YYYY-MM or YYYY-Qn)")
        window["changes_period"] = period
    table = "fct_pipeline_changes" if args.deals else "mart_pipeline_waterfall"
    clauses, params = [], []
    if args.pipeline:
        clauses, params = ["pipeline = ?"], [args.pipeline]
    if args.deals:
        clauses.append("change_type <> 'unchanged'")
    where = ("where " + " and ".join(clauses)) if clauses else ""
    order = "pipeline, change_type, deal_key" if args.deals else "pipeline = 'all' desc, pipeline, step_order"
    if window:
        rows = _rows_built_with(workspace, table, order, where, params, window, args.quiet)
    else:
        rows = _read(workspace, f"main.{table}", order, where, params)
    title = None
    if rows:
        first = rows[0]
        title = (f"Pipeline changes from {_clean(first['from_at'])} to {_clean(first['to_at'])} "
                 f"(period columns: deals expected to close in {first['close_period']})")
    print(render(rows, CHANGED_DEAL_KEYS if args.deals else CHANGES_KEYS, args.format, title=title))
    return EXIT_OK


def _rows_built_with(workspace: Workspace, model: str, order_by: str, where: str, params: list,
                     dbt_vars: dict, quiet: bool) -> list[dict]:
    """Rows of `model` built with other dbt vars (as_of, from_date ...) in a scratch copy of the
    workspace's raw tables; the workspace's warehouse is only read."""
    import duckdb

    scratch = _scratch_build(workspace, model, dbt_vars, quiet)
    try:
        con = duckdb.connect(str(scratch / "warehouse.duckdb"), read_only=True)
        try:
            frame = con.execute(f"select * from main.{model} {where} order by {order_by}", params).df()
        finally:
            con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _scratch_build(workspace: Workspace, model: str, dbt_vars: dict, quiet: bool) -> Path:
    """A temporary folder whose warehouse.duckdb holds a copy of the workspace's raw.* tables and
    `model` with everything it needs, built by `dbt run` with `dbt_vars` (plus the workspace's
    reporting currency). The caller removes the folder."""
    import tempfile

    import duckdb

    from voronka.warehouse_access import READ_WAIT_SECONDS, retry_while_locked

    if not workspace.warehouse.exists():
        raise UserError(f"no warehouse at {workspace.warehouse}: run `voronka demo` or `voronka run` first")
    scratch = Path(tempfile.mkdtemp(prefix="voronka-"))
    warehouse = scratch / "warehouse.duckdb"
    try:
        con = duckdb.connect(str(warehouse))
        try:
            source = str(workspace.warehouse).replace("'", "''")
            retry_while_locked(lambda: con.execute(f"attach '{source}' as workspace_warehouse (read_only)"),
                               workspace.warehouse, READ_WAIT_SECONDS)
            tables = [t for (t,) in con.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = 'workspace_warehouse' and table_schema = 'raw'").fetchall()]
            if "deals" not in tables:
                raise UserError(f"{workspace.warehouse} has no raw.deals yet: run `voronka run` first")
            con.execute("create schema raw")
            for table in tables:
                con.execute(f'create table raw."{table}" as select * from workspace_warehouse.raw."{table}"')
        finally:
            con.close()
    except duckdb.Error as err:
        shutil.rmtree(scratch, ignore_errors=True)
        raise UserError(f"cannot read {workspace.warehouse}: {str(err).splitlines()[0]}") from None
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    settings = {"reporting_currency": workspace.config().reporting_currency, **dbt_vars}
    _progress(f"Building {model} with {json.dumps(dbt_vars)} in a scratch copy of the warehouse ...", quiet)
    dbt = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"
    command = [dbt, "run", "--select", f"+{model}", "--vars", json.dumps(settings), "--quiet",
               "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
               "--target-path", str(scratch / "target"), "--log-path", str(scratch / "logs")]
    done = subprocess.run(command, env={**os.environ, "VORONKA_WAREHOUSE": str(warehouse)},
                          capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
        reason = next((line for line in lines if "error" in line.lower() and "var " in line.lower()),
                      next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "?"))
        raise UserError(f"could not build {model} with {json.dumps(dbt_vars)}: {reason}")
    return scratch


def cmd_forecast(args) -> int:
    rows = forecast_rows(resolve_workspace(args.workspace), args.pipeline, args.method, args.quiet)
    print(render(rows, FORECAST_KEYS, args.format))
    return EXIT_OK


def cmd_backtest(args) -> int:
    workspace = resolve_workspace(args.workspace)
    try:
        origins, metrics = backtest_tables(workspace)
    except UserError as err:
        if "not built yet" in str(err):
            raise UserError(f"no backtest in {workspace.warehouse} yet: it runs with the weekly retraining "
                            "(`voronka run --retrain`)") from None
        raise
    if args.format == "json":
        print(json.dumps({"origins": json.loads(render(origins, BACKTEST_ORIGIN_KEYS, "json")),
                          "metrics": json.loads(render(metrics, BACKTEST_METRIC_KEYS, "json"))},
                         ensure_ascii=False, indent=2))
    elif args.format == "csv":
        print(render(metrics, BACKTEST_METRIC_KEYS, "csv"))
    else:
        dates = sorted({str(r["origin"])[:10] for r in origins})
        title = (f"Backtest over {len(dates)} origins ({dates[0]} … {dates[-1]}), pipelines together; "
                 "interval = P10–P90, 80% is right" if dates else "Backtest")
        print(render(metrics, BACKTEST_METRIC_KEYS, "table", title=title))
    return EXIT_OK


def cmd_coverage(args) -> int:
    workspace = resolve_workspace(args.workspace)
    rows = coverage_rows(workspace, args.pipeline)
    if rows or args.format != "table":
        print(render(rows, COVERAGE_KEYS, args.format))
    if not rows:  # no target is not an error: say so, and how to add one
        note = f"Pipeline coverage: {no_coverage_reason(workspace)}"
        if args.format == "table":
            print(note)
        else:
            _progress(note, args.quiet)
    if args.fail_on_check and any(r["status"] != "ok" for r in rows):
        return EXIT_CHECKS_FAILED
    return EXIT_OK


DEAL_KEYS = ["deal_key", "pipeline", "stage", "owner", "amount_reporting", "p_win", "p_win_baseline",
             "expected_close_date", "p_close_this_period", "p_close_next_period", "days_in_stage",
             "is_stalled", "top_drivers"]


def cmd_deals(args) -> int:
    clauses, params = [], []
    if args.pipeline:
        clauses.append("pipeline = ?")
        params.append(args.pipeline)
    if args.stalled:
        clauses.append("is_stalled")
    where = ("where " + " and ".join(clauses)) if clauses else ""
    rows = _read(resolve_workspace(args.workspace), "main.deal_scores",
                 "amount_reporting * p_win desc", where, params)
    if args.limit > 0:
        rows = rows[:args.limit]
    print(render(rows, DEAL_KEYS, args.format))
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from ml.registry import ModelNotFoundError, model_evaluation

    workspace = resolve_workspace(args.workspace)
    try:
        evaluation = model_evaluation(workspace.model_store())
    except ModelNotFoundError as err:
        raise UserError(str(err)) from None
    if args.format == "json":
        print(json.dumps(evaluation, indent=2))
    else:
        rows = [{"model": name, **{k: v for k, v in figures.items()}} for name, figures in evaluation.items()]
        keys = ["model", "version"] + sorted({k for r in rows for k in r} - {"model", "version"})
        print(render(rows, keys, args.format))
    return EXIT_OK




def cmd_report(args) -> int:
    from voronka.report.data import report_data
    from voronka.report.render import LATEST_NAME, render_report, write_report
    from voronka.report.summary import headline_lines, headline_summary

    workspace = resolve_workspace(args.workspace)
    con = _connect_read_only(workspace)
    try:
        data = report_data(con, models_dir=workspace.model_store())
    finally:
        con.close()
    html = render_report(data)
    try:
        if args.out:
            out = Path(args.out)
            out = out / LATEST_NAME if out.is_dir() else out
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(html, encoding="utf-8")
        else:
            out, _ = write_report(html, workspace.reports, data["as_of"])
    except OSError as err:
        raise UserError(f"cannot write the report to {args.out or workspace.reports}: {err.strerror or err}") from None
    summary = {"path": str(out), **headline_summary(data)}
    if args.format == "table":
        print(f"Report: {out}")
        if not args.quiet:
            for line in headline_lines(data):
                print(f"  {line}")
    else:
        print(render([summary], list(summary), args.format))
    return EXIT_OK


def cmd_export(args) -> int:
    from voronka.report.export import ExportError, export_table

    workspace = resolve_workspace(args.workspace)
    out = Path(args.out)
    con = _connect_read_only(workspace)
    try:
        rows = export_table(con, args.table, out)
    except ExportError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot write {out}: {err.strerror or err}") from None
    finally:
        con.close()
    table = args.table if args.table.startswith(("main.", "raw.")) else \
        "raw.quarantine" if args.table == "quarantine" else f"main.{args.table}"
    print(render([{"table": table, "file": str(out), "rows": rows}], ["table", "file", "rows"], args.format))
    return EXIT_OK


def cmd_ui(args) -> int:
    workspace = resolve_workspace(args.workspace).create()
    env = {**os.environ, "VORONKA_HOME": str(workspace.home), "DAGSTER_HOME": str(workspace.dagster_home)}
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    cmd = [dagster, "dev", "-m", "orchestration.definitions", "--port", str(args.port)]
    print(f"Dagster UI on http://127.0.0.1:{args.port} (workspace {workspace.home}); Ctrl-C stops it",
          file=sys.stderr)
    return run_until_stopped(cmd, env, grace_seconds=args.stop_timeout)


# dagster dev stops its webserver and daemon on SIGINT (on SIGTERM it would die and leave them).
UI_STOP_SIGNAL = signal.SIGINT
UI_STOP_GRACE_SECONDS = 30.0


def run_until_stopped(cmd: list[str], env: dict, grace_seconds: float = UI_STOP_GRACE_SECONDS) -> int:
    """Run `cmd` (dagster dev) as a child in its own session, so a terminal's Ctrl-C reaches
    only us; on SIGTERM or SIGINT send it UI_STOP_SIGNAL once, wait for it to stop (its whole
    process group is killed after `grace_seconds`) and return 0. A child that ends by itself
    returns its own exit code.

    Our handlers are installed before the child starts: a started process inherits an ignored
    signal, and a shell starts background jobs with SIGINT ignored; dagster dev, starting with
    SIGINT ignored, would ignore SIGINT and SIGTERM alike (it maps SIGTERM to its SIGINT
    handler). A caught signal is reset to its default in the child instead."""
    child: list[subprocess.Popen] = []
    stop_asked_at: list[float] = []

    def forward(signum, frame):
        if not stop_asked_at:
            stop_asked_at.append(time.monotonic())
            print(f"voronka: stopping the Dagster UI ({signal.Signals(signum).name}) ...", file=sys.stderr)
            if child:
                child[0].send_signal(UI_STOP_SIGNAL)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        child.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        if stop_asked_at:  # a signal came while it was starting
            child[0].send_signal(UI_STOP_SIGNAL)
        killed = False
        while True:
            try:
                code = child[0].wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stop_asked_at and not killed and time.monotonic() - stop_asked_at[0] > grace_seconds:
                    print(f"voronka: the Dagster UI did not stop within {grace_seconds:g} s: killed",
                          file=sys.stderr)
                    with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                        os.killpg(child[0].pid, signal.SIGKILL)
                    killed = True
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return EXIT_OK if stop_asked_at else code


def _print_summary(workspace: Workspace, fmt: str) -> None:
    funnel, forecast, coverage = funnel_rows(workspace), forecast_rows(workspace), coverage_rows(workspace)
    method = forecast[0]["method"] if forecast else "model"
    if fmt == "json":
        print(json.dumps({
            "funnel": json.loads(render(funnel, FUNNEL_KEYS, "json")),
            "forecast": json.loads(render(forecast, FORECAST_KEYS, "json")),
            "coverage": json.loads(render(coverage, COVERAGE_KEYS, "json")),
            "warehouse": str(workspace.warehouse),
        }, ensure_ascii=False, indent=2))
        return
    print(render(funnel, FUNNEL_KEYS, "table", title="\nFunnel (reached = deals that got to the stage or beyond)"))
    title = ("\nForecast (model: win probability x time to close, plus deals not yet created; P10–P90 from "
             "Monte Carlo; `voronka forecast --method weighted_pipeline` shows the CRM baseline)"
             if method == "model" else "\nForecast (weighted pipeline baseline; P10–P90 from Monte Carlo)")
    print(render(forecast, FORECAST_KEYS, "table", title=title))
    if coverage:
        print(render(coverage, COVERAGE_KEYS, "table", title="\nPipeline coverage"))
    else:
        print(f"\nPipeline coverage: {no_coverage_reason(workspace)}")
    alerts = workspace.home / "alerts" / "alerts.jsonl"
    print(f"\nWarehouse: {workspace.warehouse}")
    if alerts.exists():
        print(f"Alerts:    {alerts}")
    print(f"Dagster:   voronka ui --workspace {workspace.home}")


def _printable(text, limit: int = 40) -> str:
    """CRM text for a terminal line: control characters (escape sequences, new lines) shown as
    '?', and no longer than `limit`."""
    import unicodedata

    clean = "".join("?" if unicodedata.category(c).startswith("C") else c for c in str(text))
    return _shorten(clean, limit)


def missing_fx_lines(workspace: Workspace) -> list[str]:
    """One line per currency whose deal amounts have no rate to the reporting currency (the
    amounts_convert_to_reporting_currency check): never a silent 0 in the forecast."""
    from voronka.warehouse_reads import deals_without_fx

    con = _connect_read_only(workspace)
    try:
        by_currency = deals_without_fx(con)
    finally:
        con.close()
    reporting = _printable(workspace.config().reporting_currency)
    lines = []
    for r in by_currency.itertuples():
        currency = _printable(r.currency) if r.currency else "(no currency)"
        lines.append(f"Missing FX: {r.deals} deal(s) in {currency} worth {r.amount:,.0f} {currency} "
                     f"({r.open_deals} open) have no rate to {reporting}: they count as 0 in bookings, the "
                     f"pipeline and the forecast; add {currency} rates to an fx_rates CSV in the inbox "
                     "(docs/crm-exports.md#targets-fx-rates-and-marketing-spend)")
    return lines


def _print_data_warnings(workspace: Workspace) -> None:
    """Data a run could not use in full, on stderr even with --quiet (it changes the figures).
    A run that built no warehouse has nothing to warn about (its own failure was said)."""
    if not workspace.warehouse.exists():
        return
    for line in missing_fx_lines(workspace):
        print(line, file=sys.stderr)


def _exit_for_checks(outcome: dict, args) -> int:
    # Why a model is not what scores the deals (short history, refused, another workspace's).
    for line in outcome.get("model_notes") or []:
        _progress(f"Models: {line}", args.quiet)
    if outcome["checks_failed"]:
        _progress("Checks that did not pass: " + ", ".join(outcome["checks_failed"]), args.quiet)
        if any(c.endswith(":model_quality_gate") for c in outcome["checks_failed"]):
            _progress("  (a model that is not better than its baseline is stored but not used: the version "
                      "before it, or the stage baseline, scores the deals; `voronka evaluate` shows the figures)",
                      args.quiet)
        if getattr(args, "fail_on_check", False):
            return EXIT_CHECKS_FAILED
    return EXIT_OK


def _parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise UserError(f"{option}: not a date: {text!r} (expected YYYY-MM-DD)") from None


# ---------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument exits 1 (a user error); 2 means a check failed."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="voronka", description="Funnel health and revenue forecasts from CRM exports. "
                     "Exit codes: 0 ok, 1 a user error (one line says what and where), 2 a check failed "
                     "and --fail-on-check was given, 3 the warehouse is busy (a run holds it).")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text, func, fmt=True):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--workspace", help="workspace folder (default $VORONKA_HOME or ./voronka_workspace)")
        p.add_argument("--quiet", action="store_true", help="no progress messages or bars")
        if fmt:
            p.add_argument("--format", choices=["table", "json", "csv"], default="table")
        p.set_defaults(func=func)
        return p

    p = add("demo", "simulate a demo company into the workspace inbox and run everything", cmd_demo)
    p.add_argument("--deals", type=int, default=None,
                   help="deals to simulate (default 5000; 300 with --messy's small_young quirk)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--end-date", help="last day of the simulated history (default: today)")
    p.add_argument("--crm", default="canonical",
                   choices=["canonical", "amocrm", "bitrix24", "hubspot", "salesforce", "pipedrive"],
                   help="write the demo company as this CRM exports it (default: Voronka's canonical "
                        "CSVs); sets the workspace timezone to the export's")
    p.add_argument("--messy", action="store_true",
                   help="a messy company: a Bitrix24 export with the quirks of real exports (date-only and "
                        "impossible close dates, unknown closed stages, missing creation dates, history and "
                        "amounts, no targets, a currency without FX rates, a CRM probability, a small young "
                        "org, deleted deals); truth in <workspace>/truth (docs/simulator.md)")
    p.add_argument("--messy-quirks", metavar="QUIRKS",
                   help="with --messy (implies it): which quirks, 'all' (default), 'none', 'a,b' or "
                        "'-a,-b' (all but those): "
                        "date_only_close, close_before_created, unknown_closed_stage, created_missing, "
                        "lost_without_history, amount_gaps, no_targets, fx_missing, crm_probability, "
                        "small_young, deleted_deals")
    p.add_argument("--fail-on-check", action="store_true", help="exit 2 when a check fails")
    p = add("run", "load what is new in the inbox and build everything downstream", cmd_run)
    p.add_argument("--as-of", help="analyse as of this date (default: the newest data)")
    p.add_argument("--retrain", action="store_true",
                   help="retrain the models now (default: only when none is in use yet)")
    p.add_argument("--fail-on-check", action="store_true", help="exit 2 when a check fails")
    p = add("ingest", "copy export files into the inbox and load them", cmd_ingest)
    p.add_argument("paths", nargs="+")
    p.add_argument("--source", default="auto",
                   help="export format: auto (detect), canonical, amocrm, bitrix24, hubspot, "
                        "salesforce, pipedrive, mapped")
    p.add_argument("--mapping", help="YAML column mapping for any other CSV/XLSX (docs/mapping.md); "
                                     "remembered in voronka.yaml `sources` for the next exports of the file")
    p.add_argument("--timezone", help="time zone of local times in the export (default: workspace config)")
    p.add_argument("--currency", help="currency of amounts for exports that carry none")
    p = add("quarantine", "rows that could not be loaded, with the reason (raw.quarantine)", cmd_quarantine)
    p.add_argument("--file", help="only the rows of this export file")
    p.add_argument("--out", help="write them to FILE.csv or FILE.xlsx (formula-looking text neutralised)")
    for name, func, text in (("funnel", cmd_funnel, "conversion per pipeline stage"),
                             ("forecast", cmd_forecast, "revenue forecast per period"),
                             ("coverage", cmd_coverage, "pipeline coverage against targets")):
        p = add(name, text, func)
        p.add_argument("--pipeline")
        if name == "funnel":
            p.add_argument("--by", choices=FUNNEL_BY_FIELDS, help="split each stage by this deal attribute")
            p.add_argument("--cohort", choices=["week", "month"],
                           help="split by creation cohort; immature cohorts (mostly open) are flagged")
            p.add_argument("--as-of", help="the funnel as it stood on this date (built in a scratch copy)")
        if name == "forecast":
            p.add_argument("--method", choices=FORECAST_METHODS, default="model",
                           help="model (default), weighted_pipeline (the CRM baseline) or all")
        if name == "coverage":
            p.add_argument("--fail-on-check", action="store_true", help="exit 2 when coverage is short")
    p = add("changes", "pipeline waterfall between two dates: new, won, lost, pushed, pulled in, amount "
                       "changes (default: the 7 days up to the last run's as-of)", cmd_changes)
    p.add_argument("--from", dest="from_date", help="start date (default: 7 days before --to)")
    p.add_argument("--to", dest="to_date", help="end date (default: the last run's as-of)")
    p.add_argument("--period", help="close period pushes and pull-ins are judged against, YYYY-MM or "
                                    "YYYY-Qn (default: the quarter holding --to)")
    p.add_argument("--pipeline")
    p.add_argument("--deals", action="store_true", help="list the deals that changed instead of the waterfall")
    p = add("deals", "open deals with their scores (p_win, expected close, stalled, drivers)", cmd_deals)
    p.add_argument("--open", action="store_true", help="open deals (the default; kept for clarity)")
    p.add_argument("--stalled", action="store_true", help="only deals stalled in their stage")
    p.add_argument("--pipeline")
    p.add_argument("--limit", type=int, default=0, help="at most this many rows (0 = all)")
    add("evaluate", "model quality on the temporal hold-out, beside the baselines", cmd_evaluate)
    add("backtest", "forecast accuracy at past origins: WAPE, bias, P10–P90 coverage per method and horizon",
        cmd_backtest)
    p = add("report", "write the leadership report (one self-contained HTML file)", cmd_report)
    p.add_argument("--out", help="the HTML file to write (default: <workspace>/reports/voronka_report.html "
                                 "and a dated copy)")
    p = add("export", "export a mart to CSV or XLSX (formula-looking text neutralised)", cmd_export)
    p.add_argument("--table", required=True, help="a table of the warehouse's main schema, e.g. mart_bookings, "
                                                  "or quarantine (the rows that could not be loaded)")
    p.add_argument("--out", required=True, help="FILE.csv or FILE.xlsx")
    p = add("ui", "open the Dagster UI on the workspace (Ctrl-C or SIGTERM stops it)", cmd_ui, fmt=False)
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--stop-timeout", type=float, default=UI_STOP_GRACE_SECONDS,
                   help="seconds Dagster gets to stop on Ctrl-C/SIGTERM before it is killed (default 30)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo" and args.deals is not None and args.deals < 10:
        print("voronka: error: --deals must be at least 10", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return args.func(args)
    except (VoronkaUserError, PipelineError) as err:
        print(f"voronka: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except WarehouseBusyError as err:
        print(f"voronka: busy: {err}", file=sys.stderr)
        return EXIT_BUSY
    except KeyboardInterrupt:
        print("voronka: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`voronka deals | head`): not an error, and no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
