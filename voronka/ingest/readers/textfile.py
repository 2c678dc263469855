"""The text layer every reader stands on: open an export robustly and parse its values.

`load(path)` returns a `RawTable` (CSV, XLSX or an HTML table saved as .xls: a frame of stripped
strings, one row per data row) or a `RawJson` (a parsed JSON document). It copes with what real
exports look like: UTF-8 with or without BOM, UTF-16 with BOM, Windows-1251 / Windows-1252
(detected), `,` `;` or tab as delimiter (sniffed, or Excel's `sep=;` line), quoted multi-line
fields, trailing spaces in headers, repeated column names (the repeat gets a ` (2)` suffix),
empty rows. A file that cannot be read raises one `ExportFormatError` saying why.

The value parsers (`parse_timestamps`, `parse_dates`, `parse_numbers`, `parse_bools`) are
vectorised: they take a Series of stripped strings ('' = empty) and return the parsed Series and
a mask of the non-empty values that did not parse. Cells are data: a cell starting with `=`, `+`,
`-` or `@` is kept as the text it is (XLSX formulas are read as their formula text), never
evaluated.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from voronka.errors import ExportFormatError

SNIFF_BYTES = 1 << 16
DELIMITERS = (",", ";", "\t")


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


# --------------------------------------------------------------------------------------------
# Opening a file


def sniff_kind(path: Path, head: bytes | None = None) -> str:
    """What the file is by its content: xlsx | xls | json | html | text (raises for junk)."""
    path = Path(path)
    if head is None:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    if not head.strip(b" \t\r\n\x00") and not _has_more_than_whitespace(path, head):
        raise ExportFormatError("the file is empty", file=path.name)
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ExportFormatError("an old binary Excel workbook (.xls); save it as .xlsx or CSV "
                                "and export again", file=path.name)
    if head.startswith(b"\x1f\x8b"):
        raise ExportFormatError("a gzip-compressed file; unpack it first", file=path.name)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        raise ExportFormatError("the file is named .xlsx but is not an XLSX workbook (not a zip "
                                "archive); export it again or save it as CSV", file=path.name)
    if not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        _refuse_binary(path, head)
    text = _decode(head, path, sample=True)[0].lstrip("\ufeff \t\r\n")
    if text[:1] in ("{", "["):
        return "json"
    if text[:1] == "<" and re.search(r"<table\b", text[:SNIFF_BYTES], re.IGNORECASE):
        return "html"
    return "text"


def _has_more_than_whitespace(path: Path, head: bytes) -> bool:
    if len(head) < SNIFF_BYTES:
        return False
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            if block.strip(b" \t\r\n\x00"):
                return True
    return False


def _refuse_binary(path: Path, head: bytes) -> None:
    sample = head[:8192]
    if b"\x00" in sample:
        zeros_odd = sample[1::2].count(0) / max(1, len(sample[1::2]))
        zeros_even = sample[0::2].count(0) / max(1, len(sample[0::2]))
        if max(zeros_odd, zeros_even) > 0.4 and min(zeros_odd, zeros_even) < 0.05:
            raise ExportFormatError("looks like UTF-16 text without a byte-order mark; save it "
                                    "as UTF-8 (or UTF-16 with BOM)", file=path.name)
        raise ExportFormatError("a binary file, not a CSV, XLSX or JSON export", file=path.name)
    control = sum(1 for b in sample if b < 9 or 13 < b < 32 and b != 27)
    if control > max(2, len(sample) // 100):
        raise ExportFormatError("a binary file, not a CSV, XLSX or JSON export", file=path.name)


_UTF8_SEQ = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_HIGH = re.compile(rb"[\x80-\xff]")
_WORD = re.compile(r"[^\W\d_]+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def _decode(data: bytes, path: Path, sample: bool = False) -> tuple[str, str]:
    """(text, encoding). UTF-8/UTF-16 by BOM, else strict UTF-8, else Windows-1251 or -1252."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace" if sample else "strict"), "utf-8-sig"
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            body = data[2:]
            if sample and len(body) % 2:
                body = body[:-1]
            try:
                return body.decode(enc, errors="replace" if sample else "strict"), "utf-16"
            except UnicodeDecodeError as err:
                raise ExportFormatError(f"invalid UTF-16 text at byte {err.start}", file=path.name) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as err:
        if sample and err.start >= len(data) - 3:  # a sample cut inside a character
            return data[:err.start].decode("utf-8"), "utf-8"
    high = len(_HIGH.findall(data))
    utf8_bytes = sum(len(m) for m in _UTF8_SEQ.findall(data))
    if high and utf8_bytes / high >= 0.5:
        # UTF-8 with a few damaged bytes: keep it UTF-8; the damaged cells show U+FFFD and the
        # readers reject the rows holding them.
        return data.decode("utf-8", errors="replace"), "utf-8 (damaged)"
    encoding = _cp125x(data)
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        other = "cp1252" if encoding == "cp1251" else "cp1251"
        try:
            return data.decode(other), other
        except UnicodeDecodeError as err:
            if utf8_bytes:
                return data.decode("utf-8", errors="replace"), "utf-8 (damaged)"
            raise ExportFormatError(
                f"not valid UTF-8, Windows-1251 or Windows-1252 text (byte 0x{data[err.start]:02x} "
                f"at offset {err.start}); save it as UTF-8", file=path.name) from None


