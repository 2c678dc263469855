"""The `voronka` command. A user's mistake prints one line and exits 1; only a bug shows a traceback.

The package: __init__ wires the commands into argparse (build_parser, main); run_commands runs the
pipeline (demo, run, ingest, ui: the only place orchestration/ is imported, inside the commands);
read_commands reads the warehouse (funnel, forecast, coverage, deals, changes, quarantine,
evaluate, backtest, report, export) through the helpers of reads; tables formats the output;
common holds the exit codes and the user's-mistake error."""

from __future__ import annotations

import argparse
import os
import sys

from voronka.cli.common import (  # noqa: F401  (re-exported)
    EXIT_BUSY,
    EXIT_CHECKS_FAILED,
    EXIT_OK,
    EXIT_USER_ERROR,
    UserError,
)
from voronka.cli.read_commands import (  # noqa: F401  (re-exported)
    _print_closed_unknown,
    cmd_backtest,
    cmd_changes,
    cmd_coverage,
    cmd_deals,
    cmd_evaluate,
    cmd_export,
    cmd_forecast,
    cmd_funnel,
    cmd_quarantine,
    cmd_report,
)
from voronka.cli.reads import (  # noqa: F401  (re-exported)
    DBT_PROJECT_DIR,
    FORECAST_METHODS,
    backtest_tables,
    coverage_rows,
    forecast_rows,
    funnel_rows,
    missing_fx_lines,
    no_coverage_reason,
    quarantine_rows,
)
from voronka.cli.run_commands import (  # noqa: F401  (re-exported)
    UI_STOP_GRACE_SECONDS,
    UI_STOP_SIGNAL,
    _exit_for_checks,
    cmd_demo,
    cmd_ingest,
    cmd_run,
    cmd_ui,
    run_until_stopped,
    source_pattern,
)
from voronka.cli.tables import (  # noqa: F401  (re-exported)
    BACKTEST_METRIC_KEYS,
    BACKTEST_ORIGIN_KEYS,
    CHANGED_DEAL_KEYS,
    CHANGES_KEYS,
    COVERAGE_KEYS,
    DEAL_KEYS,
    FORECAST_KEYS,
    FUNNEL_BY_FIELDS,
    FUNNEL_KEYS,
    FUNNEL_TIME_KEYS,
    INGEST_KEYS,
    MONEY_KEYS,
    PERCENT_KEYS,
    QUARANTINE_KEYS,
    _compact_money,
    render,
)
from voronka.errors import PipelineError, VoronkaUserError, WarehouseBusyError

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
