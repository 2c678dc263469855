"""What every CRM reader shares: per-row checks that reject with a reason, the canonical frames,
the `attributes` JSON, stage-order inference, companion files and the format registry.

A reader resolves the export's columns (`Rows.column`), parses them with the vectorised parsers
of `textfile` (each failure rejects the row with a reason naming the canonical field, the file's
column and the value), and hands the typed columns to `deals_frame` / `events_frame`. Rows are
rejected once, with the first reason found; `finish` builds the ParsedExport so that
rows_read == len(primary frame) + len(rejected) always holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from voronka.errors import ExportFormatError
from voronka.ingest.canonical import (
    CREATION_EVENT_PREFIX,
    ParsedExport,
    RejectedRow,
    column_names,
)
from voronka.ingest.readers import textfile
from voronka.ingest.readers.canonical_csv import event_keys
from voronka.ingest.readers.textfile import RawJson, RawTable

FUTURE_SLACK = timedelta(days=1)  # clock skew and time zones: a day after the file was written


def norm(name: str) -> str:
    """Header comparison key: case-folded, whitespace collapsed, quotes unified."""
    name = re.sub(r"\s+", " ", str(name)).strip().casefold()
    return name.replace("“", '"').replace("”", '"').replace("ё", "е")


@dataclass
class Context:
    """Settings a reader gets from the caller (per source: time zone, default currency)."""

    path: Path
    timezone: str = "UTC"
    currency: str | None = None
    mapping: Path | None = None
    companions: list | None = None  # explicit companion files; None = look beside the file
    warnings: list = field(default_factory=list)

    @property
    def file(self) -> str:
        return self.path.name

    def written_at(self) -> datetime:
        """When the file was written (its mtime, naive UTC): no data in it can be later."""
        try:
            return datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc).replace(tzinfo=None)
        except OSError:
            return textfile.naive_utc_now()


class Rows:
    """The rows of a tabular export with their rejection reasons (first reason wins)."""

    def __init__(self, table: RawTable, ctx: Context):
        self.table, self.ctx = table, ctx
        self.raw = table.frame
        self.n = len(self.raw)
        self.reasons = pd.Series("", index=self.raw.index, dtype=object)
        self.used: set[str] = set()
        # (field, text, parsed, time zone) of every date/time column read: deals_frame finds the
        # text a deal's close and creation came from to compare them by day (day_flags).
        self.stamps: list[tuple[str, pd.Series, pd.Series, str]] = []
        self._by_norm: dict[str, str] = {}
        for col in self.raw.columns:
            self._by_norm.setdefault(norm(col), col)
        if table.encoding == "utf-8 (damaged)":
            for col in self.raw.columns:
                bad = self.raw[col].str.contains("\ufffd", regex=False)
                self.reject(bad, f"undecodable bytes in column {col!r} (the file is not valid UTF-8)")

    # -- columns ---------------------------------------------------------------------------
    def column(self, *aliases: str, required: bool = False, field: str | None = None,
               mark: bool = True) -> str | None:
        """The file's name of the first alias present (case and spacing ignored). Marked used
        (kept out of `attributes`) unless mark=False."""
        for alias in aliases:
            found = self._by_norm.get(norm(alias))
            if found is not None:
                if mark:
                    self.used.add(found)
                return found
        if required:
            raise ExportFormatError(
                f"missing required column {aliases[0]!r}"
                + (f" (for {field})" if field else "")
                + f"; the header has: {_preview(self.raw.columns)}",
                file=self.ctx.file, column=aliases[0])
        return None

    def columns_matching(self, pattern: str) -> list[str]:
        rx = re.compile(pattern, re.IGNORECASE)
        return [c for c in self.raw.columns if rx.search(c)]

    def text(self, col: str | None) -> pd.Series:
        """Stripped text, None where empty (or where the column is absent)."""
        if col is None:
            return pd.Series(None, index=self.raw.index, dtype=object)
        s = self.raw[col]
        return s.where(s != "", None)

    def text_or(self, col: str | None, default: str | None) -> pd.Series:
        """Text of the column, `default` where it is empty or absent."""
        values = self.text(col)
        return values.fillna(default) if default is not None else values

    # -- rejecting ---------------------------------------------------------------------------
    def reject(self, mask, message) -> None:
        """Reject the rows in mask not rejected yet. message: a text, a Series of texts, or a
        function of the rejected rows' index returning either (built only when needed)."""
        mask = pd.Series(mask, index=self.raw.index).fillna(False).astype(bool) & (self.reasons == "")
        if not mask.any():
            return
        idx = mask.index[mask.to_numpy()]
        if callable(message):
            message = message(idx)
        self.reasons.loc[idx] = message.reindex(idx) if isinstance(message, pd.Series) else message

    def _value_reason(self, what: str, field: str, col: str, values: pd.Series):
        def build(idx):
            shown = values.reindex(idx).fillna("").astype(str).str.slice(0, 80)
            return f"{what} {field} '" + shown + f"' (column {col!r})"
        return build

    def require(self, col: str | None, field: str) -> pd.Series:
        values = self.text(col)
        self.reject(values.isna(), f"missing {field} (column {col!r})" if col else f"missing {field}")
        return values

    def timestamps(self, col: str | None, field: str, *, required: bool = False, future: bool = True,
                   tz: str | None = None, fmt: str | None = None, dayfirst: bool | None = None,
                   null_words: tuple = ()) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        if null_words:
            raw = raw.where(~raw.str.casefold().isin({w.casefold() for w in null_words}), "")
        if required:
            self.reject(raw == "", f"missing {field} (column {col!r})" if col else f"missing {field}")
        parsed, bad = textfile.parse_timestamps(raw, tz or self.ctx.timezone, fmt=fmt, dayfirst=dayfirst)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        self.stamps.append((field, raw, parsed, tz or self.ctx.timezone))
        if future:
            self.reject_future(parsed, field, col, raw)
        return parsed

    def reject_future(self, parsed: pd.Series, field: str, col: str | None, raw: pd.Series | None = None) -> None:
        limit = self.ctx.written_at() + FUTURE_SLACK
        late = parsed > limit
        if late.any():
            def build(idx):
                shown = raw.reindex(idx) if raw is not None else \
                    parsed.reindex(idx).dt.strftime("%Y-%m-%d %H:%M:%S")
                return (f"future {field} '" + shown.astype(str) + f"' (column {col!r}; "
                        f"after the file was written on {limit - FUTURE_SLACK:%Y-%m-%d})")
            self.reject(late, build)

    def dates(self, col: str | None, field: str, *, fmt: str | None = None, dayfirst: bool | None = None,
              null_words: tuple = ()) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        if null_words:
            raw = raw.where(~raw.str.casefold().isin({w.casefold() for w in null_words}), "")
        parsed, bad = textfile.parse_dates(raw, fmt=fmt, dayfirst=dayfirst)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        self.stamps.append((field, raw, parsed, "UTC"))
        return parsed

    def numbers(self, col: str | None, field: str, *, negative_ok: bool = False,
                decimal: str | None = None) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        if decimal is None and self.table.delimiter == ";":
            decimal = ","
        parsed, bad = textfile.parse_numbers(raw, decimal)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        if not negative_ok:
            self.reject(parsed < 0, self._value_reason("negative", field, col, raw))
        return parsed

    def bools(self, col: str | None, field: str) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        parsed, bad = textfile.parse_bools(raw)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        return parsed

    def reject_duplicates(self, ids: pd.Series, col: str) -> None:
        """A native id seen again in the file: the first valid row wins; a later row is rejected,
        saying whether it repeats the first or conflicts with it (and where)."""
        live = ids.notna() & (self.reasons == "")
        dup = live & ids.where(live).duplicated(keep="first")
        if not dup.any():
            return
        numbers = pd.Series(self.table.row_numbers, index=self.raw.index)
        positions = pd.Series(self.raw.index, index=self.raw.index).where(live)
        first_index = positions.groupby(ids.where(live)).transform("first")
        messages = ("duplicate " + col + " '" + ids.astype(str) + "' (first seen in row "
                    + numbers.reindex(first_index.fillna(0).astype(int).to_numpy()).astype(str).to_numpy()
                    + ")").where(dup, "")
        for i in np.flatnonzero(dup.to_numpy())[:1000]:  # say how the first thousand differ
            idx = self.raw.index[i]
            j = int(first_index.loc[idx])
            a, b = self.raw.loc[j], self.raw.loc[idx]
            differs = [c for c in self.raw.columns if a[c] != b[c]]
            head = f"duplicate {col} '{ids.loc[idx]}' (first seen in row {numbers.loc[j]})"
            if differs:
                c = differs[0]
                more = f" and {len(differs) - 1} more" if len(differs) > 1 else ""
                messages.loc[idx] = (f"{head} with conflicting data: column {c!r} is "
                                     f"'{str(a[c])[:40]}' there, '{str(b[c])[:40]}' here{more}")
            else:
                messages.loc[idx] = f"{head}, the same data repeated"
        self.reject(dup, messages)

    # -- results -----------------------------------------------------------------------------
    @property
    def good(self) -> pd.Series:
        return self.reasons == ""

    def row_numbers(self) -> np.ndarray:
        return self.table.row_numbers

    def rejected(self) -> list[RejectedRow]:
        bad = np.flatnonzero((self.reasons != "").to_numpy())
        if not len(bad):
            return []
        sub = self.raw.iloc[bad]
        records = sub.to_dict(orient="records")
        return [RejectedRow(int(self.table.row_numbers[i]), rec, self.reasons.iloc[i])
                for i, rec in zip(bad, records)]

    def unused_columns(self) -> list[str]:
        return [c for c in self.raw.columns if c not in self.used]

    def attributes(self, columns: list[str] | None = None) -> pd.Series:
        cols = self.unused_columns() if columns is None else columns
        return attributes_json(self.raw, cols)


