"""Load parsed exports into the raw schema: validate, quarantine with a reason, upsert, reconcile.

Every row read from a file ends in a raw table or in raw.quarantine, and
rows_read = rows_loaded + rows_quarantined is checked for every file. A file already loaded
(same sha256) is skipped, so re-loading is a no-op; a newer export of the same deals replaces
their rows instead of duplicating them.

Each deals export is also a snapshot (raw.deal_snapshots), stored and replayed by
`voronka.ingest.snapshots` inside the same transaction: for deals no export gives a stage history
for, the stage events, amount changes and expected-close changes are rebuilt from all stored
snapshots, and deals are flagged missing or deleted (docs/ARCHITECTURE.md, "Snapshots").
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from voronka.errors import VoronkaUserError
from voronka.ingest import outcomes
from voronka.ingest.canonical import (
    PRIMARY_KEYS,
    ROW_FLAG_NAMES,
    TABLES,
    ParsedExport,
    column_names,
)
from voronka.ingest.outcomes import resettle_unknown_outcomes
from voronka.ingest.readers import canonical_table, read_export
from voronka.ingest.snapshots import (
    VALUE_HISTORIES,
    rebuild_from_snapshots,
    record_snapshots,
    with_export_time,
)
from voronka.ingest.warehouse import ensure_raw_schema

# Reference tables first, so a deal's stage can be checked against its pipeline's stages.
LOAD_ORDER = ("pipeline_stages", "fx_rates", "targets", "marketing_spend", "deals", "stage_events",
              "close_date_history", "amount_history")


@dataclass
class FileResult:
    file: str
    source_system: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    deals: int = 0
    stage_events: int = 0
    deals_missing: int = 0  # deals of its pipelines this (full) export no longer carries
    deals_deleted: int = 0  # deals it marks deleted or merged
    stage_events_derived: int = 0  # snapshot events rebuilt for the deals it touched + creation events of a history
    status: str = "loaded"  # loaded | already_loaded | refused
    message: str = ""
    # Deals loaded with a flag instead of quarantined, by flag (canonical.ROW_FLAGS), plus
    # outcome_unknown: closed deals whose outcome neither the CRM nor stage_outcomes says.
    flagged: dict = field(default_factory=dict)
    # The commonest quarantine reasons of this file, [(reason, rows)], most rows first.
    top_reasons: list = field(default_factory=list)

    @property
    def quarantined_share(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    def flagged_text(self) -> str:
        """'is_close_date_only 12, outcome_unknown 3' (empty when nothing was flagged)."""
        return ", ".join(f"{k} {v}" for k, v in self.flagged.items() if v)

    def as_dict(self) -> dict:
        return asdict(self)


class ReconciliationError(RuntimeError):
    """rows_read != rows_loaded + rows_quarantined: a bug in a reader or the loader."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mapping_for(path: Path, sources) -> Path | None:
    """The mapping of the first voronka.yaml `sources` entry whose pattern matches the file's
    name (sources: [(pattern, mapping path)]), or None."""
    import fnmatch

    for pattern, mapping in sources or ():
        if fnmatch.fnmatch(Path(path).name, pattern):
            return Path(mapping)
    return None


