"""Deal snapshots: what successive deal exports say when they carry no history.

Each deals export is also a snapshot (raw.deal_snapshots). For deals no export gives a stage
history for, the stage events, amount changes and expected-close changes are rebuilt from all
stored snapshots in exported_at order, so the warehouse ends the same whatever order the exports
arrive in. Deals a newer full export no longer carries are flagged missing, deals the CRM marks
deleted or merged are flagged deleted (docs/ARCHITECTURE.md, "Snapshots"). The loader calls
these inside the transaction that loads the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from voronka.ingest.canonical import (
    DEAL_EXPORTS,
    DEAL_SNAPSHOTS,
    SNAPSHOT_EVENT_PREFIX,
    ParsedExport,
)

VALUE_HISTORIES = {"close_date_history": ("expected_close_date",), "amount_history": ("amount", "currency")}

# How a CRM names a deal's id, a deletion and a merge in its columns (compared case- and
# punctuation-blind): read from `attributes` of loaded rows and from the raw rows a reader
# quarantined (Salesforce rejects IsDeleted rows; the deal is still marked deleted).
_ID_KEYS = {"id", "nativeid", "dealid", "recordid"}
_DELETED_KEYS = {"isdeleted", "deleted", "isarchived", "archived"}
_MERGED_KEYS = {"mergedinto", "mergedintoid", "masterrecordid"}
_STATUS_KEYS, _DELETED_STATUSES = {"status", "dealstatus"}, {"deleted", "удалена", "удалено"}
_TRUE = {"true", "1", "yes", "y", "t", "да"}
_MARKER_HINT = re.compile(r"(?i)deleted|archived|merged|masterrecord")


def with_export_time(deals: pd.DataFrame) -> pd.DataFrame:
    """A deals file is one snapshot: rows without exported_at get the file's newest one, or, in a
    file with none, its newest created_at/closed_at (the CRM readers do the same)."""
    exported = pd.to_datetime(deals["exported_at"]) if "exported_at" in deals else \
        pd.Series(pd.NaT, index=deals.index)
    if deals.empty or exported.notna().all():
        return deals
    candidates = [exported.max()] + [pd.to_datetime(deals[c]).max() for c in ("created_at", "closed_at")
                                     if c in deals and exported.isna().all()]
    when = max((t for t in candidates if pd.notna(t)), default=pd.NaT)
    return deals if pd.isna(when) else deals.assign(exported_at=exported.fillna(when))


def _marker_values(row: dict, source_system: str) -> tuple[bool, str | None, str | None]:
    """(marked deleted or merged, merged into deal_key, native id) from a row's columns."""
    deleted, merged, native = False, None, None
    for key, value in row.items():
        name = re.sub(r"[\W_]+", "", str(key).casefold())
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip()
        if not text:
            continue
        if name in _DELETED_KEYS and text.casefold() in _TRUE:
            deleted = True
        elif name in _STATUS_KEYS and text.casefold() in _DELETED_STATUSES:
            deleted = True
        elif name in _MERGED_KEYS and text.casefold() not in ("nan", "none", "null", "false", "0"):
            merged = text if ":" in text else f"{source_system}:{text}"
        elif name in _ID_KEYS:
            native = text
    return deleted or merged is not None, merged, native


def _markers_in_attributes(deals: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    deleted = np.zeros(len(deals), dtype=bool)
    merged = np.full(len(deals), None, dtype=object)
    if "attributes" not in deals:
        return deleted, merged
    text = deals["attributes"].fillna("").astype(str)
    for i in np.flatnonzero(text.str.contains(_MARKER_HINT).to_numpy()):  # few rows: parse those
        try:
            data = json.loads(text.iloc[i])
        except ValueError:
            continue
        if isinstance(data, dict):
            deleted[i], merged[i], _ = _marker_values(data, str(deals["source_system"].iloc[i]))
    return deleted, merged


def _sightings_in_rejected(export: ParsedExport, known: set, at) -> pd.DataFrame:
    """Deals that are in the file but whose row was quarantined: seen (not missing), and deleted
    when the row says so. Found by an id column of the raw row; rows without one are skipped."""
    rows = []
    for rejected in export.rejected:
        if not isinstance(rejected.raw_row, dict):
            continue
        source = str(rejected.raw_row.get("source_system") or export.source_system)
        deleted, merged, native = _marker_values(rejected.raw_row, source)
        key = f"{source}:{native}"
        if native is None or key in known:
            continue
        known.add(key)
        rows.append({"deal_key": key, "source_system": source, "exported_at": at,
                     "is_deleted": deleted, "merged_into": merged, "is_quarantined": True})
    return pd.DataFrame(rows)


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, keys: tuple) -> None:
    """Insert frame into raw.<table>, replacing rows with the same keys."""
    cols = list(frame.columns)
    con.register("incoming_rows", frame)
    try:
        match = " and ".join(f"t.{k} is not distinct from i.{k}" for k in keys)
        con.execute(f"delete from raw.{table} t using incoming_rows i where {match}")
        col_list = ", ".join(cols)
        con.execute(f"insert into raw.{table} ({col_list}) select {col_list} from incoming_rows").fetchall()
    finally:
        con.unregister("incoming_rows")


