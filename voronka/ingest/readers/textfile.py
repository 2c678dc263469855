"""Opening an export: what kind of file it is, how its text is encoded, its CSV or HTML table.

`load(path)` returns a `RawTable` (CSV, XLSX or an HTML table saved as .xls: a frame of stripped
strings, one row per data row) or a `RawJson` (a parsed JSON document); both are in `rawtable`.
It copes with what real exports look like: UTF-8 with or without BOM, UTF-16 with BOM,
Windows-1251 / Windows-1252 (detected), `,` `;` or tab as delimiter (sniffed, or Excel's `sep=;`
line), quoted multi-line fields, trailing spaces in headers, repeated column names (the repeat
gets a ` (2)` suffix), empty rows. A file that cannot be read raises one `ExportFormatError`
saying why. Workbooks are read by `xlsx`, JSON documents by `jsonfile`; the values in the cells
are parsed by `parsers`. Cells are data: a cell starting with `=`, `+`, `-` or `@` is kept as the
text it is, never evaluated.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from voronka.errors import ExportFormatError
from voronka.ingest.readers.jsonfile import parse_json
from voronka.ingest.readers.rawtable import (
    RawJson,
    RawTable,
    finish_table,
    table_from_rows,
    unique_names,
)
from voronka.ingest.readers.xlsx import read_xlsx

SNIFF_BYTES = 1 << 16
DELIMITERS = (",", ";", "\t")


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
        return table_from_rows(path, _html_rows(text), "html", encoding)
    return read_csv_text(path, text, encoding)



def header_of(path: Path) -> list[str] | None:
    """The header of a CSV file from its first bytes only (None for any other kind of file): enough
    to tell which canonical table a file holds before reading it."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
        if sniff_kind(path, head) != "text":
            return None
        text = _decode(head, path, sample=True)[0].lstrip("\ufeff").replace("\r\n", "\n")
    except ExportFormatError:
        return None
    lines = [line for line in text.split("\n")[:-1] if line.strip()]  # the last may be cut
    if lines and re.fullmatch(r'"?sep=(.)"?', lines[0].strip()):
        delimiter, lines = lines[0].strip().strip('"')[4], lines[1:]
    else:
        delimiter = sniff_delimiter(lines[0]) if lines else ","
    return unique_names(next(csv.reader(lines[:1], delimiter=delimiter), [])) if lines else None


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
    return finish_table(path, header, body, "csv", encoding, delimiter)


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