def load_files(con: duckdb.DuckDBPyConnection, paths: list[Path], source: str = "auto",
               progress=None, *, mapping: Path | None = None, timezone: str = "UTC",
               currency: str | None = None, sources=(), stage_outcomes: dict | None = None
               ) -> list[FileResult]:
    """Load files into the warehouse; a file that cannot be read is refused, the rest go on.

    mapping, timezone and currency are passed to the readers (see readers.read_export); a file
    without `mapping` whose name matches one of `sources` ([(glob, mapping path)], voronka.yaml)
    is read with that source's mapping. stage_outcomes (voronka/ingest/outcomes.py) settles
    closed deals of unknown outcome, the ones already loaded too.
    progress, if given, is called after each step — a file is read, then loaded (a canonical CSV
    just before it is loaded) — with "read deals.csv (1/4)" (two steps per file; a file skipped or
    refused takes both at once).
    """
    ensure_raw_schema(con)
    rules = stage_outcomes or {}
    resettle_unknown_outcomes(con, rules)
    results: list[FileResult] = []
    # (path, sha, table, parsed export or None, mapping): a canonical CSV names its table in its
    # header, so it is read only when its turn to load comes and one file's rows at a time are in
    # memory (reading every file first held 6 GB for a 1M-deal export); other files are read now.
    pending: list[tuple[Path, str, str, ParsedExport | None, Path | None]] = []
    steps, done = 2 * len(paths), 0

    def step(what: str, n: int = 1) -> None:
        nonlocal done
        done += n
        if progress:
            progress(f"{what} ({done}/{steps})")

    def read(path: Path, file_mapping: Path | None) -> ParsedExport | None:
        try:
            export = read_export(path, source=source, mapping=file_mapping, timezone=timezone,
                                 currency=currency)
        except VoronkaUserError as err:
            results.append(FileResult(path.name, "", 0, 0, 0, status="refused", message=str(err)))
            step(f"refused {path.name}", 2)
            return None
        step(f"read {path.name}")
        return export

    for path in paths:
        path = Path(path)
        sha = file_sha256(path)
        if con.execute("select 1 from raw.ingest_log where file_sha256 = ?", [sha]).fetchone():
            results.append(FileResult(path.name, "", 0, 0, 0, status="already_loaded",
                                      message="same content loaded before"))
            step(f"{path.name} already loaded", 2)
            continue
        file_mapping = mapping if mapping is not None or source != "auto" else mapping_for(path, sources)
        table = canonical_table(path) if file_mapping is None and source in ("auto", "canonical") else None
        export = None if table is not None else read(path, file_mapping)
        if table is not None or export is not None:
            pending.append((path, sha, table or export.primary_table, export, file_mapping))
    pending.sort(key=lambda item: LOAD_ORDER.index(item[2]))
    while pending:
        path, sha, _, export, file_mapping = pending.pop(0)
        export = export or read(path, file_mapping)
        if export is not None:
            results.append(load_parsed(con, path.name, sha, export, stage_outcomes=rules))
            step(f"loaded {path.name}")
    return results


