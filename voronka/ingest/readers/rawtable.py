"""What a loaded export is: a `RawTable` (a frame of stripped strings under unique column names,
with the file row of each data row) or a `RawJson` (a parsed JSON document), and the building of
a RawTable from a header and rows, shared by the CSV, HTML, XLSX and JSON readers (`textfile`,
`xlsx`, `jsonfile`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from voronka.errors import ExportFormatError


@dataclass
class RawTable:
    """A tabular export: `frame` holds stripped strings ('' for empty) under unique column names."""

    path: Path
    frame: pd.DataFrame
    row_numbers: np.ndarray  # 1-based data row of each frame row in the file (header = row 0)
    kind: str  # csv | xlsx | html | json
    encoding: str | None = None
    delimiter: str | None = None
    header: list = field(default_factory=list)  # column names as written in the file

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)


@dataclass
class RawJson:
    path: Path
    data: object
    encoding: str | None = None

    @property
    def file(self) -> str:
        return self.path.name


def finish_table(path: Path, header: list, body: pd.DataFrame, kind: str, encoding, delimiter) -> RawTable:
    names = unique_names(header)
    body.columns = names
    if len(body):
        for col in body.columns:
            values = body[col].to_numpy(dtype=object)
            if any(v[:1].isspace() or v[-1:].isspace() for v in values):
                body[col] = [v.strip() for v in values]
    else:
        body = body.astype(str)
    row_numbers = np.arange(1, len(body) + 1)
    blank = _blank_rows(body)
    if blank.any():
        body = body[~blank].reset_index(drop=True)
        row_numbers = row_numbers[~blank]
    return RawTable(path, body, row_numbers, kind, encoding, delimiter, header)


def _blank_rows(body: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is empty (column by column, on the shrinking set of candidates)."""
    candidates = np.arange(len(body))
    for col in body.columns:
        if not len(candidates):
            break
        values = body[col].to_numpy(dtype=object)[candidates]
        candidates = candidates[values == ""]
    blank = np.zeros(len(body), dtype=bool)
    blank[candidates] = True
    return blank


def unique_names(header: list) -> list[str]:
    """Stripped names; an empty one becomes `column_<n>`; a repeat gets a ` (2)`, ` (3)` suffix."""
    seen: dict[str, int] = {}
    names = []
    for i, raw in enumerate(header, start=1):
        name = re.sub(r"\s+", " ", str(raw if raw is not None else "").replace("\ufeff", "")).strip()
        name = name or f"column_{i}"
        base = name
        while name in seen:
            seen[base] += 1
            name = f"{base} ({seen[base]})"
        seen.setdefault(name, 1)
        names.append(name)
    return names


def table_from_rows(path: Path, rows: list[list], kind: str, encoding=None) -> RawTable:
    while rows and all(str(c).strip() == "" for c in rows[0]):
        rows = rows[1:]
    if not rows:
        raise ExportFormatError("the file is empty (no header row)", file=path.name)
    width = max(len(r) for r in rows)
    header = list(rows[0]) + [""] * (width - len(rows[0]))
    while header and str(header[-1]).strip() == "" and all(
            len(r) < len(header) or str(r[len(header) - 1]).strip() == "" for r in rows):
        header.pop()
    width = len(header)
    data = [list(r[:width]) + [""] * (width - len(r)) for r in rows[1:]]
    body = pd.DataFrame(data, columns=range(width), dtype=object) if data else \
        pd.DataFrame({i: pd.Series(dtype=object) for i in range(width)})
    return finish_table(path, header, body.astype(str), kind, encoding, None)
