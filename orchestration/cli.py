"""The `voronka` command. A user's mistake prints one line and exits 1; only a bug shows a traceback."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
from datetime import date, datetime
from pathlib import Path

from orchestration.config import Workspace, resolve_workspace
from orchestration.ingest.errors import VoronkaUserError
from orchestration.runner import PipelineError, run_pipeline

EXIT_OK, EXIT_USER_ERROR, EXIT_CHECKS_FAILED = 0, 1, 2

FUNNEL_KEYS = ["pipeline", "stage", "stage_order", "reached", "step_conversion",
               "cumulative_conversion", "lost_here"]
FORECAST_KEYS = ["period", "pipeline", "currency", "target", "booked", "expected", "p10", "p50",
                 "p90", "method"]
COVERAGE_KEYS = ["period", "pipeline", "target", "booked", "open_pipeline", "coverage",
                 "required_coverage", "status"]
INGEST_KEYS = ["file", "source_system", "rows_read", "rows_loaded", "rows_quarantined", "deals",
               "stage_events"]
PERCENT_KEYS = {"step_conversion", "cumulative_conversion", "p_win", "p_win_baseline",
                "p_close_this_period", "p_close_next_period"}
MONEY_KEYS = {"target", "booked", "expected", "p10", "p50", "p90", "open_pipeline", "amount_reporting"}


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


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    if key in PERCENT_KEYS and isinstance(value, (int, float)):
        return f"{value:.1%}"
    if key in MONEY_KEYS and isinstance(value, (int, float)):
        return f"{value:,.0f}"
    if key == "coverage" and isinstance(value, (int, float)):
        return f"{value:.2f}x"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def render(rows: list[dict], keys: list[str], fmt: str, title: str | None = None) -> str:
    rows = [{k: _clean(r.get(k)) for k in keys} for r in rows]
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            # Neutralise spreadsheet formulas in text a CRM provided.
            writer.writerow({k: ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v)
                             for k, v in r.items()})
        return buf.getvalue().rstrip("\n")
    cells = [[_cell(k, r[k]) for k in keys] for r in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, k in enumerate(keys)]
    numeric = [all(isinstance(r[k], (int, float)) or r[k] is None for r in rows) for k in keys]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric))

    out = ([title] if title else []) + [line(keys), line(["-" * w for w in widths])]
    out += [line(c) for c in cells] or ["(no rows)"]
    return "\n".join(out)


def _progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- reads

def _read(workspace: Workspace, table: str, order_by: str, where: str = "", params=None) -> list[dict]:
    import duckdb

    if not workspace.warehouse.exists():
        raise UserError(f"no warehouse at {workspace.warehouse}: run `voronka demo` or `voronka run` first")
    con = duckdb.connect(str(workspace.warehouse), read_only=True)
    try:
        from orchestration.warehouse_queries import table_exists

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


def forecast_rows(workspace: Workspace, pipeline: str | None = None) -> list[dict]:
    where, params = _pipeline_filter(pipeline)
    return _read(workspace, "main.revenue_forecast",
                 "period_grain desc, period, pipeline = 'all' desc, pipeline", where, params)


def coverage_rows(workspace: Workspace, pipeline: str | None = None) -> list[dict]:
    where, params = _pipeline_filter(pipeline)
    return _read(workspace, "main.pipeline_coverage",
                 "period_grain desc, period, pipeline = 'all' desc, pipeline", where, params)


# ---------------------------------------------------------------- commands

def cmd_demo(args) -> int:
    from orchestration.simulator.canonical_writer import write_canonical
    from orchestration.simulator.company import simulate_company

    workspace = resolve_workspace(args.workspace).create()
    end_date = _parse_date(args.end_date, "--end-date") if args.end_date else datetime.utcnow().date()
    _progress(f"Simulating a demo company: {args.deals:,} deals, seed {args.seed}, up to {end_date} ...", args.quiet)
    company = simulate_company(n_deals=args.deals, seed=args.seed, end_date=end_date)
    written = write_canonical(company, workspace.inbox, workspace.home / "truth")
    _progress(f"Wrote {len(written)} export files to {workspace.inbox}", args.quiet)
    outcome = run_pipeline(workspace, quiet=args.quiet, retrain=True)
    _print_summary(workspace, args.format)
    return _exit_for_checks(outcome, args)


def cmd_run(args) -> int:
    workspace = resolve_workspace(args.workspace)
    as_of = _parse_date(args.as_of, "--as-of").isoformat() + " 23:59:59" if args.as_of else None
    outcome = run_pipeline(workspace, as_of=as_of, quiet=args.quiet, retrain=args.retrain)
    _print_summary(workspace, args.format)
    return _exit_for_checks(outcome, args)


def cmd_ingest(args) -> int:
    import duckdb

    from orchestration.ingest.loader import load_files

    workspace = resolve_workspace(args.workspace).create()
    targets = []
    for raw in args.paths:
        path = Path(raw)
        if not path.is_file():
            raise UserError(f"no such file: {raw}")
        target = workspace.inbox / path.name
        if path.resolve() != target.resolve():
            shutil.copy2(path, target)
        targets.append(target)
    con = duckdb.connect(str(workspace.warehouse))
    try:
        results = load_files(con, targets, source=args.source,
                             progress=lambda name: _progress(f"loaded {name}", args.quiet),
                             mapping=Path(args.mapping) if args.mapping else None,
                             timezone=args.timezone or workspace.config().timezone,
                             currency=args.currency)
    finally:
        con.close()
    for r in results:
        if r.status == "refused":
            print(f"voronka: refused {r.message}", file=sys.stderr)
        elif r.status == "already_loaded":
            _progress(f"{r.file}: already loaded (same content), nothing to do", args.quiet)
    print(render([r.as_dict() for r in results if r.status == "loaded"], INGEST_KEYS, args.format))
    return EXIT_USER_ERROR if any(r.status == "refused" for r in results) else EXIT_OK


def cmd_funnel(args) -> int:
    print(render(funnel_rows(resolve_workspace(args.workspace), args.pipeline), FUNNEL_KEYS, args.format))
    return EXIT_OK


def cmd_forecast(args) -> int:
    print(render(forecast_rows(resolve_workspace(args.workspace), args.pipeline), FORECAST_KEYS, args.format))
    return EXIT_OK


def cmd_coverage(args) -> int:
    rows = coverage_rows(resolve_workspace(args.workspace), args.pipeline)
    print(render(rows, COVERAGE_KEYS, args.format))
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
    from ml.registry import ModelNotFoundError, ModelStore
    from orchestration.assets.models import model_evaluation

    workspace = resolve_workspace(args.workspace)
    try:
        evaluation = model_evaluation(ModelStore(workspace.models_dir()))
    except ModelNotFoundError as err:
        raise UserError(str(err)) from None
    if args.format == "json":
        print(json.dumps(evaluation, indent=2))
    else:
        rows = [{"model": name, **{k: v for k, v in figures.items()}} for name, figures in evaluation.items()]
        keys = ["model", "version"] + sorted({k for r in rows for k in r} - {"model", "version"})
        print(render(rows, keys, args.format))
    return EXIT_OK


def cmd_ui(args) -> int:
    workspace = resolve_workspace(args.workspace).create()
    env = {**os.environ, "VORONKA_HOME": str(workspace.home), "DAGSTER_HOME": str(workspace.dagster_home)}
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    cmd = [dagster, "dev", "-m", "orchestration.definitions", "--port", str(args.port)]
    print(f"Dagster UI on http://127.0.0.1:{args.port} (workspace {workspace.home})", file=sys.stderr)
    os.execve(cmd[0], cmd, env)
    return EXIT_OK  # not reached


def _print_summary(workspace: Workspace, fmt: str) -> None:
    funnel, forecast, coverage = funnel_rows(workspace), forecast_rows(workspace), coverage_rows(workspace)
    if fmt == "json":
        print(json.dumps({
            "funnel": json.loads(render(funnel, FUNNEL_KEYS, "json")),
            "forecast": json.loads(render(forecast, FORECAST_KEYS, "json")),
            "coverage": json.loads(render(coverage, COVERAGE_KEYS, "json")),
            "warehouse": str(workspace.warehouse),
        }, ensure_ascii=False, indent=2))
        return
    print(render(funnel, FUNNEL_KEYS, "table", title="\nFunnel (reached = deals that got to the stage or beyond)"))
    print(render(forecast, FORECAST_KEYS, "table", title="\nForecast (weighted pipeline baseline; P10–P90 from Monte Carlo)"))
    print(render(coverage, COVERAGE_KEYS, "table", title="\nPipeline coverage"))
    alerts = workspace.home / "alerts" / "alerts.jsonl"
    print(f"\nWarehouse: {workspace.warehouse}")
    if alerts.exists():
        print(f"Alerts:    {alerts}")
    print(f"Dagster:   voronka ui --workspace {workspace.home}")


def _exit_for_checks(outcome: dict, args) -> int:
    if outcome["checks_failed"]:
        _progress("Checks that did not pass: " + ", ".join(outcome["checks_failed"]), args.quiet)
        if getattr(args, "fail_on_check", False):
            return EXIT_CHECKS_FAILED
    return EXIT_OK


def _parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise UserError(f"{option}: not a date: {text!r} (expected YYYY-MM-DD)") from None


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voronka", description="Funnel health and revenue forecasts from CRM exports.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text, func, fmt=True):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--workspace", help="workspace folder (default $VORONKA_HOME or ./voronka_workspace)")
        p.add_argument("--quiet", action="store_true", help="no progress messages")
        if fmt:
            p.add_argument("--format", choices=["table", "json", "csv"], default="table")
        p.set_defaults(func=func)
        return p

    p = add("demo", "simulate a demo company into the workspace inbox and run everything", cmd_demo)
    p.add_argument("--deals", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--end-date", help="last day of the simulated history (default: today)")
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
    p.add_argument("--mapping", help="YAML column mapping for any other CSV/XLSX (docs/mapping.md)")
    p.add_argument("--timezone", help="time zone of local times in the export (default: workspace config)")
    p.add_argument("--currency", help="currency of amounts for exports that carry none")
    for name, func, text in (("funnel", cmd_funnel, "conversion per pipeline stage"),
                             ("forecast", cmd_forecast, "revenue forecast per period"),
                             ("coverage", cmd_coverage, "pipeline coverage against targets")):
        p = add(name, text, func)
        p.add_argument("--pipeline")
        if name == "coverage":
            p.add_argument("--fail-on-check", action="store_true", help="exit 2 when coverage is short")
    p = add("deals", "open deals with their scores (p_win, expected close, stalled, drivers)", cmd_deals)
    p.add_argument("--open", action="store_true", help="open deals (the default; kept for clarity)")
    p.add_argument("--stalled", action="store_true", help="only deals stalled in their stage")
    p.add_argument("--pipeline")
    p.add_argument("--limit", type=int, default=0, help="at most this many rows (0 = all)")
    add("evaluate", "model quality on the temporal hold-out, beside the baselines", cmd_evaluate)
    p = add("ui", "open the Dagster UI on the workspace", cmd_ui, fmt=False)
    p.add_argument("--port", type=int, default=3000)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo" and args.deals < 10:
        print("voronka: error: --deals must be at least 10", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return args.func(args)
    except (VoronkaUserError, PipelineError) as err:
        print(f"voronka: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("voronka: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