def load_parsed(con: duckdb.DuckDBPyConnection, export_file: str, sha: str,
                export: ParsedExport, stage_outcomes: dict | None = None) -> FileResult:
    """Validate and write one parsed file inside one transaction; a deals file is also stored as
    a snapshot, and the snapshot-derived rows and flags of the deals it touches are rebuilt."""
    rules = stage_outcomes or {}
    flagged: dict[str, int] = {}
    quarantined = [
        {"row_number": r.row_number, "raw_row": r.raw_row, "reason": r.reason} for r in export.rejected
    ]
    loaded_counts: dict[str, int] = {}
    derived_loaded = 0
    kept: dict[str, pd.DataFrame] = {}
    con.execute("begin transaction")
    try:
        for table in LOAD_ORDER:
            frame = export.frames.get(table)
            if frame is None:
                continue
            if table == "deals":
                frame = with_export_time(frame)
                frame = _with_row_flags(con, outcomes.settle_deals(frame, rules), export.frames)
            if table == "pipeline_stages":
                frame = outcomes.settle_stages(frame, rules)
            if table in VALUE_HISTORIES:
                frame = frame.assign(origin=frame["origin"].fillna("history") if "origin" in frame
                                     else "history")
            already_known = 0
            if table == "pipeline_stages" and "_inferred" in frame:
                # A stage list guessed from a deals export only fills in stages not known yet;
                # it never replaces a real one (those rows count as loaded: the data is there).
                guessed = len(frame)
                frame = _unknown_stages_only(con, frame.drop(columns="_inferred"))
                already_known = guessed - len(frame)
            derived_rows = frame.iloc[:0]
            if "_derived" in frame:  # rows read off other rows: the creation events of a history, the
                # stages after the first of a Bitrix24 category (a category list's row is its stage list)
                is_derived = frame["_derived"].eq(True).to_numpy()
                frame = frame.drop(columns="_derived")
                frame, derived_rows = frame[~is_derived], frame[is_derived]
            frame, bad = _validate(con, table, frame, export.frames)
            if table != export.primary_table:
                # Rows derived from the file's rows (events from a deals file) are quarantined
                # with the row they came from but do not count as file rows.
                for row in bad:
                    row["derived"] = True
            quarantined.extend(bad)
            loaded_counts[table] = _upsert(con, table, frame, export_file) + already_known
            if len(derived_rows):
                derived_rows, derived_bad = _validate(con, table, derived_rows, export.frames)
                for row in derived_bad:
                    row["derived"] = True
                quarantined.extend(derived_bad)
                derived_upserted = _upsert(con, table, derived_rows, export_file)
                if table == "stage_events":  # FileResult.stage_events_derived counts events only
                    derived_loaded += derived_upserted
                frame = pd.concat([frame, derived_rows], ignore_index=True)
            kept[table] = frame
            if table == "deals":
                flagged = {name: int(frame[name].sum()) for name in ROW_FLAG_NAMES}
                flagged["outcome_unknown"] = int(frame["outcome"].eq("unknown").sum())
        snapshot = record_snapshots(con, export_file, export, kept.get("deals"))
        derived = rebuild_from_snapshots(con, kept, snapshot)
        _created_from_first_events(con)
        rows_quarantined = sum(1 for q in quarantined if not q.get("derived"))
        rows_loaded = loaded_counts.get(export.primary_table, 0)
        if export.rows_read != rows_loaded + rows_quarantined:
            raise ReconciliationError(
                f"{export_file}: rows_read {export.rows_read} != loaded {rows_loaded} + "
                f"quarantined {rows_quarantined}"
            )
        _write_quarantine(con, export_file, quarantined)
        con.execute(
            "insert into raw.ingest_log values (?, ?, ?, ?, ?, ?, ?)",
            [export_file, sha, export.source_system, export.rows_read, rows_loaded,
             rows_quarantined, datetime.now(timezone.utc).replace(tzinfo=None)],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return FileResult(
        file=export_file,
        source_system=export.source_system,
        rows_read=export.rows_read,
        rows_loaded=rows_loaded,
        rows_quarantined=rows_quarantined,
        deals=loaded_counts.get("deals", 0),
        stage_events=loaded_counts.get("stage_events", 0),
        deals_missing=derived["missing"],
        deals_deleted=snapshot.deleted,
        stage_events_derived=derived["stage_events"] + derived_loaded,
        flagged=flagged,
        top_reasons=_top_reasons([q for q in quarantined if not q.get("derived")]),
    )


def _top_reasons(quarantined: list[dict], n: int = 3) -> list[tuple[str, int]]:
    """The commonest reasons, values taken out ("unparseable created_at (column 'X')" for all
    the rows whose created_at did not parse), most rows first."""
    counts: dict[str, int] = {}
    for q in quarantined:
        general = re.sub(r" '[^']*'(?= \((?:column|first seen))", "", str(q["reason"]))
        general = re.sub(r"\(first seen in row \d+\).*", "", general).strip()
        counts[general] = counts.get(general, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _with_row_flags(con: duckdb.DuckDBPyConnection, deals: pd.DataFrame, frames: dict) -> pd.DataFrame:
    """The row flags of canonical.ROW_FLAGS, never null.

    Readers that compare close and creation by day in the source's time zone set the first two;
    for the others (canonical CSVs, in UTC) a close at midnight is a date, compared by UTC day.
    A deal without created_at gets the earliest of its first stage event (this file's or the
    warehouse's), its closed_at and the export time, and is_created_at_missing."""
    deals = deals.copy()
    created = pd.to_datetime(deals["created_at"])
    closed = pd.to_datetime(deals["closed_at"])
    if "is_close_date_only" not in deals:
        date_only = closed.notna() & closed.eq(closed.dt.normalize())
        same_day = date_only & created.notna() & closed.dt.normalize().eq(created.dt.normalize()) & (closed < created)
        closed = closed.where(~same_day, created)
        deals["closed_at"] = closed
        deals["is_close_date_only"] = date_only
    # A closed deal whose close date is after the export that says it is closed (Salesforce keeps
    # a lost deal's planned CloseDate): it closed by the export at the latest. Left as given, the
    # as-of marts would count it open until that date.
    exported = pd.to_datetime(deals["exported_at"]) if "exported_at" in deals else pd.Series(pd.NaT, index=deals.index)
    after = closed.notna() & exported.notna() & (closed > exported) & deals["outcome"].ne("open").to_numpy()
    closed = closed.where(~after, exported)
    deals["closed_at"] = closed
    deals["is_closed_after_export"] = after
    if "is_closed_before_created" not in deals:
        deals["is_closed_before_created"] = closed.notna() & created.notna() & \
            (closed.dt.normalize() < created.dt.normalize())
    missing = created.isna()
    deals["is_created_at_missing"] = missing
    if missing.any():
        keys = deals.loc[missing, "deal_key"]
        first = pd.Series(pd.NaT, index=keys.index, dtype="datetime64[ns]")
        events = frames.get("stage_events")
        if events is not None and len(events):
            in_file = pd.to_datetime(events["entered_at"]).groupby(events["deal_key"]).min()
            first = first.fillna(keys.map(in_file))
        con.register("missing_keys", pd.DataFrame({"deal_key": keys.unique()}))
        try:
            stored = con.execute("select deal_key, min(entered_at) as first_at from raw.stage_events "
                                 "where deal_key in (select deal_key from missing_keys) group by deal_key").df()
        finally:
            con.unregister("missing_keys")
        if len(stored):
            from_warehouse = keys.map(stored.set_index("deal_key")["first_at"])
            first = pd.concat([first, pd.to_datetime(from_warehouse)], axis=1).min(axis=1)
        candidates = pd.concat([first, closed[missing], pd.to_datetime(deals.loc[missing, "exported_at"])], axis=1)
        deals.loc[missing, "created_at"] = candidates.min(axis=1)
    for name in ROW_FLAG_NAMES:
        deals[name] = deals[name].fillna(False).astype(bool)
    return deals


def _created_from_first_events(con: duckdb.DuckDBPyConnection) -> None:
    """A deal whose created_at was filled (is_created_at_missing) moves it back to its first stage
    event when a history loaded after the deal has an earlier one."""
    con.execute("""
        update raw.deals set created_at = e.first_at
        from (
            select deal_key, min(entered_at) as first_at from raw.stage_events
            where deal_key in (select deal_key from raw.deals where is_created_at_missing)
            group by deal_key
        ) e
        where raw.deals.deal_key = e.deal_key and raw.deals.is_created_at_missing
            and e.first_at < raw.deals.created_at
    """).fetchall()


def _row_json(frame: pd.DataFrame, idx: np.ndarray) -> list[dict]:
    sub = frame.iloc[idx].drop(columns=["_row_number"], errors="ignore")
    return json.loads(sub.to_json(orient="records", date_format="iso", force_ascii=False))


def _reasons_to_rows(frame: pd.DataFrame, reasons: pd.Series, derived: bool) -> list[dict]:
    bad_idx = np.flatnonzero((reasons != "").to_numpy())
    if not len(bad_idx):
        return []
    rows = _row_json(frame, bad_idx)
    numbers = frame["_row_number"].to_numpy() if "_row_number" in frame else np.full(len(frame), -1)
    return [
        {"row_number": int(numbers[i]), "raw_row": row, "reason": reasons.iloc[i], "derived": derived}
        for i, row in zip(bad_idx, rows)
    ]


def _unknown_stages_only(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> pd.DataFrame:
    known = con.execute("select pipeline, stage from raw.pipeline_stages").df()
    if known.empty:
        return frame
    merged = frame.merge(known, on=["pipeline", "stage"], how="left", indicator=True)
    return frame[(merged["_merge"] == "left_only").to_numpy()]


def _known_stages(con: duckdb.DuckDBPyConnection, frames: dict) -> pd.DataFrame:
    known = con.execute("select pipeline, stage, kind from raw.pipeline_stages").df()
    if frames.get("pipeline_stages") is not None:
        known = pd.concat([known, frames["pipeline_stages"][["pipeline", "stage", "kind"]]])
    return known.drop_duplicates(["pipeline", "stage"])


def _pair_known(pipelines: pd.Series, stages: pd.Series, known_pairs: set) -> np.ndarray:
    """Whether each row's 'pipeline\x1fstage' is in known_pairs: decided once per distinct pair (a
    few dozen) instead of building a string per row (10 s on 4M events); rows with a missing
    value the row-wise way."""
    p_codes, p_values = pd.factorize(pipelines)
    s_codes, s_values = pd.factorize(stages)
    base = len(s_values) + 1
    combos, inverse = np.unique(p_codes.astype(np.int64) * base + s_codes + 1, return_inverse=True)

    def known(combo: int) -> bool:
        p, s = divmod(int(combo), base)
        return p >= 0 and s > 0 and f"{p_values[p]}\x1f{s_values[s - 1]}" in known_pairs

    result = np.array([known(c) for c in combos], dtype=bool)[inverse.reshape(-1)]
    missing = (p_codes < 0) | (s_codes < 0)
    if missing.any():
        pair = pipelines[missing].astype(str) + "\x1f" + stages[missing].astype(str)
        result[missing] = pair.isin(known_pairs).to_numpy()
    return result


def _validate(con, table: str, frame: pd.DataFrame, frames: dict) -> tuple[pd.DataFrame, list[dict]]:
    """Checks that need more than one row or another table; returns (good rows, quarantined)."""
    if not frame.index.equals(pd.RangeIndex(len(frame))):  # (a reset copies every column)
        frame = frame.reset_index(drop=True)
    reasons = pd.Series("", index=frame.index, dtype=object)

    def flag(mask, message) -> None:
        """message: a text, or a function of the flagged rows giving their texts (built for the
        bad rows only: building one per row of a clean file was a sixth of a large load)."""
        mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool) & (reasons == "")
        if mask.any():
            reasons.loc[mask] = message if isinstance(message, str) else message(frame[mask])

    keys = list(PRIMARY_KEYS[table])
    if table in ("deals", "stage_events"):
        stages = _known_stages(con, frames)
        stage_col = "current_stage" if table == "deals" else "stage"
        known_pipelines = set(stages["pipeline"])
        flag(~frame["pipeline"].isin(known_pipelines),
             lambda rows: "unknown pipeline '" + rows["pipeline"].astype(str) + "' (no stages loaded for it)")
        known_pairs = set(stages["pipeline"] + "\x1f" + stages["stage"])
        flag(~_pair_known(frame["pipeline"], frame[stage_col], known_pairs),
             lambda rows: "unknown stage '" + rows[stage_col].astype(str) + "' for pipeline '"
             + rows["pipeline"].astype(str) + "'")
    if table == "deals":
        # A close before the creation is kept and flagged (is_closed_before_created), not quarantined.
        flag(frame["outcome"].isin(["won", "lost"]) & frame["closed_at"].isna(),
             lambda rows: "closed deal (" + rows["outcome"].astype(str) + ") without closed_at")
        if frame["exported_at"].notna().any():
            flag(frame["created_at"] > frame["exported_at"], "created_at after exported_at (future date)")
    # A key seen twice in one file: the first row wins, the rest are quarantined.
    dup = frame.duplicated(keys, keep="first") & (reasons == "")
    if dup.any():
        first_row = frame.drop_duplicates(keys, keep="first").set_index(keys)["_row_number"] \
            if "_row_number" in frame else None
        label = "duplicate " + "/".join(keys)
        if first_row is not None:
            idx = pd.MultiIndex.from_frame(frame[keys]) if len(keys) > 1 else frame[keys[0]]
            first = pd.Series(first_row.reindex(idx).to_numpy(), index=frame.index)
            flag(dup, lambda rows: label + " (first seen in row " + first[rows.index].astype("Int64").astype(str) + ")")
        else:
            flag(dup, label)
    bad = _reasons_to_rows(frame, reasons, derived=False)
    return (frame[reasons == ""] if bad else frame), bad


def _upsert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, export_file: str) -> int:
    """Insert rows, replacing rows with the same key; an older export never replaces a newer one."""
    if frame.empty:
        return 0
    cols = column_names(table) + (list(ROW_FLAG_NAMES) if table == "deals" else [])
    # The frame's own columns, not a copy of them (a copy of 4M rows took seconds).
    data = pd.DataFrame({c: frame.get(c) for c in cols}, index=frame.index, copy=False)
    data["export_file"] = export_file if "export_file" in cols else None
    keys = PRIMARY_KEYS[table]
    con.register("incoming", data)
    try:
        match = " and ".join(f"t.{k} is not distinct from i.{k}" for k in keys)
        if table == "deals":
            # Keep the existing row where it comes from a newer export than the incoming one.
            con.execute(
                f"create or replace temp table incoming_kept as select i.* from incoming i "
                f"where not exists (select 1 from raw.deals t where {match} "
                f"and t.exported_at > i.exported_at)"
            )
        else:
            con.execute("create or replace temp table incoming_kept as select * from incoming")
        con.execute(f"delete from raw.{table} t using incoming_kept i where {match}")
        col_list = ", ".join(cols)
        con.execute(f"insert into raw.{table} ({col_list}) select {col_list} from incoming_kept")
        con.execute("drop table incoming_kept")
    finally:
        con.unregister("incoming")
    # A row an older export carried counts as loaded: newer data for its key is already there.
    return len(data)


def _write_quarantine(con: duckdb.DuckDBPyConnection, export_file: str, rows: list[dict]) -> None:
    if not rows:
        return
    frame = pd.DataFrame({
        "export_file": export_file,
        "row_number": [r["row_number"] for r in rows],
        "raw_row": [json.dumps(r["raw_row"], ensure_ascii=False, default=str) for r in rows],
        "reason": [r["reason"] for r in rows],
    })
    con.register("q", frame)
    try:
        con.execute("insert into raw.quarantine select export_file, row_number, raw_row, reason from q")
    finally:
        con.unregister("q")


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in TABLES}