def map_unique(values: pd.Series, func) -> pd.Series:
    """func applied once per distinct value (stage names repeat: a million rows, a dozen names)."""
    uniques = pd.unique(values.dropna())
    table = dict(zip(uniques, func(pd.Series(uniques, dtype=object)).tolist())) if len(uniques) else {}
    return values.map(table)


def _preview(columns, limit: int = 12) -> str:
    cols = [str(c) for c in columns]
    shown = ", ".join(repr(c) for c in cols[:limit])
    return shown + (f" … ({len(cols)} in all)" if len(cols) > limit else "")


def attributes_json(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One JSON object per row of the given columns' non-empty values (all text), vectorised
    with Arrow string kernels: about a second per million rows per non-empty column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(frame)
    if n == 0:
        return pd.Series([], index=frame.index, dtype=object)
    pieces = []
    for c in columns:
        values = frame[c]
        if not (values != "").any():
            continue
        arr = pa.array(values.to_numpy(dtype=object), type=pa.string())
        if pc.any(pc.match_substring_regex(arr, r'[\\"\x00-\x1f]')).as_py():
            rare = pc.match_substring_regex(arr, r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
            if pc.any(rare).as_py():
                py = arr.to_pylist()
                flags = rare.to_pylist()
                arr = pa.array([json.dumps(v, ensure_ascii=False)[1:-1] if f else v
                                for v, f in zip(py, flags)], type=pa.string())
                arr = _escape_basic(arr, skip=flags)
            else:
                arr = _escape_basic(arr)
        key = json.dumps(str(c), ensure_ascii=False)
        piece = pc.binary_join_element_wise(key + ':"', arr, '",', "")
        empty = pa.array((values == "").to_numpy(dtype=bool))
        piece = pc.if_else(empty, pa.scalar(None, pa.string()), piece)
        pieces.append(piece)
    if not pieces:
        return pd.Series(["{}"] * n, index=frame.index, dtype=object)
    # null_handling="skip" is avoided on purpose: some pyarrow versions drop all-null rows.
    body = pc.binary_join_element_wise(*pieces, "", null_handling="replace", null_replacement="")
    body = pc.utf8_rtrim(body, characters=",")
    out = pc.binary_join_element_wise("{", body, "}", "")
    return pd.Series(out.to_numpy(zero_copy_only=False), index=frame.index, dtype=object)


def _escape_basic(arr, skip=None):
    import pyarrow as pa
    import pyarrow.compute as pc

    escaped = arr
    for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, old, new)
    if skip is not None:  # values already escaped by json.dumps
        escaped = pc.if_else(pa.array(skip), arr, escaped)
    return escaped


# ---------------------------------------------------------------------------------------------
# Canonical frames

DEAL_COLUMNS = [c for c in column_names("deals") if c != "export_file"]
EVENT_COLUMNS = [c for c in column_names("stage_events") if c != "export_file"]
STAGE_COLUMNS = column_names("pipeline_stages")


def deals_frame(source_system: str, rows: Rows, **values) -> pd.DataFrame:
    """The canonical deals of the rows not rejected; `values` are full-length Series (or
    scalars) for canonical columns; `attributes` defaults to every unused column."""
    good = rows.good.to_numpy()
    native = values["native_id"]
    out = pd.DataFrame(index=rows.raw.index[good])
    out["deal_key"] = (source_system + ":" + native.astype(str))[good]
    out["source_system"] = source_system
    for col in DEAL_COLUMNS:
        if col in ("deal_key", "source_system"):
            continue
        if col == "attributes" and "attributes" not in values:
            out[col] = rows.attributes().to_numpy()[good]
            continue
        value = values.get(col)
        if isinstance(value, pd.Series):
            out[col] = value.to_numpy()[good]
        else:
            out[col] = value
    for col in ("created_at", "closed_at", "exported_at"):
        out[col] = pd.to_datetime(out[col])
    if "is_close_date_only" not in values and not out.empty:
        closed_at, flags = day_flags(rows, values.get("created_at"), values.get("closed_at"))
        out["closed_at"] = pd.to_datetime(closed_at.to_numpy()[good])
        for name, flag in flags.items():
            out[name] = flag.to_numpy()[good]
    out["expected_close_date"] = pd.to_datetime(out["expected_close_date"])
    if out["amount"].notna().any():
        out["amount"] = pd.to_numeric(out["amount"]).round(2)
    out["_row_number"] = rows.row_numbers()[good]
    return out.reset_index(drop=True)


# A time of day in a date/time text; an Excel serial with a fraction of a day; a numeric UTC
# offset after a time of day (not the "-05" of a date).
_TIME_OF_DAY = r"\d:\d\d"
_EXCEL_TIME = r"^\d{4,5}[.,]\d*[1-9]"
_NUMERIC_OFFSET = r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?P<sign>[+-])(?P<hh>\d{2}):?(?P<mm>\d{2})?$"


