"""The commands that run the pipeline (demo, run), load exports (ingest) or serve the Dagster UI
(ui), and what they print after a run. Only these import orchestration/, inside the commands."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from voronka import progress
from voronka.cli.common import (
    EXIT_CHECKS_FAILED,
    EXIT_OK,
    EXIT_USER_ERROR,
    UserError,
    _parse_date,
    _progress,
)
from voronka.cli.reads import (
    coverage_rows,
    forecast_rows,
    funnel_rows,
    missing_fx_lines,
    no_coverage_reason,
)
from voronka.cli.tables import (
    COVERAGE_KEYS,
    FORECAST_KEYS,
    FUNNEL_KEYS,
    INGEST_KEYS,
    render,
)
from voronka.config import Workspace, resolve_workspace
from voronka.errors import PipelineError


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
    currency = workspace.config().reporting_currency
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
    print(render(funnel, FUNNEL_KEYS, "table", title="\nFunnel (reached = deals that got to the stage or beyond)",
                 currency=currency))
    title = ("\nForecast (model: win probability x time to close, plus deals not yet created; P10–P90 from "
             "Monte Carlo; `voronka forecast --method weighted_pipeline` shows the CRM baseline)"
             if method == "model" else "\nForecast (weighted pipeline baseline; P10–P90 from Monte Carlo)")
    print(render(forecast, FORECAST_KEYS, "table", title=title, currency=currency))
    if coverage:
        print(render(coverage, COVERAGE_KEYS, "table", title="\nPipeline coverage", currency=currency))
    else:
        print(f"\nPipeline coverage: {no_coverage_reason(workspace)}")
    alerts = workspace.home / "alerts" / "alerts.jsonl"
    print(f"\nWarehouse: {workspace.warehouse}")
    if alerts.exists():
        print(f"Alerts:    {alerts}")
    print(f"Dagster:   voronka ui --workspace {workspace.home}")


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