@dataclass
class Snapshot:
    """What one file added to raw.deal_snapshots."""

    file: str = ""
    at: object = None  # the file's export time
    keys: list = field(default_factory=list)  # deals sighted (loaded or quarantined)
    sources: list = field(default_factory=list)  # their source systems
    deleted: int = 0  # sightings marked deleted or merged


def record_snapshots(con: duckdb.DuckDBPyConnection, export_file: str, export: ParsedExport,
                      deals: pd.DataFrame | None) -> Snapshot:
    """Store the file's deals as a snapshot taken at the file's export time (plus the deals whose
    rows were quarantined) and the pipelines it covers."""
    if export.primary_table != "deals" or deals is None or deals.empty:
        return Snapshot()
    at = pd.to_datetime(deals["exported_at"]).max()
    if pd.isna(at):
        return Snapshot()
    deleted, merged = _markers_in_attributes(deals)
    snap = pd.DataFrame({c: deals[c].to_numpy() for c in
                         ("deal_key", "source_system", "pipeline", "current_stage", "outcome", "amount",
                          "currency", "expected_close_date", "created_at", "closed_at")})
    snap["exported_at"] = at
    snap["is_deleted"] = deleted
    snap["merged_into"] = merged
    snap["is_quarantined"] = False
    seen = _sightings_in_rejected(export, set(snap["deal_key"]), at)
    if len(seen):
        snap = pd.concat([snap, seen], ignore_index=True)
    snap["export_file"] = export_file
    snap = snap[[c.name for c in DEAL_SNAPSHOTS]]
    _insert(con, "deal_snapshots", snap, ("deal_key", "exported_at", "export_file"))
    covered = deals.groupby(["source_system", "pipeline"], sort=True).size().rename("deals").reset_index()
    covered = covered.assign(export_file=export_file, exported_at=at, is_full=not export.partial)
    _insert(con, "deal_exports", covered[[c.name for c in DEAL_EXPORTS]],
            ("export_file", "exported_at", "pipeline"))
    return Snapshot(file=export_file, at=at, keys=list(snap["deal_key"]),
                    sources=sorted(snap["source_system"].unique()), deleted=int(snap["is_deleted"].sum()))


def _affected(con: duckdb.DuckDBPyConnection, name: str, keys: np.ndarray) -> int:
    frame = pd.DataFrame({"deal_key": pd.unique(keys)})
    con.register("affected_keys", frame)
    try:
        con.execute(f"create or replace temp table {name} as select distinct deal_key from affected_keys")
    finally:
        con.unregister("affected_keys")
    return len(frame)


def _keys(snapshot: Snapshot, kept: dict, table: str) -> np.ndarray:
    """The deals the snapshot sighted and those of the file's rows of `table` (an array: a list of
    millions of event keys took seconds)."""
    rows = kept[table]["deal_key"].to_numpy(dtype=object) if kept.get(table) is not None else []
    return np.concatenate([np.asarray(snapshot.keys, dtype=object), np.asarray(rows, dtype=object)])


def rebuild_from_snapshots(con: duckdb.DuckDBPyConnection, kept: dict, snapshot: Snapshot) -> dict:
    """Rebuild the snapshot-derived rows of every deal this file touched, from all its snapshots."""
    derived = {"stage_events": 0, "missing": 0}
    if _affected(con, "affected_stage", _keys(snapshot, kept, "stage_events")):
        derived["stage_events"] = _rebuild_stage_events(con)
    for table, columns in VALUE_HISTORIES.items():
        if _affected(con, "affected_values", _keys(snapshot, kept, table)):
            _rebuild_value_history(con, table, columns)
    if snapshot.sources:
        derived["missing"] = _update_deal_flags(con, snapshot)
    return derived