def wall_clock(text: pd.Series, parsed: pd.Series, tz: str) -> tuple[pd.Series, pd.Series]:
    """(local wall-clock time, given as a date) of parsed date/time texts, in the source's zone.

    A text with an explicit non-UTC offset ('2021-05-08T00:00:00+03:00', Bitrix24) is local in
    that offset; any other value (naive local, a date, or UTC such as Salesforce's CreatedDate)
    is its instant seen in `tz` (the readers read local texts in it). A date without a time, or a
    local midnight, counts as a date. Arrow string kernels: about a second per million values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    index = parsed.index
    parsed = pd.to_datetime(parsed)
    arr = pa.array(text.reindex(index).astype(object).where(text.reindex(index).notna(), "").to_numpy(),
                   type=pa.string())
    has_time = pc.match_substring_regex(arr, _TIME_OF_DAY).to_numpy(zero_copy_only=False)
    excel_time = pc.match_substring_regex(arr, _EXCEL_TIME).to_numpy(zero_copy_only=False)
    no_time = pd.Series(~has_time & ~excel_time, index=index)
    wall = pd.Series(parsed.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None).to_numpy(), index=index)
    offset = pc.extract_regex(arr, _NUMERIC_OFFSET)
    found = pc.is_valid(offset).to_numpy(zero_copy_only=False)
    if found.any():
        sign = np.where(pc.struct_field(offset, "sign").to_numpy(zero_copy_only=False) == "-", -1, 1)
        hours = pd.to_numeric(pd.Series(pc.struct_field(offset, "hh").to_numpy(zero_copy_only=False)), errors="coerce")
        minutes = pd.to_numeric(pd.Series(pc.struct_field(offset, "mm").to_numpy(zero_copy_only=False)),
                                errors="coerce").fillna(0)
        shift = pd.to_timedelta((sign * (hours.fillna(0) * 60 + minutes)).to_numpy(), unit="m")
        local = found & (shift != pd.Timedelta(0))
        wall[local] = (parsed + pd.Series(shift, index=index))[local]
    date_only = parsed.notna() & (no_time | (wall == wall.dt.normalize()))
    return wall, date_only


def _source_text(rows: "Rows", values: pd.Series, fields: tuple) -> tuple[pd.Series, pd.Series]:
    """(the text each value was parsed from, its time zone) among the rows' date/time columns of
    `fields` (the first column whose parsed value equals it); None where none does."""
    values = pd.to_datetime(values)
    text = pd.Series(None, index=values.index, dtype=object)
    zone = pd.Series(None, index=values.index, dtype=object)
    for field_, raw, parsed, tz in rows.stamps:
        if field_ not in fields:
            continue
        hit = text.isna() & values.notna() & (pd.to_datetime(parsed).reindex(values.index) == values)
        text[hit] = raw.reindex(values.index)[hit]
        zone[hit] = tz
    return text, zone


def _local(rows: "Rows", values: pd.Series, fields: tuple) -> tuple[pd.Series, pd.Series]:
    """(wall clock in the source's zone, given as a date) of a deal column, per its source text."""
    values = pd.to_datetime(values)
    text, zone = _source_text(rows, values, fields)
    wall = pd.Series(values.dt.tz_localize("UTC").dt.tz_convert(rows.ctx.timezone).dt.tz_localize(None)
                     .to_numpy(), index=values.index)
    date_only = pd.Series(False, index=values.index, dtype=bool)
    for tz in zone.dropna().unique():
        part = (zone == tz).to_numpy()
        w, d = wall_clock(text[part], values[part], tz)
        wall.loc[part] = w.to_numpy()
        date_only.loc[part] = d.to_numpy(dtype=bool)
    return wall, date_only


def day_flags(rows: "Rows", created: pd.Series | None, closed: pd.Series | None) -> tuple[pd.Series, dict]:
    """A deal's close compared with its creation by day in the source's time zone.

    Returns (closed_at, flags): a close date given without a time (or at local midnight) on the
    creation day is set to created_at (a date, not a time before it); is_closed_before_created
    marks a close on an earlier day than the creation (kept, flagged; never quarantined)."""
    index = rows.raw.index
    created = pd.to_datetime(created if isinstance(created, pd.Series) else pd.Series(pd.NaT, index=index))
    closed = pd.to_datetime(closed if isinstance(closed, pd.Series) else pd.Series(pd.NaT, index=index))
    created_wall, _ = _local(rows, created, ("created_at",))
    closed_wall, date_only = _local(rows, closed, ("closed_at", "expected_close_date"))
    both = closed.notna() & created.notna()
    created_day, closed_day = created_wall.dt.normalize(), closed_wall.dt.normalize()
    same_day = both & date_only & (closed_day == created_day) & (closed < created)
    closed = closed.where(~same_day, created)
    return closed, {"is_close_date_only": date_only & closed.notna(),
                    "is_closed_before_created": both & (closed_day < created_day)}


def newest(*series: pd.Series, mask: np.ndarray | None = None):
    """The latest timestamp among the given columns (rows in mask): an export's exported_at."""
    best = None
    for s in series:
        if s is None:
            continue
        vals = s[mask] if mask is not None else s
        m = vals.max()
        if pd.notna(m) and (best is None or m > best):
            best = m
    return best


def events_frame(deal_keys: pd.Series, pipelines: pd.Series, stages: pd.Series, entered_at: pd.Series,
                 origins, row_numbers) -> pd.DataFrame:
    """Canonical stage_events, sorted by deal and time."""
    out = pd.DataFrame({
        "deal_key": deal_keys.to_numpy(),
        "pipeline": pipelines.to_numpy(),
        "stage": stages.to_numpy(),
        "entered_at": pd.to_datetime(entered_at).to_numpy(),
        "origin": origins.to_numpy() if isinstance(origins, pd.Series) else origins,
        "_row_number": np.asarray(row_numbers),
    })
    out["event_key"] = event_keys(out["deal_key"], out["stage"], out["entered_at"]) if len(out) else \
        pd.Series([], dtype=object)
    out = out.sort_values(["deal_key", "entered_at", "_row_number"], kind="stable").reset_index(drop=True)
    return out[EVENT_COLUMNS + ["_row_number"]]


def creation_events(deal_keys: pd.Series, before_pipelines: pd.Series, before_stages: pd.Series,
                    entered_at: pd.Series, row_numbers) -> pd.DataFrame:
    """From a history of moves, each deal's `created` event: the stage it left on its earliest
    move, one second before that move (see canonical.CREATION_EVENT_PREFIX). The rows are marked
    `_derived` (they come from a file row but are not file rows). Arguments are aligned per move."""
    moves = pd.DataFrame({"deal_key": deal_keys.to_numpy(), "pipeline": before_pipelines.to_numpy(),
                          "stage": before_stages.to_numpy(), "at": pd.to_datetime(entered_at).to_numpy(),
                          "row": np.asarray(row_numbers)})
    first = moves.sort_values(["deal_key", "at", "row"], kind="stable").drop_duplicates("deal_key")
    first = first[first["pipeline"].notna() & first["stage"].notna() & first["at"].notna()]
    if first.empty:
        return empty_events().assign(_derived=pd.Series(dtype=bool))
    out = events_frame(first["deal_key"], first["pipeline"], first["stage"],
                       first["at"] - pd.Timedelta(seconds=1), "created", first["row"])
    out["event_key"] = CREATION_EVENT_PREFIX + out["event_key"]
    return out.assign(_derived=True)


def empty_events() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "entered_at" else object)
                         for c in EVENT_COLUMNS + ["_row_number"]})


