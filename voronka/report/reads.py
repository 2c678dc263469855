"""Small reads of the warehouse shared by the report's sections (no Dagster).

Whether a table exists and its columns, a query as a frame, values as plain Python (None for
NaN/NaT), records, the 'missing' marker a section returns when its inputs are not built, the
company-wide rows of a mart, and the run's as-of time.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

ALL = "all"


# ---------------------------------------------------------------- small reads

def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, _, name = table.rpartition(".")
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema or "main", name]).fetchone()[0])


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    schema, _, name = table.rpartition(".")
    return [r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema or "main", name]).fetchall()]


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def _value(v: Any) -> Any:
    """A plain Python value: None for NaN/NaT, float/int/str/bool/date otherwise."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.to_pydatetime()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    return v


def _records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict]:
    frame = frame if columns is None else frame[[c for c in columns if c in frame.columns]]
    return [{k: _value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _float(v: Any) -> float | None:
    v = _value(v)
    return None if v is None else float(v)


def _missing(reason: str) -> dict:
    return {"available": False, "note": reason}


def _company_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows for whole pipelines: the forecast and coverage may also carry scopes per segment or
    owner (where targets are set for them); those have the column filled."""
    keep = pd.Series(True, index=frame.index)
    for column in ("segment", "owner", "scope_segment", "scope_owner"):
        if column in frame:
            keep &= frame[column].isna() | frame[column].astype(str).isin(["", "all"])
    return frame[keep]


# ---------------------------------------------------------------- as of

def report_as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    """The run's as-of time as the marts state it (forecast, then the pipeline snapshot)."""
    for table in ("main.revenue_forecast", "main.pipeline_coverage", "main.mart_pipeline_snapshot",
                  "main.deal_scores"):
        if _exists(con, table) and "as_of" in _columns(con, table):
            value = con.execute(f"select max(as_of) from {table}").fetchone()[0]
            if value is not None:
                return pd.Timestamp(value).to_pydatetime()
    if not _exists(con, "raw.deals") or not _exists(con, "raw.stage_events"):
        return datetime.combine(datetime.utcnow().date(), datetime.max.time()).replace(microsecond=0)
    from voronka.warehouse_reads import newest_data_time

    return newest_data_time(con)