def _rebuild_stage_events(con: duckdb.DuckDBPyConnection) -> int:
    """Stage events of the affected deals that have no events from a CRM's history.

    The first snapshot of a deal gives a `created` event for its stage: entered at created_at
    when that is the pipeline's first open stage, at closed_at when it is a won/lost stage (the
    deal entered it when it closed), else at the export time (the earliest time the deal is known
    to be in that stage; an earlier time would claim a stage it may not have reached yet). Each
    later snapshot whose pipeline or stage differs from the one before gives a `snapshot_diff`
    event at its export time, or at closed_at for a close that falls between the two exports.
    """
    con.execute(f"delete from raw.stage_events where deal_key in (select deal_key from affected_stage) "
                f"and starts_with(event_key, '{SNAPSHOT_EVENT_PREFIX}')")
    inserted = con.execute(f"""
        insert into raw.stage_events (event_key, deal_key, pipeline, stage, entered_at, origin, export_file)
        with snapshots as (
            select
                s.*,
                row_number() over w as n,
                lag(s.pipeline) over w as previous_pipeline,
                lag(s.current_stage) over w as previous_stage,
                lag(s.exported_at) over w as previous_exported_at
            from raw.deal_snapshots s
            where s.deal_key in (select deal_key from affected_stage)
                and not s.is_quarantined
                and not exists (select 1 from raw.stage_events e where e.deal_key = s.deal_key)
            window w as (partition by s.deal_key order by s.exported_at, s.export_file)
        ),
        first_stages as (
            select pipeline, arg_min(stage, stage_order) as first_stage
            from raw.pipeline_stages where kind = 'open' group by pipeline
        ),
        moves as (
            select snapshots.*, k.kind, f.first_stage
            from snapshots
            left join raw.pipeline_stages k
                on k.pipeline = snapshots.pipeline and k.stage = snapshots.current_stage
            left join first_stages f on f.pipeline = snapshots.pipeline
            where snapshots.n = 1
                or snapshots.current_stage is distinct from snapshots.previous_stage
                or snapshots.pipeline is distinct from snapshots.previous_pipeline
        ),
        timed as (
            select
                *,
                case
                    when n = 1 and kind in ('won', 'lost', 'unknown') and closed_at is not null
                        then least(closed_at, exported_at)
                    when n = 1 and current_stage = first_stage then created_at
                    when n > 1 and kind in ('won', 'lost', 'unknown') and closed_at > previous_exported_at
                        and closed_at <= exported_at then closed_at
                    else exported_at
                end as entered_at
            from moves
        )
        select
            '{SNAPSHOT_EVENT_PREFIX}' || left(sha256(deal_key || '|' || n || '|' || pipeline || '|'
                || current_stage || '|' || strftime(entered_at, '%Y-%m-%d %H:%M:%S')), 20),
            deal_key, pipeline, current_stage, entered_at,
            case when n = 1 then 'created' else 'snapshot_diff' end,
            export_file
        from timed
    """).fetchone()[0]
    return int(inserted)


def _rebuild_value_history(con: duckdb.DuckDBPyConnection, table: str, columns: tuple) -> None:
    """amount_history / close_date_history of the affected deals without history from a CRM: the
    value of the first snapshot, then every change, each at its export's time."""
    con.execute(f"delete from raw.{table} where deal_key in (select deal_key from affected_values) "
                "and origin = 'snapshot_diff'")
    previous = ", ".join(f"lag({c}) over w as previous_{c}" for c in columns)
    changed = " or ".join(f"{c} is distinct from previous_{c}" for c in columns)
    first_known = " or ".join(f"{c} is not null" for c in columns)
    col_list = ", ".join(columns)
    con.execute(f"""
        insert into raw.{table} (deal_key, changed_at, {col_list}, export_file, origin)
        with snapshots as (
            select s.*, row_number() over w as n, {previous}
            from raw.deal_snapshots s
            where s.deal_key in (select deal_key from affected_values)
                and not s.is_quarantined
                and not exists (select 1 from raw.{table} h where h.deal_key = s.deal_key)
            window w as (partition by s.deal_key order by s.exported_at, s.export_file)
        )
        select deal_key, exported_at, {col_list}, export_file, 'snapshot_diff'
        from snapshots
        where (n = 1 and ({first_known})) or (n > 1 and ({changed}))
        -- two exports stamped with the same time: the later file's value stands
        qualify row_number() over (partition by deal_key, exported_at order by export_file desc) = 1
    """).fetchall()


def _update_deal_flags(con: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> int:
    """is_deleted, merged_into and missing_since_export of the deals of the file's source systems,
    from all their sightings; returns how many deals this file flags missing."""
    con.execute("""
        create or replace temp table deal_flag_state as
        with sightings as (
            select
                *,
                row_number() over (partition by deal_key order by exported_at desc, export_file desc) as r
            from raw.deal_snapshots
            where source_system in (select unnest(?::varchar[]))
        ),
        latest as (
            select deal_key, source_system, exported_at as last_seen_at,
                coalesce(is_deleted, false) or merged_into is not null as is_deleted, merged_into
            from sightings where r = 1
        ),
        placed as (
            select deal_key, first(pipeline order by exported_at desc, export_file desc) as pipeline
            from sightings where pipeline is not null group by deal_key
        ),
        missing as (
            select
                l.deal_key,
                first(e.export_file order by e.exported_at, e.export_file) as missing_since_export,
                first(e.exported_at order by e.exported_at, e.export_file) as missing_since_at
            from latest l
            join placed p on p.deal_key = l.deal_key
            join raw.deal_exports e
                on e.source_system = l.source_system and e.pipeline = p.pipeline
                and e.is_full and e.exported_at > l.last_seen_at
            where not l.is_deleted
            group by l.deal_key
        )
        select l.deal_key, l.is_deleted, l.merged_into, m.missing_since_export, m.missing_since_at
        from latest l left join missing m on m.deal_key = l.deal_key
    """, [snapshot.sources])
    con.execute("""
        update raw.deals set
            is_deleted = f.is_deleted, merged_into = f.merged_into,
            missing_since_export = f.missing_since_export
        from deal_flag_state f
        where raw.deals.deal_key = f.deal_key
    """).fetchall()
    return int(con.execute(
        "select count(*) from deal_flag_state where missing_since_export = ? and missing_since_at = ?",
        [snapshot.file, snapshot.at]).fetchall()[0][0])