def stages_frame(pipelines, stages, orders, kinds, probabilities=None, row_numbers=None,
                 inferred: bool = False) -> pd.DataFrame:
    out = pd.DataFrame({
        "pipeline": pd.Series(pipelines, dtype=object).to_numpy(),
        "stage": pd.Series(stages, dtype=object).to_numpy(),
        "stage_order": pd.Series(orders).astype("int64").to_numpy(),
        "kind": pd.Series(kinds, dtype=object).to_numpy(),
        "crm_probability": (pd.Series(probabilities, dtype=float).to_numpy()
                            if probabilities is not None else np.nan),
    })
    if row_numbers is not None:
        out["_row_number"] = np.asarray(row_numbers)
    if inferred:
        out["_inferred"] = True
    return out


def finish(ctx: Context, source_system: str, primary: str, rows: Rows, frames: dict,
           warnings: list | None = None) -> ParsedExport:
    rejected = rows.rejected()
    all_warnings = list(ctx.warnings) + list(warnings or [])
    kept = frames[primary]
    derived = int(kept["_derived"].eq(True).sum()) if "_derived" in kept else 0
    export = ParsedExport(source_system=source_system, primary_table=primary,
                          rows_read=len(kept) - derived + len(rejected), frames=frames,
                          rejected=rejected, warnings=all_warnings or None)
    assert export.rows_read == rows.n, "a row neither kept nor rejected"
    return export


