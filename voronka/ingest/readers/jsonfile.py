"""JSON exports: the document parsed (`parse_json`, a truncated file named as such) and a list of
its objects turned into a `RawTable` of strings (`table_from_records`: nested values as JSON
text, whole floats without `.0`), which the readers of REST exports read like a CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from voronka.errors import ExportFormatError
from voronka.ingest.readers.rawtable import RawTable, finish_table


def parse_json(text: str, path: Path) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ExportFormatError(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                                "the file may be truncated", file=Path(path).name) from None


def table_from_records(path: Path, records: list, kind: str = "json",
                       row_numbers: list | None = None) -> RawTable:
    """A RawTable from a list of JSON objects (the keys of all objects, in first-seen order).
    `row_numbers`: each record's 1-based position in the document (default 1..n)."""
    path = Path(path)
    if not all(isinstance(r, dict) for r in records):
        raise ExportFormatError("expected a list of objects", file=path.name)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    header = [str(c) for c in frame.columns]
    body = frame.copy()
    body.columns = range(len(header))
    for c in body.columns:
        col = body[c]
        body[c] = col.map(_json_cell)
    table = finish_table(path, header, body.astype(str) if len(body) else body, kind, "utf-8", None)
    if row_numbers is not None:
        table.row_numbers = np.asarray(row_numbers)[table.row_numbers - 1]
    return table


def _json_cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)
