"""The canonical frames a reader hands over: deals (with the day flags comparing a deal's close
with its creation in the source's time zone), stage events, pipeline stages, and `finish`, which
builds the ParsedExport so that rows_read == len(primary frame) + len(rejected) always holds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from voronka.ingest.canonical import (
    CREATION_EVENT_PREFIX,
    ParsedExport,
    column_names,
)
from voronka.ingest.readers.canonical_csv import event_keys
from voronka.ingest.readers.rows import Context, Rows

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
