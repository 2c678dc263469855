"""XLSX workbooks: the first worksheet (or a named one) as a `RawTable` of strings.

Cells are data: formula cells are read as their formula text, never evaluated. A damaged or
truncated workbook raises one `ExportFormatError` saying why.
"""

from __future__ import annotations

import zipfile
from datetime import date, datetime, time
from pathlib import Path

from voronka.errors import ExportFormatError
from voronka.ingest.readers.rawtable import RawTable, table_from_rows


def read_xlsx(path: Path, sheet: str | None = None) -> RawTable:
    """First worksheet (or `sheet`) as strings. Formula cells keep their formula text."""
    import openpyxl  # local: only XLSX files need it

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            zipfile.ZipFile(fh).testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ExportFormatError(f"a damaged or truncated XLSX workbook ({err}); export it again",
                                file=path.name) from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as err:  # openpyxl raises KeyError/ValueError/lxml errors on broken parts
        raise ExportFormatError(
            f"a zip archive that is not a readable XLSX workbook ({type(err).__name__}: {err})",
            file=path.name) from None
    if sheet and sheet not in wb.sheetnames:
        wb.close()
        raise ExportFormatError(f"no sheet {sheet!r} in the workbook (sheets: {', '.join(wb.sheetnames)})",
                                file=path.name)
    try:
        ws = wb[sheet] if sheet else wb.worksheets[0]
        rows = [[_cell_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
    except Exception as err:
        raise ExportFormatError(f"a damaged XLSX workbook ({type(err).__name__}: {err})",
                                file=path.name) from None
    finally:
        wb.close()
    return table_from_rows(path, rows, "xlsx")


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)
