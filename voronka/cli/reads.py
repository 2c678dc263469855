"""The warehouse reads the `voronka` commands share: read-only connections that wait for a run
to let go, the marts as rows, and marts rebuilt with other dbt vars in a scratch copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from voronka.cli.common import UserError, _progress
from voronka.cli.tables import _printable
from voronka.config import Workspace

FORECAST_METHODS = ("model", "weighted_pipeline", "all")

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


def _connect_read_only(workspace: Workspace):
    """The warehouse, read-only. While a run holds it (DuckDB: one writing process, and no reader
    beside it) wait a few seconds, then WarehouseBusyError: one line, exit EXIT_BUSY."""
    from voronka.warehouse_access import READ_WAIT_SECONDS, open_warehouse

    if not workspace.warehouse.exists():
        raise UserError(f"no warehouse at {workspace.warehouse}: run `voronka demo` or `voronka run` first")
    return open_warehouse(workspace.warehouse, read_only=True, wait_seconds=READ_WAIT_SECONDS)


def _read(workspace: Workspace, table: str, order_by: str, where: str = "", params=None) -> list[dict]:
    con = _connect_read_only(workspace)
    try:
        from voronka.warehouse_reads import records, table_exists

        if not table_exists(con, table):
            raise UserError(f"{table} is not built yet in {workspace.warehouse}: run `voronka run` first")
        return records(con.execute(f"select * from {table} {where} order by {order_by}", params or []))
    finally:
        con.close()


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

    from ml.backtest_metrics import backtest_metrics

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


def quarantine_rows(workspace: Workspace, export_file: str | None = None) -> list[dict]:
    """raw.quarantine (file, row, reason, the row as read), newest load first."""
    con = _connect_read_only(workspace)
    try:
        from voronka.warehouse_reads import records, table_exists

        if not table_exists(con, "raw.quarantine"):
            return []
        where, params = ("where q.export_file = ?", [export_file]) if export_file else ("", [])
        return records(con.execute(f"""
            select q.export_file, q.row_number, q.reason, cast(q.raw_row as varchar) as raw_row
            from raw.quarantine q
            left join (select export_file, max(loaded_at) as loaded_at from raw.ingest_log group by 1) l
                on l.export_file = q.export_file
            {where}
            order by l.loaded_at desc nulls last, q.export_file, q.row_number
        """, params))
    finally:
        con.close()


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


def _rows_built_with(workspace: Workspace, model: str, order_by: str, where: str, params: list,
                     dbt_vars: dict, quiet: bool) -> list[dict]:
    """Rows of `model` built with other dbt vars (as_of, from_date ...) in a scratch copy of the
    workspace's raw tables; the workspace's warehouse is only read."""
    import duckdb

    from voronka.warehouse_reads import records

    scratch = _scratch_build(workspace, model, dbt_vars, quiet)
    try:
        con = duckdb.connect(str(scratch / "warehouse.duckdb"), read_only=True)
        try:
            return records(con.execute(f"select * from main.{model} {where} order by {order_by}", params))
        finally:
            con.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


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