# ---------------------------------------------------------------------------------------------
# Stage order when the export carries no stage list


def infer_stages(file: str, pipeline: pd.Series, stage: pd.Series, kind: pd.Series, *,
                 created_at: pd.Series | None = None, probability: pd.Series | None = None,
                 typical: list[str] | None = None, events: pd.DataFrame | None = None,
                 how: str | None = None, terminal: tuple = (),
                 name_kind: Callable | None = None) -> tuple[pd.DataFrame, list[str]]:
    """A pipeline_stages frame built from what the deals carry, and one warning per pipeline
    naming the stages taken as won and lost.

    Kind of a stage: the most common kind of its deals (won/lost/open). Order of the open stages:
    the order deals move through them when `events` (deal_key, pipeline, stage, entered_at) are
    given; else the median CRM probability; else the deals' median age (older deals sit in later
    stages). Stages named in `typical` (a CRM's default pipeline) keep that order among the
    slots they hold. Won stages come after the open ones, lost stages last. `terminal`:
    (stage, kind) pairs every pipeline of this CRM has, added when no deal is in them.
    `name_kind`: Series of stage names -> kinds, for stages only events know."""
    frame = pd.DataFrame({"pipeline": pipeline.to_numpy(), "stage": stage.to_numpy(),
                          "kind": kind.to_numpy()})
    if created_at is not None:
        frame["age_key"] = -pd.to_datetime(created_at).astype("int64").to_numpy()
    if probability is not None:
        frame["probability"] = probability.to_numpy()
    frame = frame.dropna(subset=["pipeline", "stage"])
    extra_order = None
    if events is not None and len(events):
        ev = events[events["deal_key"].notna() & events["entered_at"].notna()]
        ev = ev.sort_values(["deal_key", "entered_at"]).copy()
        ev["rank"] = ev.groupby("deal_key").cumcount()
        ev["size"] = ev.groupby("deal_key")["rank"].transform("max").clip(lower=1)
        ev["pos"] = ev["rank"] / ev["size"]
        extra_order = ev.groupby(["pipeline", "stage"])["pos"].mean()
        seen = events[["pipeline", "stage"]].dropna().drop_duplicates()
        known = frame[["pipeline", "stage"]].drop_duplicates()
        extra = seen.merge(known, how="left", indicator=True)
        extra = extra[extra["_merge"] == "left_only"][["pipeline", "stage"]]
        if len(extra):
            kinds = name_kind(extra["stage"]) if name_kind is not None else "open"
            frame = pd.concat([frame, extra.assign(kind=kinds)], ignore_index=True)
    rows, warnings = [], []
    typical_rank = {norm(s): i for i, s in enumerate(typical or [])}
    for pipe, group in frame.groupby("pipeline", sort=True):
        stats = group.groupby("stage").agg(
            kind=("kind", lambda k: k.value_counts().idxmax() if k.notna().any() else "open"),
            n=("kind", "size"),
        )
        if "age_key" in group:
            stats["age_key"] = group.groupby("stage")["age_key"].median()
        if "probability" in group:
            stats["probability"] = group.groupby("stage")["probability"].median()
        if extra_order is not None:
            stats["pos"] = extra_order.loc[pipe].reindex(stats.index) if pipe in extra_order.index.get_level_values(0) \
                else np.nan
        keys = []
        for key in ("pos", "probability", "age_key"):
            if key in stats and stats[key].notna().any():
                keys.append(key)
        open_stages = stats[stats["kind"] == "open"].copy()
        open_stages["name_key"] = open_stages.index
        order = list(open_stages.sort_values(keys + ["name_key"] if keys else ["name_key"],
                                             na_position="last").index)
        slots = [i for i, s in enumerate(order) if norm(s) in typical_rank]
        known = sorted((order[i] for i in slots), key=lambda s: typical_rank[norm(s)])
        for i, s in zip(slots, known):
            order[i] = s
        for name, kind_ in terminal:
            if not (stats["kind"] == kind_).any() and name not in stats.index:
                stats.loc[name, ["kind", "n"]] = [kind_, 0]
        won = sorted(stats.index[stats["kind"] == "won"])
        lost = sorted(stats.index[stats["kind"] == "lost"])
        unknown = sorted(stats.index[stats["kind"] == "unknown"])  # closed, outcome not known
        for i, s in enumerate(order + won + unknown + lost, start=1):
            prob = stats.loc[s, "probability"] if "probability" in stats else np.nan
            rows.append((pipe, s, i, stats.loc[s, "kind"], prob))
        basis = how or ("the order deals move through them" if "pos" in keys else
                        "the CRM probabilities" if "probability" in keys else
                        "the age of the deals in each stage")
        warnings.append(
            f"{file}: no stage list for pipeline '{pipe}'; stage order inferred from {basis}; "
            f"taken as won: {', '.join(won) or 'none'}; taken as lost: {', '.join(lost) or 'none'}"
            + (f"; closed with unknown outcome: {', '.join(unknown)}" if unknown else ""))
    if not rows:
        return stages_frame([], [], [], [], [], inferred=True), warnings
    p, s, o, k, pr = zip(*rows)
    return stages_frame(p, s, o, k, pr, inferred=True), warnings