def _cp125x(data: bytes) -> str:
    """Windows-1251 (Cyrillic) or -1252 (Western): decoded as 1251, Russian text gives words of
    Cyrillic letters only, while Western text gives words mixing Latin and 'Cyrillic' letters."""
    text = data[:1 << 20].decode("cp1251", errors="replace")
    pure = mixed = 0
    for word in _WORD.findall(text):
        if _CYRILLIC.search(word):
            if _LATIN.search(word):
                mixed += 1
            else:
                pure += 1
    return "cp1251" if pure >= mixed and pure > 0 else "cp1252"


def read_text(path: Path) -> tuple[str, str]:
    """The whole file as text, and the encoding it was read with."""
    data = Path(path).read_bytes()
    text, encoding = _decode(data, Path(path))
    return text.lstrip("\ufeff"), encoding


def load(path: Path) -> RawTable | RawJson:
    """Open an export of any supported container (CSV/TSV, XLSX, HTML-as-XLS, JSON)."""
    path = Path(path)
    kind = sniff_kind(path)
    if kind == "xlsx":
        return read_xlsx(path)
    text, encoding = read_text(path)
    if kind == "json":
        return RawJson(path, parse_json(text, path), encoding)
    if kind == "html":
        return _table_from_rows(path, _html_rows(text), "html", encoding)
    return read_csv_text(path, text, encoding)


def parse_json(text: str, path: Path) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ExportFormatError(f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
                                "the file may be truncated", file=Path(path).name) from None


def sniff_delimiter(first_line: str) -> str:
    counts = {d: 0 for d in DELIMITERS}
    quoted = False
    for ch in first_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv_text(path: Path, text: str, encoding: str | None) -> RawTable:
    path = Path(path)
    text = text.lstrip("\ufeff")
    if "\r" in text:  # Windows line ends, also inside quoted multi-line values
        text = text.replace("\r\n", "\n")
    first_nl = text.find("\n")
    first_line = (text if first_nl < 0 else text[:first_nl]).rstrip("\r")
    explicit = re.fullmatch(r'"?sep=(.)"?', first_line.strip())
    if explicit:  # Excel's hint line: sep=;
        delimiter = explicit.group(1)
        text = text[first_nl + 1:] if first_nl >= 0 else ""
    else:
        while first_line.strip() == "" and first_nl >= 0:  # leading blank lines
            text = text[first_nl + 1:]
            first_nl = text.find("\n")
            first_line = (text if first_nl < 0 else text[:first_nl]).rstrip("\r")
        delimiter = sniff_delimiter(first_line)
    if not text.strip():
        raise ExportFormatError("the file is empty", file=path.name)
    fast = _read_csv_arrow(path, text, delimiter, encoding)
    if fast is not None:
        return fast
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, header=None, dtype=str, keep_default_na=False,
            na_filter=False, quoting=csv.QUOTE_MINIMAL, engine="c", skip_blank_lines=True,
        )
    except pd.errors.ParserError as err:
        raise ExportFormatError(_parser_message(str(err), delimiter), file=path.name) from None
    except pd.errors.EmptyDataError:
        raise ExportFormatError("the file is empty", file=path.name) from None
    header = [str(h) for h in frame.iloc[0].tolist()]
    body = frame.iloc[1:].reset_index(drop=True)
    return _finish(path, header, body, "csv", encoding, delimiter)


