"""Load parsed exports into the raw schema: validate, quarantine with a reason, upsert, reconcile.

Every row read from a file ends in a raw table or in raw.quarantine, and
rows_read = rows_loaded + rows_quarantined is checked for every file. A file already loaded
(same sha256) is skipped, so re-loading is a no-op; a newer export of the same deals replaces
their rows instead of duplicating them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from orchestration.ingest.canonical import PRIMARY_KEYS, TABLES, ParsedExport, column_names
from orchestration.ingest.errors import VoronkaUserError
from orchestration.ingest.readers import read_export
from orchestration.ingest.warehouse import ensure_raw_schema

# Reference tables first, so a deal's stage can be checked against its pipeline's stages.
LOAD_ORDER = ("pipeline_stages", "fx_rates", "targets", "marketing_spend", "deals", "stage_events",
              "close_date_history")


@dataclass
class FileResult:
    file: str
    source_system: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    deals: int = 0
    stage_events: int = 0
    status: str = "loaded"  # loaded | already_loaded | refused
    message: str = ""

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


def load_files(con: duckdb.DuckDBPyConnection, paths: list[Path], source: str = "auto",
               progress=None, *, mapping: Path | None = None, timezone: str = "UTC",
               currency: str | None = None) -> list[FileResult]:
    """Load files into the warehouse; a file that cannot be read is refused, the rest go on.

    mapping, timezone and currency are passed to the readers (see readers.read_export).
    """
    ensure_raw_schema(con)
    results: list[FileResult] = []
    parsed: list[tuple[Path, str, ParsedExport]] = []
    for path in paths:
        path = Path(path)
        sha = file_sha256(path)
        if con.execute("select 1 from raw.ingest_log where file_sha256 = ?", [sha]).fetchone():
            results.append(FileResult(path.name, "", 0, 0, 0, status="already_loaded",
                                      message="same content loaded before"))
            continue
        try:
            parsed.append((path, sha, read_export(path, source=source, mapping=mapping,
                                                  timezone=timezone, currency=currency)))
        except VoronkaUserError as err:
            results.append(FileResult(path.name, "", 0, 0, 0, status="refused", message=str(err)))
    parsed.sort(key=lambda item: LOAD_ORDER.index(item[2].primary_table))
    for path, sha, export in parsed:
        results.append(load_parsed(con, path.name, sha, export))
        if progress:
            progress(path.name)
    return results


def load_parsed(con: duckdb.DuckDBPyConnection, export_file: str, sha: str,
                export: ParsedExport) -> FileResult:
    """Validate and write one parsed file inside one transaction."""
    quarantined = [
        {"row_number": r.row_number, "raw_row": r.raw_row, "reason": r.reason} for r in export.rejected
    ]
    loaded_counts: dict[str, int] = {}
    con.execute("begin transaction")
    try:
        for table in LOAD_ORDER:
            frame = export.frames.get(table)
            if frame is None:
                continue
            already_known = 0
            if table == "pipeline_stages" and "_inferred" in frame:
                # A stage list guessed from a deals export only fills in stages not known yet;
                # it never replaces a real one (those rows count as loaded: the data is there).
                guessed = len(frame)
                frame = _unknown_stages_only(con, frame.drop(columns="_inferred"))
                already_known = guessed - len(frame)
            frame, bad = _validate(con, table, frame, export.frames)
            if table != export.primary_table:
                # Rows derived from the file's rows (events from a deals file) are quarantined
                # with the row they came from but do not count as file rows.
                for row in bad:
                    row["derived"] = True
            quarantined.extend(bad)
            loaded_counts[table] = _upsert(con, table, frame, export_file) + already_known
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
    )


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


def _validate(con, table: str, frame: pd.DataFrame, frames: dict) -> tuple[pd.DataFrame, list[dict]]:
    """Checks that need more than one row or another table; returns (good rows, quarantined)."""
    frame = frame.reset_index(drop=True)
    reasons = pd.Series("", index=frame.index, dtype=object)

    def flag(mask, message) -> None:
        mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool) & (reasons == "")
        reasons.loc[mask] = message[mask] if isinstance(message, pd.Series) else message

    keys = list(PRIMARY_KEYS[table])
    if table in ("deals", "stage_events"):
        stages = _known_stages(con, frames)
        stage_col = "current_stage" if table == "deals" else "stage"
        known_pipelines = set(stages["pipeline"])
        flag(~frame["pipeline"].isin(known_pipelines),
             "unknown pipeline '" + frame["pipeline"].astype(str) + "' (no stages loaded for it)")
        pair = frame["pipeline"].astype(str) + "\x1f" + frame[stage_col].astype(str)
        known_pairs = set(stages["pipeline"] + "\x1f" + stages["stage"])
        flag(~pair.isin(known_pairs),
             "unknown stage '" + frame[stage_col].astype(str) + "' for pipeline '"
             + frame["pipeline"].astype(str) + "'")
    if table == "deals":
        flag(frame["closed_at"].notna() & (frame["closed_at"] < frame["created_at"]),
             "closed_at before created_at")
        flag((frame["outcome"] != "open") & frame["closed_at"].isna(),
             "closed deal (" + frame["outcome"].astype(str) + ") without closed_at")
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
            flag(dup, label + " (first seen in row " + first.astype("Int64").astype(str) + ")")
        else:
            flag(dup, label)
    bad = _reasons_to_rows(frame, reasons, derived=False)
    return frame[reasons == ""], bad


def _upsert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, export_file: str) -> int:
    """Insert rows, replacing rows with the same key; an older export never replaces a newer one."""
    if frame.empty:
        return 0
    cols = column_names(table)
    data = frame.copy()
    data["export_file"] = export_file if "export_file" in cols else None
    for c in cols:
        if c not in data:
            data[c] = None
    data = data[cols]
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
