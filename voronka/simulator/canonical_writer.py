"""Write a simulated company as Voronka's canonical CSV export files, and its truth beside them.

Files are UTF-8, comma-delimited, with a header and standard (minimal, RFC 4180) quoting;
timestamps 'YYYY-MM-DD HH:MM:SS' (UTC), dates 'YYYY-MM-DD', money with two decimals, an empty
field for a missing value. DuckDB writes them (fast at millions of rows, deterministic, keeps the
row order). Each file is written under a temporary name and renamed, so a sensor watching the
inbox never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pandas as pd

from voronka.simulator.company import (
    DEALS_COLUMNS,
    FX_RATES_COLUMNS,
    MARKETING_SPEND_COLUMNS,
    PIPELINE_STAGES_COLUMNS,
    STAGE_EVENTS_COLUMNS,
    TARGETS_COLUMNS,
    SimulatedCompany,
)

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

# How to render the columns that are not plain text (everything else is written as VARCHAR).
_FORMATS = {
    "created_at": "timestamp", "closed_at": "timestamp", "exported_at": "timestamp",
    "entered_at": "timestamp", "closes_at_untruncated": "timestamp",
    "expected_close_date": "date", "rate_date": "date",
    "amount": "money", "target_amount": "money", "amount_pipeline_currency": "money",
    "stage_order": "integer",
    "rate": "number", "crm_probability": "number", "p_win_true": "number",
    "p_win_if_answered": "number", "base_logit": "number", "owner_effect": "number",
    "source_effect": "number", "segment_effect": "number", "noise_logit": "number", "pace": "number",
    "will_win": "boolean", "is_unanswered": "boolean", "has_backward_move": "boolean",
    "is_reopened": "boolean",
}

EXPORT_FILES = {
    "deals.csv": ("deals", DEALS_COLUMNS),
    "stage_events.csv": ("stage_events", STAGE_EVENTS_COLUMNS),
    "pipeline_stages.csv": ("pipeline_stages", PIPELINE_STAGES_COLUMNS),
    "targets.csv": ("targets", TARGETS_COLUMNS),
    "fx_rates.csv": ("fx_rates", FX_RATES_COLUMNS),
    "marketing_spend.csv": ("marketing_spend", MARKETING_SPEND_COLUMNS),
}


def write_canonical(company: SimulatedCompany, inbox: Path, truth_dir: Path) -> list[Path]:
    """Write the six canonical CSVs into `inbox` and truth.csv + params.json into `truth_dir`.

    Returns the paths of the inbox files, in the order above."""
    inbox, truth_dir = Path(inbox), Path(truth_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        written = []
        for file_name, (attr, columns) in EXPORT_FILES.items():
            path = inbox / file_name
            write_csv(con, getattr(company, attr), columns, path)
            written.append(path)
        write_csv(con, company.truth, list(company.truth.columns), truth_dir / "truth.csv")
    finally:
        con.close()
    _replace_atomically(truth_dir / "params.json",
                        json.dumps(company.params, ensure_ascii=False, indent=2).encode("utf-8") + b"\n")
    return written


def write_csv(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    """One frame to one CSV file with the formats above, columns in the given order."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name}: the frame has no column(s) {', '.join(missing)}")
    select = ", ".join(_render(c) for c in columns)
    partial = path.with_name(path.name + ".partial")
    con.register("frame_to_write", frame[columns])
    try:
        con.execute(f"COPY (SELECT {select} FROM frame_to_write) TO '{_sql_string(str(partial))}' "
                    "(FORMAT CSV, HEADER, DELIMITER ',', QUOTE '\"', ESCAPE '\"', NULLSTR '')")
    finally:
        con.unregister("frame_to_write")
    os.replace(partial, path)


def _render(column: str) -> str:
    name = '"' + column.replace('"', '""') + '"'
    kind = _FORMATS.get(column, "text")
    if kind == "timestamp":
        expr = f"strftime(CAST({name} AS TIMESTAMP), '{TIMESTAMP_FORMAT}')"
    elif kind == "date":
        expr = f"strftime(CAST({name} AS DATE), '{DATE_FORMAT}')"
    elif kind == "money":
        expr = f"CAST({name} AS DECIMAL(18, 2))"
    elif kind == "integer":
        expr = f"CAST({name} AS BIGINT)"
    elif kind == "number":
        expr = f"CAST({name} AS DOUBLE)"
    elif kind == "boolean":
        expr = f"CAST({name} AS BOOLEAN)"
    else:
        expr = f"CAST({name} AS VARCHAR)"
    return f"{expr} AS {name}"


def _sql_string(text: str) -> str:
    return text.replace("'", "''")


def _replace_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
