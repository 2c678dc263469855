"""Reader for Voronka's own canonical CSV format (what the simulator writes, and the simplest way
for a team to hand over data): one file per canonical table, recognised by its header."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from voronka.errors import ExportFormatError
from voronka.ingest.canonical import (
    EVENT_ORIGINS,
    OUTCOMES,
    STAGE_KINDS,
    TABLES,
    ParsedExport,
    RejectedRow,
)

SOURCE_SYSTEM = "canonical"

# Columns a canonical CSV carries per table (derived keys and export_file are not in the file).
_DERIVED = {"deal_key", "event_key", "attributes", "export_file"}
FILE_COLUMNS: dict[str, list[str]] = {
    "deals": [c.name for c in TABLES["deals"] if c.name not in _DERIVED],
    "stage_events": ["source_system", "native_id", "pipeline", "stage", "entered_at", "origin"],
    **{t: [c.name for c in TABLES[t]] for t in
       ("pipeline_stages", "targets", "fx_rates", "marketing_spend")},
}
_REQUIRED = {
    t: {c.name for c in TABLES[t] if c.required} - _DERIVED for t in TABLES
}
_REQUIRED["stage_events"] = {"source_system", "native_id", "pipeline", "stage", "entered_at"}
# A deal without a creation date loads: the loader fills created_at and flags is_created_at_missing.
_REQUIRED["deals"] = _REQUIRED["deals"] - {"created_at"}
_ACCEPTED = {
    ("deals", "outcome"): OUTCOMES,
    ("pipeline_stages", "kind"): STAGE_KINDS,
    ("stage_events", "origin"): EVENT_ORIGINS,
}


def detect_table(header: list[str]) -> str | None:
    """The canonical table whose columns this header holds, or None."""
    cols = {h.strip().lower() for h in header}
    for table, needed in FILE_COLUMNS.items():
        if _REQUIRED[table] <= cols and len(cols & set(needed)) >= len(needed) - 2:
            return table
    return None


def _sql_kind(table: str, column: str) -> str:
    for c in TABLES[table]:
        if c.name == column:
            return c.sql_type
    return "VARCHAR"


def parse_frame(table: str, raw: pd.DataFrame, source_system: str | None = None,
                row_numbers: np.ndarray | None = None) -> ParsedExport:
    """Turn a frame of strings (one row per file row, header already applied) into canonical rows.

    Rows with a missing required value, or a value that does not parse as its type, are
    rejected with a reason naming the column and the value. `row_numbers` are the rows' 1-based
    numbers in the file (default 1..n).
    """
    raw = raw.rename(columns=lambda c: str(c).strip().lower())
    n = len(raw)
    row_number = np.arange(1, n + 1) if row_numbers is None else np.asarray(row_numbers)
    reasons = np.full(n, "", dtype=object)
    bad = np.zeros(n, dtype=bool)

    def reject(mask, message) -> None:
        """message: a text, or a function of the rejected rows' mask giving their texts (built
        for the few bad rows only, not for every row of the file)."""
        mask = np.asarray(mask, dtype=bool) & ~bad
        if mask.any():
            reasons[mask] = message if isinstance(message, str) else np.asarray(message(mask), dtype=object)
            bad[mask] = True

    def quoted(what: str, text: pd.Series, suffix: str = ""):
        return lambda mask: what + " '" + text[mask].fillna("") + "'" + suffix

    out = pd.DataFrame(index=raw.index)
    for col in FILE_COLUMNS[table]:
        text = _stripped(raw[col]) if col in raw else pd.Series(np.nan, index=raw.index, dtype=object)
        kind = _sql_kind(table, col)
        if col in _REQUIRED[table]:
            reject(text.isna(), f"missing {col}")
        if kind in ("TIMESTAMP", "DATE"):
            parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
            parsed = parsed.dt.tz_convert(None)
            if kind == "DATE":
                parsed = parsed.dt.normalize()
            reject(text.notna() & parsed.isna(), quoted("unparseable " + col, text))
            out[col] = parsed
        elif kind.startswith("DECIMAL") or kind == "DOUBLE" or kind == "INTEGER":
            parsed = pd.to_numeric(text, errors="coerce")
            reject(text.notna() & parsed.isna(), quoted("unparseable " + col, text))
            if kind.startswith("DECIMAL") or col == "rate":
                reject(parsed < 0, quoted("negative " + col, text))
            out[col] = parsed
        else:
            accepted = _ACCEPTED.get((table, col))
            if accepted is not None:
                text = text.str.lower()
                reject(text.notna() & ~text.isin(accepted),
                       quoted("invalid " + col, text, f" (expected one of {', '.join(accepted)})"))
            out[col] = text
    if source_system is not None and "source_system" in out:
        out["source_system"] = out["source_system"].fillna(source_system)

    extra = [c for c in raw.columns if c not in FILE_COLUMNS[table]]
    rejected = [
        RejectedRow(int(row_number[i]), {k: str(v) for k, v in raw.iloc[i].items()}, reasons[i])
        for i in np.flatnonzero(bad)
    ]
    good = out[~bad].copy() if bad.any() else out  # no copy of a clean file's millions of rows
    good["_row_number"] = row_number[~bad]
    if table == "deals":
        good.insert(0, "deal_key", good["source_system"] + ":" + good["native_id"])
        good["attributes"] = (
            raw.loc[~bad, extra].apply(lambda r: json.dumps(r.to_dict(), ensure_ascii=False), axis=1)
            if extra else None
        )
    elif table == "stage_events":
        good["deal_key"] = good["source_system"] + ":" + good["native_id"]
        good["origin"] = good["origin"].fillna("history")
        good["event_key"] = event_keys(good["deal_key"], good["stage"], good["entered_at"])
        good = good.drop(columns=["source_system", "native_id"])
    return ParsedExport(
        source_system=source_system or _first_source(good),
        primary_table=table,
        rows_read=n,
        frames={table: good},
        rejected=rejected,
    )


def _stripped(column: pd.Series) -> pd.Series:
    """The column's text stripped, missing for empty, as objects. Arrow-backed text (the CSV fast
    path) is stripped by Arrow: Python's per-value str.strip over millions of cells was the
    slowest part of reading a large file."""
    if not isinstance(column.dtype, pd.StringDtype) or column.dtype.storage not in ("pyarrow", "pyarrow_numpy"):
        text = column.astype(str).str.strip()
        return text.where(text.str.len() > 0)
    values = pc.utf8_trim_whitespace(pa.chunked_array(pa.array(column.array)))
    # Python also strips \x1c-\x1f, which Arrow keeps: those few values go through str.strip
    # (looked for value by value only when the column's bytes hold one at all).
    odd = np.zeros(len(column), dtype=bool)
    if any(_holds_separator_bytes(chunk) for chunk in values.chunks):
        odd = pc.match_substring_regex(values, r"^[\x1c-\x1f]|[\x1c-\x1f]$").to_numpy(zero_copy_only=False)
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values).combine_chunks()
    # One Python str per distinct value, shared by its rows: a 4M-row file repeats a few pipelines,
    # stages and origins, and a str per cell was most of the memory of reading it.
    encoded = pc.dictionary_encode(values)
    words = np.append(encoded.dictionary.to_numpy(zero_copy_only=False), None)
    codes = encoded.indices.fill_null(len(words) - 1).to_numpy(zero_copy_only=False)
    text = pd.Series(words[codes], index=column.index, dtype=object)
    if odd.any():
        fixed = text[odd].str.strip()
        text[odd] = fixed.where(fixed.str.len() > 0)
    return text  # None for empty (the other path's NaN: ParsedExport makes both None)


def _holds_separator_bytes(chunk: pa.Array) -> bool:
    data = chunk.buffers()[2]
    if data is None:
        return False
    raw = np.frombuffer(data, dtype=np.uint8)
    return bool(((raw >= 0x1C) & (raw <= 0x1F)).any())


def event_keys(deal_keys: pd.Series, stages: pd.Series, entered_at: pd.Series) -> pd.Series:
    """A stable key per (deal, stage, time): the same event from two exports is one event —
    sha1 of 'deal_key|stage|YYYY-mm-dd HH:MM:SS', its first 20 hex digits (hashed in DuckDB,
    vectorised; hashlib per row took 15 s on 4M events)."""
    frame = pd.DataFrame({"d": deal_keys.to_numpy(dtype=object), "s": stages.to_numpy(dtype=object),
                          "t": pd.to_datetime(entered_at).to_numpy()})
    with duckdb.connect() as con:
        con.register("events", frame)
        keys = con.execute("select substr(sha1(d || '|' || s || '|' || strftime(t, '%Y-%m-%d %H:%M:%S')), 1, 20) "
                           "as k from events").fetchnumpy()["k"]
    return pd.Series(np.asarray(keys, dtype=object), index=deal_keys.index)


def _first_source(frame: pd.DataFrame) -> str:
    if "source_system" in frame and len(frame):
        return str(frame["source_system"].iloc[0])
    return SOURCE_SYSTEM


def read_canonical(path: Path) -> ParsedExport:
    """Read one canonical CSV file (any encoding, delimiter or container the text layer reads)."""
    from voronka.ingest.readers.rawtable import RawTable
    from voronka.ingest.readers.textfile import load

    path = Path(path)
    loaded = load(path)
    columns = loaded.columns if isinstance(loaded, RawTable) else []
    table = detect_table(columns)
    if table is None:
        raise ExportFormatError(
            "header matches no canonical table (columns: " + ", ".join(map(str, columns[:12])) + ")",
            file=path.name,
        )
    return parse_table(table, loaded)


def parse_table(table: str, loaded) -> ParsedExport:
    """parse_frame over a RawTable opened by the text layer."""
    return parse_frame(table, loaded.frame, row_numbers=loaded.row_numbers)
