"""Export a warehouse table (a mart) to CSV or XLSX for spreadsheets (no Dagster).

CRM text ends up in these files, and a spreadsheet treats a cell that starts with =, +, -, @
(or a tab or carriage return) as a formula: `=HYPERLINK(...)` in a deal title would run when the
file is opened. Every text cell that starts with one of those characters is written with a
leading apostrophe, so it shows as the text it was. Numbers stay numbers (a negative amount is
not text and is not touched). CSV is UTF-8 with a byte-order mark, so Excel reads Cyrillic
correctly.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
# openpyxl refuses these control characters in a cell; a CRM export can carry them.
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ExportError(ValueError):
    """A table or file the export cannot use (the CLI prints it in one line)."""


def neutralise(value):
    """A text cell that a spreadsheet would read as a formula, prefixed with an apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def exportable_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables and views in the main schema (the marts and what the assets write)."""
    return [r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'main' order by table_name"
    ).fetchall()]


# Loader tables a user may export beside the marts: the rows that could not be loaded.
RAW_EXPORTABLE = {"quarantine": 'raw."quarantine"', "raw.quarantine": 'raw."quarantine"'}


def resolve_table(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """'mart_bookings' or 'main.mart_bookings' -> the quoted main.<table> ('quarantine' ->
    raw.quarantine); ExportError otherwise."""
    if name in RAW_EXPORTABLE:
        return RAW_EXPORTABLE[name]
    short = name[len("main."):] if name.startswith("main.") else name
    tables = exportable_tables(con)
    if not _NAME.match(short) or short not in tables:
        shown = ", ".join(tables[:12]) + (" …" if len(tables) > 12 else "")
        raise ExportError(f"no table {name!r} in the warehouse's main schema (tables: {shown or 'none'})")
    return f'main."{short}"'


def _cell(value):
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes, datetime, date)):
        value = value.item()  # a numpy scalar
    if _is_missing(value):
        return None
    if isinstance(value, datetime):
        if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
            value = value.to_pydatetime()
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(value, (list, dict, tuple)):
        return str(value)
    return neutralise(value)


def _is_missing(value) -> bool:
    """NaN, NaT, pd.NA. pandas is consulted only when something imported it already: rows read
    straight from DuckDB hold no pandas values, and the export need not pay for importing it."""
    pd = sys.modules.get("pandas")
    if pd is None or isinstance(value, (str, list, dict, tuple)):
        return isinstance(value, float) and math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def export_rows(columns: list, rows, out: Path, sheet: str = "data") -> int:
    """Write the rows (tuples in the order of `columns`) to out (.csv or .xlsx, by its suffix);
    returns the rows written."""
    out = Path(out)
    kind = FORMATS.get(out.suffix.lower())
    if kind is None:
        raise ExportError(f"{out}: the file must end in .csv or .xlsx")
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [neutralise(str(c)) for c in columns]
    rows = ([_cell(v) for v in row] for row in rows)
    if kind == "csv":
        with open(out, "w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            n = 0
            for row in rows:
                writer.writerow(["" if v is None else v for v in row])
                n += 1
        return n
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    ws = book.create_sheet(title=sheet[:31] or "data")
    bold = Font(bold=True)
    head = []
    for text in header:
        cell = WriteOnlyCell(ws, value=_ILLEGAL_XLSX.sub("", text))
        cell.font = bold
        cell.data_type = "s"
        head.append(cell)
    ws.append(head)
    n = 0
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, str):
                cell = WriteOnlyCell(ws, value=_ILLEGAL_XLSX.sub("", v))
                cell.data_type = "s"  # never a formula, whatever the text
            else:
                cell = WriteOnlyCell(ws, value=v)
            cells.append(cell)
        ws.append(cells)
        n += 1
    book.save(out)
    return n


def export_table(con: duckdb.DuckDBPyConnection, name: str, out: Path) -> int:
    """Export main.<name> to out (.csv or .xlsx); returns the rows written."""
    table = resolve_table(con, name)
    cursor = con.execute(f"select * from {table}")
    columns = [d[0] for d in cursor.description]

    def batches():  # streamed: a large mart is never held whole
        while batch := cursor.fetchmany(10_000):
            yield from batch

    return export_rows(columns, batches(), Path(out), sheet=name.split(".")[-1])