# ---------------------------------------------------------------------------------------------
# Formats, detection and companion files


@dataclass(frozen=True)
class Format:
    """One kind of file a reader understands. Tables are recognised by their header
    (`signature` columns, at least `min_match` of them, and none of `excludes`); JSON documents
    by `probe`."""

    name: str  # e.g. "amocrm.deals"
    source: str  # the source_system / read_export source name
    label: str  # for messages: "amoCRM deals export"
    read: Callable  # (RawTable | RawJson, Context) -> ParsedExport
    signature: tuple = ()
    min_match: int = 3
    probe: Callable | None = None  # JSON: (data) -> bool
    head_needles: tuple = ()  # JSON: substrings its first 64 KB holds (cheap companion test)
    excludes: tuple = ()  # columns a table of this format never has

    def table_score(self, columns: list[str]) -> tuple[int, float]:
        have = {norm(c) for c in columns}
        sig = [norm(c) for c in self.signature]
        matched = sum(1 for c in sig if c in have)
        return matched, matched / max(1, len(sig))

    def matches_table(self, columns: list[str]) -> bool:
        matched, _ = self.table_score(columns)
        excluded = {norm(c) for c in self.excludes} & {norm(c) for c in columns}
        return bool(self.signature) and matched >= min(self.min_match, len(self.signature)) and not excluded


