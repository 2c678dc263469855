"""The commands that read the warehouse: funnel, forecast, coverage, deals, changes, quarantine,
evaluate, backtest, report and export. None of them runs the graph (no Dagster here)."""

from __future__ import annotations

import json
from pathlib import Path

from voronka.cli.common import (
    EXIT_CHECKS_FAILED,
    EXIT_OK,
    UserError,
    _parse_date,
    _progress,
)
from voronka.cli.reads import (
    _connect_read_only,
    _read,
    _rows_built_with,
    backtest_tables,
    coverage_rows,
    forecast_rows,
    funnel_rows,
    no_coverage_reason,
    quarantine_rows,
)
from voronka.cli.tables import (
    _CONTROL,
    BACKTEST_METRIC_KEYS,
    BACKTEST_ORIGIN_KEYS,
    CHANGED_DEAL_KEYS,
    CHANGES_KEYS,
    COVERAGE_KEYS,
    DEAL_KEYS,
    FORECAST_KEYS,
    FUNNEL_KEYS,
    FUNNEL_TIME_KEYS,
    QUARANTINE_KEYS,
    _clean,
    render,
)
from voronka.config import resolve_workspace


def cmd_quarantine(args) -> int:
    workspace = resolve_workspace(args.workspace)
    rows = quarantine_rows(workspace, args.file)
    if args.file and not rows:
        _progress(f"no quarantined rows of {args.file} (file names: `voronka quarantine` lists all)", args.quiet)
    if args.out:
        from voronka.report.export import ExportError, export_rows

        try:
            n = export_rows(QUARANTINE_KEYS, ([r.get(k) for k in QUARANTINE_KEYS] for r in rows), Path(args.out),
                            sheet="quarantine")
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
    currency = None  # the workspace's reporting currency, once its config is read for the warehouse
    if args.as_of:
        as_of = _parse_date(args.as_of, "--as-of").isoformat() + " 23:59:59"
        rows = _rows_built_with(workspace, "mart_funnel_breakdowns", order, where, params,
                                {"as_of": as_of}, args.quiet)
    else:
        currency = workspace.config().reporting_currency
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
    print(render(rows, keys, args.format, currency=currency))
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
    currency = None  # the workspace's reporting currency, once its config is read for the warehouse
    if window:
        rows = _rows_built_with(workspace, table, order, where, params, window, args.quiet)
    else:
        currency = workspace.config().reporting_currency
        rows = _read(workspace, f"main.{table}", order, where, params)
    title = None
    if rows:
        first = rows[0]
        title = (f"Pipeline changes from {_clean(first['from_at'])} to {_clean(first['to_at'])} "
                 f"(period columns: deals expected to close in {first['close_period']})")
    print(render(rows, CHANGED_DEAL_KEYS if args.deals else CHANGES_KEYS, args.format, title=title,
                 currency=currency))
    return EXIT_OK


def cmd_forecast(args) -> int:
    workspace = resolve_workspace(args.workspace)
    currency = workspace.config().reporting_currency
    rows = forecast_rows(workspace, args.pipeline, args.method, args.quiet)
    print(render(rows, FORECAST_KEYS, args.format, currency=currency))
    return EXIT_OK


def cmd_backtest(args) -> int:
    workspace = resolve_workspace(args.workspace)
    currency = workspace.config().reporting_currency
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
        print(render(metrics, BACKTEST_METRIC_KEYS, "table", title=title, currency=currency))
    return EXIT_OK


def cmd_coverage(args) -> int:
    workspace = resolve_workspace(args.workspace)
    currency = workspace.config().reporting_currency
    rows = coverage_rows(workspace, args.pipeline)
    if rows or args.format != "table":
        print(render(rows, COVERAGE_KEYS, args.format, currency=currency))
    if not rows:  # no target is not an error: say so, and how to add one
        note = f"Pipeline coverage: {no_coverage_reason(workspace)}"
        if args.format == "table":
            print(note)
        else:
            _progress(note, args.quiet)
    if args.fail_on_check and any(r["status"] != "ok" for r in rows):
        return EXIT_CHECKS_FAILED
    return EXIT_OK


def cmd_deals(args) -> int:
    clauses, params = [], []
    if args.pipeline:
        clauses.append("pipeline = ?")
        params.append(args.pipeline)
    if args.stalled:
        clauses.append("is_stalled")
    where = ("where " + " and ".join(clauses)) if clauses else ""
    workspace = resolve_workspace(args.workspace)
    currency = workspace.config().reporting_currency
    rows = _read(workspace, "main.deal_scores",
                 "amount_reporting * p_win desc", where, params)
    if args.limit > 0:
        rows = rows[:args.limit]
    print(render(rows, DEAL_KEYS, args.format, currency=currency))
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
        data = report_data(con, model_store=workspace.model_store())
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