def _read_csv_arrow(path: Path, text: str, delimiter: str, encoding) -> RawTable | None:
    """Arrow's multithreaded CSV parser: the fast path for well-formed files. None when it
    refuses the file (ragged rows, an unclosed quote...): pandas' parser then reads it, padding
    short rows and naming the line of a real error."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    if text.count('"') % 2:  # an unclosed quote (a truncated file): let pandas say where
        return None
    first = text.split("\n", 1)[0]
    width = len(next(csv.reader([first], delimiter=delimiter), []))
    names = [f"f{i}" for i in range(width)]
    try:
        table = pcsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                            ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                strings_can_be_null=False,
                                                quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowException, ValueError):
        return None
    if table.num_rows == 0:
        return None
    header = [table.column(i)[0].as_py() for i in range(table.num_columns)]
    table = table.slice(1)
    trimmed = [pc.utf8_trim_whitespace(table.column(i)) for i in range(table.num_columns)]
    blank = None
    for col in trimmed:
        empty = pc.equal(col, "")
        blank = empty if blank is None else pc.and_(blank, empty)
    row_numbers = np.arange(1, table.num_rows + 1)
    if blank is not None and pc.any(blank).as_py():
        keep = pc.invert(blank)
        trimmed = [pc.filter(col, keep) for col in trimmed]
        row_numbers = row_numbers[keep.to_numpy(zero_copy_only=False)]
    names = unique_names(header)
    # Arrow-backed strings: a tenth of the memory of one Python str per cell.
    body = pd.DataFrame({name: pd.Series(pd.arrays.ArrowStringArray(col))
                         for name, col in zip(names, trimmed)})
    if len(body) == 0:
        body = pd.DataFrame({name: pd.Series(dtype=object) for name in names})
    return RawTable(path, body, row_numbers, "csv", encoding, delimiter, header)


def _parser_message(message: str, delimiter: str) -> str:
    shown = {"\t": "tab"}.get(delimiter, delimiter)
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if m:
        return (f"line {m.group(2)} has {m.group(3)} fields where the header has {m.group(1)} "
                f"(delimiter {shown!r}); a value holds an unquoted delimiter or a stray quote")
    m = re.search(r"EOF inside string starting at row (\d+)", message)
    if m:
        return (f"a quoted field opened on line {int(m.group(1)) + 1} never closes: the file is "
                "truncated or has a stray quote")
    return f"not a readable CSV ({message.strip().splitlines()[0]})"


def _finish(path: Path, header: list, body: pd.DataFrame, kind: str, encoding, delimiter) -> RawTable:
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


def _table_from_rows(path: Path, rows: list[list], kind: str, encoding=None) -> RawTable:
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
    return _finish(path, header, body.astype(str), kind, encoding, None)


# --------------------------------------------------------------------------------------------
# XLSX


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
    return _table_from_rows(path, rows, "xlsx")


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


# --------------------------------------------------------------------------------------------
# HTML tables (Bitrix24 and others save "Excel" exports as an HTML table named .xls)


class _TableParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._tables = 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._tables += 1
        elif self._tables == 1 and tag == "tr":
            self._row = []
        elif self._tables == 1 and tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag):
        if tag == "table":
            self._tables += 1  # only the first table is read
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _html_rows(text: str) -> list[list[str]]:
    parser = _TableParser()
    parser.feed(text)
    parser.close()
    return parser.rows


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
    table = _finish(path, header, body.astype(str) if len(body) else body, kind, "utf-8", None)
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


# --------------------------------------------------------------------------------------------
# Values


_TZ_SUFFIX = r"(?:Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)"
_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?\s*" + _TZ_SUFFIX + "?$")
_ISO_AWARE = re.compile(r"\d(?:Z|z|\s*UTC|\s*GMT|[+-]\d{2}(?::?\d{2})?)$")
_DOTTED = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:,?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_SLASHED = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:,?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?$")
_SERIAL = re.compile(r"^\d{4,5}(?:[.,]\d+)?$")
EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def _empty_ts(index) -> pd.Series:
    return pd.Series(pd.NaT, index=index, dtype="datetime64[ns]")


def parse_timestamps(text: pd.Series, tz: str = "UTC", *, fmt: str | None = None,
                     dayfirst: bool | None = None) -> tuple[pd.Series, pd.Series]:
    """Naive-UTC timestamps from text. Values with an offset (`Z`, `+03:00`) keep their instant;
    values without one are local times in `tz`. Understands ISO-8601, `DD.MM.YYYY[ HH:MM[:SS]]`,
    `MM/DD/YYYY[ HH:MM[:SS][ AM]]` (day first when a value shows it, or `dayfirst`), and Excel
    serial day numbers; or exactly `fmt` (strftime codes) when given."""
    text = text.fillna("").astype(str)
    out = _empty_ts(text.index)
    filled = text != ""
    if not filled.any():
        return out, filled
    if fmt:
        parsed = pd.to_datetime(text.where(filled), format=fmt, errors="coerce")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            out.loc[filled] = parsed[filled]
        else:
            out.loc[filled] = _localize(parsed[filled], tz)
        return out, filled & out.isna()
    rest = _fast_formats(text, filled, out, tz)
    if not rest.any():
        return out, filled & out.isna()
    text = text.where(rest, "")
    filled = rest
    iso = filled & text.str.match(_ISO)
    if iso.any():
        aware = iso & text.str.contains(_ISO_AWARE)
        if aware.any():
            vals = text[aware].str.replace(r"\s*(UTC|GMT)$", "+00:00", regex=True).str.replace(",", ".")
            parsed = pd.to_datetime(vals, format="ISO8601", utc=True, errors="coerce")
            out.loc[aware] = parsed.dt.tz_convert(None)
        naive = iso & ~aware
        if naive.any():
            parsed = pd.to_datetime(text[naive].str.replace(",", "."), format="ISO8601", errors="coerce")
            out.loc[naive] = _localize(parsed, tz)
    dotted = filled & ~iso & text.str.match(_DOTTED)
    if dotted.any():
        parts = text[dotted].str.extract(_DOTTED)
        out.loc[dotted] = _localize(_from_parts(parts[2], parts[1], parts[0], parts[3], parts[4], parts[5]), tz)
    slashed = filled & ~iso & ~dotted & text.str.match(_SLASHED)
    if slashed.any():
        parts = text[slashed].str.extract(_SLASHED)
        first, second = parts[0].astype(int), parts[1].astype(int)
        if dayfirst is None:
            dayfirst = bool((first > 12).any() and not (second > 12).any())
        day, month = (parts[0], parts[1]) if dayfirst else (parts[1], parts[0])
        hour = parts[3].fillna("0").astype(int)
        ampm = parts[6].fillna("").str.upper()
        hour = np.where(ampm == "PM", hour % 12 + 12, np.where(ampm == "AM", hour % 12, hour))
        out.loc[slashed] = _localize(
            _from_parts(parts[2], month, day, pd.Series(hour, index=parts.index).astype(str), parts[4], parts[5]), tz)
    serial = filled & ~iso & ~dotted & ~slashed & text.str.match(_SERIAL)
    if serial.any():
        days = pd.to_numeric(text[serial].str.replace(",", "."), errors="coerce")
        days = days.where((days >= 10000) & (days < 100000))
        out.loc[serial] = _localize(EXCEL_EPOCH + pd.to_timedelta(days, unit="D").round("s"), tz)
    return out, (out.isna() & filled)


# Exact formats tried first on a whole column (C speed); what none of them parses goes through
# the general (slower, per-value) classification below.
_NAIVE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S",
                  "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d",
                  "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f")
_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z")


def _fast_formats(text: pd.Series, filled: pd.Series, out: pd.Series, tz: str) -> pd.Series:
    """Parse with the exact formats a sample of the column matches; returns what is left."""
    rest = filled.copy()
    sample = text[filled].head(200)
    if sample.empty:
        return rest
    for fmt in _NAIVE_FORMATS + _AWARE_FORMATS:
        aware = fmt in _AWARE_FORMATS
        hits = pd.to_datetime(sample, format=fmt, errors="coerce", utc=aware).notna()
        if not hits.any():
            continue
        sub = text[rest]
        parsed = pd.to_datetime(sub, format=fmt, errors="coerce", utc=aware)
        parsed = parsed.dt.tz_convert(None) if aware else _localize(parsed, tz)
        ok = parsed.notna()
        if ok.any():
            idx = ok.index[ok.to_numpy()]
            out.loc[idx] = parsed[ok]
            rest.loc[idx] = False
            sample = sample[rest.reindex(sample.index).to_numpy()]
        if not rest.any() or sample.empty:
            break
    return rest


def _from_parts(year, month, day, hour, minute, second) -> pd.Series:
    frame = pd.DataFrame({
        "year": pd.to_numeric(year, errors="coerce"),
        "month": pd.to_numeric(month, errors="coerce"),
        "day": pd.to_numeric(day, errors="coerce"),
        "hour": pd.to_numeric(hour, errors="coerce").fillna(0),
        "minute": pd.to_numeric(minute, errors="coerce").fillna(0),
        "second": pd.to_numeric(second, errors="coerce").fillna(0),
    })
    bad = ~frame["month"].between(1, 12) | ~frame["day"].between(1, 31) | \
        ~frame["hour"].between(0, 23) | ~frame["minute"].between(0, 59) | ~frame["second"].between(0, 60)
    frame.loc[bad, "year"] = np.nan
    return pd.to_datetime(frame, errors="coerce")


def _localize(parsed: pd.Series, tz: str) -> pd.Series:
    """Local wall times in `tz` -> naive UTC. Ambiguous (DST fall-back) hours and times skipped
    by a DST jump (a clock not yet moved forward) are read as standard time."""
    parsed = pd.to_datetime(parsed, errors="coerce")
    if tz in (None, "", "UTC", "utc", "Etc/UTC"):
        return parsed
    try:
        local = parsed.dt.tz_localize(tz, ambiguous=np.zeros(len(parsed), dtype=bool),
                                      nonexistent=pd.Timedelta(hours=1))
    except Exception as err:  # unknown zone name: a configuration mistake, not a bug
        raise ExportFormatError(f"unknown time zone {tz!r} ({err})") from None
    return local.dt.tz_convert("UTC").dt.tz_localize(None)


def check_timezone(tz: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExportFormatError(f"unknown time zone {tz!r} (use an IANA name such as "
                                "'Europe/Moscow')") from None
    return tz


def parse_dates(text: pd.Series, *, fmt: str | None = None, dayfirst: bool | None = None
                ) -> tuple[pd.Series, pd.Series]:
    """Calendar dates (datetime64 at midnight) as written: a time or offset after the date is
    ignored, never converted (a close date is a date in the CRM's own calendar)."""
    text = text.fillna("").astype(str)
    if fmt:
        parsed, bad = parse_timestamps(text, "UTC", fmt=fmt)
        return parsed.dt.normalize(), bad
    filled = text != ""
    out = _empty_ts(text.index)
    rest = filled.copy()
    for date_fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        if not rest.any():
            break
        parsed = pd.to_datetime(text[rest], format=date_fmt, errors="coerce")
        ok = parsed.notna()
        if ok.any():
            idx = ok.index[ok.to_numpy()]
            out.loc[idx] = parsed[ok]
            rest.loc[idx] = False
    if not rest.any():
        return out, filled & out.isna()
    text = text.where(rest, "")
    iso_date = text.str.extract(r"^(\d{4}-\d{1,2}-\d{1,2})(?:[T ].*)?$")[0]
    stripped = text.where(iso_date.isna(), iso_date)
    dotted = text.str.extract(r"^(\d{1,2}\.\d{1,2}\.\d{4})(?:,?\s.*)?$")[0]
    stripped = stripped.where(dotted.isna(), dotted)
    parsed, bad = parse_timestamps(stripped.fillna(""), "UTC", dayfirst=dayfirst)
    out.loc[rest] = parsed[rest].dt.normalize()
    return out, filled & out.isna()


def epoch_seconds(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Unix seconds (number or numeric text) -> naive UTC."""
    text = values.fillna("").astype(str).str.strip()
    filled = text != ""
    num = pd.to_numeric(text.where(filled), errors="coerce")
    num = num.where((num > 0) & (num < 1e10))
    out = pd.to_datetime(num, unit="s", errors="coerce").dt.round("s")
    return out, filled & out.isna()


_NUM_OK = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def parse_numbers(text: pd.Series, decimal: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Numbers written by people and by Excel in any locale: `1 500 000,50` (spaces or NBSP as
    thousands), `1.500,50`, `1,500.50`, `1500.5`, `1,5`, `1.5E+06`, currency signs around them.
    A lone separator followed by exactly three digits (`1,500`) is a thousands separator unless
    `decimal` says it is the decimal mark."""
    text = text.fillna("").astype(str)
    filled = text != ""
    fast = pd.to_numeric(text.where(filled), errors="coerce").astype(float)
    sure = fast.notna() & np.isfinite(fast)
    if decimal == ",":  # "1.500" parsed as 1.5 may be 1500: leave fractions to the slow path
        sure &= fast == np.floor(fast)
    rest = filled & ~sure
    if not rest.any():
        return fast.where(sure), filled & ~sure
    slow, bad = _parse_numbers_slow(text[rest], decimal)
    out = fast.where(sure)
    out.loc[rest] = slow
    return out, filled & out.isna()


def _parse_numbers_slow(text: pd.Series, decimal: str | None) -> tuple[pd.Series, pd.Series]:
    filled = text != ""
    s = text.str.replace(r"[\s\u00a0\u202f\u2009'’₽$€£¥]", "", regex=True)
    s = s.str.replace(r"(?i)(руб\.?|р\.)$", "", regex=True)
    has_comma = s.str.contains(",", regex=False)
    has_dot = s.str.contains(".", regex=False)
    both = has_comma & has_dot
    if both.any():
        last_comma = s.str.rfind(",")
        last_dot = s.str.rfind(".")
        comma_decimal = both & (last_comma > last_dot)
        s = s.mask(comma_decimal, s.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
        s = s.mask(both & ~comma_decimal, s.str.replace(",", "", regex=False))
    only_comma = has_comma & ~has_dot
    if only_comma.any():
        many = s.str.count(",") > 1
        thousands_like = s.str.match(r"^[+-]?\d{1,3}(,\d{3})+$")
        as_thousands = only_comma & (many | (thousands_like & (decimal != ",")))
        s = s.mask(as_thousands, s.str.replace(",", "", regex=False))
        s = s.mask(only_comma & ~as_thousands, s.str.replace(",", ".", regex=False))
    only_dot = has_dot & ~has_comma
    if only_dot.any():
        many = s.str.count(r"\.") > 1
        thousands_like = s.str.match(r"^[+-]?\d{1,3}(\.\d{3})+$")
        as_thousands = only_dot & (many | (thousands_like & (decimal == ",")))
        s = s.mask(as_thousands, s.str.replace(".", "", regex=False))
    ok = s.str.match(_NUM_OK)
    out = pd.to_numeric(s.where(filled & ok), errors="coerce")
    return out.astype(float), filled & out.isna()


_TRUE = {"true", "1", "yes", "y", "t", "да", "д", "y.", "истина"}
_FALSE = {"false", "0", "no", "n", "f", "нет", "н", "ложь"}


def parse_bools(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """true/false, 1/0, yes/no, Y/N, да/нет -> nullable boolean."""
    low = text.fillna("").astype(str).str.strip().str.lower()
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[low.isin(_TRUE)] = True
    out[low.isin(_FALSE)] = False
    return out, (low != "") & out.isna()


def naive_utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