def records_from_json(data, *paths: tuple) -> list | None:
    """The first list of objects found at one of the key paths (e.g. ('result', 'items')); a
    list of pages (each a dict) is concatenated."""
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        pages = [records_from_json(d, *paths) for d in data]
        if all(p is not None for p in pages):
            return [r for p in pages for r in p]
    for path in paths:
        node = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list) and all(isinstance(r, dict) for r in node):
            return node
    return None


def companion_files(ctx: Context, formats: list[Format]) -> list[tuple[Format, RawTable | RawJson]]:
    """Files beside the export (or ctx.companions) that are of one of `formats`, loaded.

    A deals export says only which stage a deal is in; the stage list and its order come from
    another export of the same CRM (pipelines JSON, crm.status.list, OpportunityStage.csv)
    dropped in the same folder. Newest file first."""
    if ctx.companions is not None:
        candidates = [Path(p) for p in ctx.companions]
    else:
        folder = ctx.path.parent
        try:
            candidates = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                          and p.resolve() != ctx.path.resolve()]
        except OSError:
            candidates = []
    found = []
    for p in sorted(candidates, key=lambda q: (-q.stat().st_mtime, q.name)):
        fmt = quick_detect(p, formats)
        if fmt is None:
            continue
        try:
            loaded = textfile.load(p)
        except ExportFormatError:
            continue
        if isinstance(loaded, RawJson) and fmt.probe is not None and not fmt.probe(loaded.data):
            continue
        if isinstance(loaded, RawTable) and not fmt.matches_table(loaded.columns):
            continue
        found.append((fmt, loaded))
    return found


def quick_detect(path: Path, formats: list[Format]) -> Format | None:
    """Which of `formats` a file is, from its first 64 KB only (None if none or unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(textfile.SNIFF_BYTES)
        kind = textfile.sniff_kind(path, head)
        if kind not in ("json", "text"):
            return None
        text = textfile._decode(head, path, sample=True)[0].lstrip("\ufeff")
    except (ExportFormatError, OSError):
        return None
    if kind == "json":
        for fmt in formats:
            if fmt.head_needles and all(n in text for n in fmt.head_needles):
                return fmt
        return None
    line = text.split("\n", 1)[0].rstrip("\r")
    delim = textfile.sniff_delimiter(line)
    header = [h.strip().strip('"') for h in line.split(delim)]
    for fmt in formats:
        if fmt.signature and fmt.matches_table(header):
            return fmt
    return None
