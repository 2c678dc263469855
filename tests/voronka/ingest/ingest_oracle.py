"""The ingest code paths as they were before issue 14 (speed), kept verbatim as the oracle the fast
paths are compared with (test_fast_paths_match_the_old_ones.py): the canonical CSV parse that
built a message for every row, the per-row sha1 event keys, and the loader's validation."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from voronka.ingest.canonical import PRIMARY_KEYS, ParsedExport, RejectedRow
from voronka.ingest.loader import _known_stages, _reasons_to_rows
from voronka.ingest.readers.canonical_csv import (
    _ACCEPTED,
    _REQUIRED,
    FILE_COLUMNS,
    _first_source,
    _sql_kind,
)


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
    reasons = pd.Series([""] * n, index=raw.index, dtype=object)

    def reject(mask: pd.Series, message: pd.Series | str) -> None:
        mask = mask & (reasons == "")
        reasons.loc[mask] = message[mask] if isinstance(message, pd.Series) else message

    out = pd.DataFrame(index=raw.index)
    for col in FILE_COLUMNS[table]:
        text = raw[col].astype(str).str.strip() if col in raw else pd.Series("", index=raw.index)
        text = text.where(text.str.len() > 0)
        kind = _sql_kind(table, col)
        if col in _REQUIRED[table]:
            reject(text.isna(), f"missing {col}")
        if kind in ("TIMESTAMP", "DATE"):
            parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
            parsed = parsed.dt.tz_convert(None)
            if kind == "DATE":
                parsed = parsed.dt.normalize()
            reject(text.notna() & parsed.isna(), "unparseable " + col + " '" + text.fillna("") + "'")
            out[col] = parsed
        elif kind.startswith("DECIMAL") or kind == "DOUBLE" or kind == "INTEGER":
            parsed = pd.to_numeric(text, errors="coerce")
            reject(text.notna() & parsed.isna(), "unparseable " + col + " '" + text.fillna("") + "'")
            if kind.startswith("DECIMAL") or col == "rate":
                reject(parsed < 0, "negative " + col + " '" + text.fillna("") + "'")
            out[col] = parsed
        else:
            accepted = _ACCEPTED.get((table, col))
            if accepted is not None:
                text = text.str.lower()
                reject(text.notna() & ~text.isin(accepted),
                       "invalid " + col + " '" + text.fillna("") + f"' (expected one of {', '.join(accepted)})")
            out[col] = text
    if source_system is not None and "source_system" in out:
        out["source_system"] = out["source_system"].fillna(source_system)

    extra = [c for c in raw.columns if c not in FILE_COLUMNS[table]]
    bad = reasons != ""
    rejected = [
        RejectedRow(int(row_number[i]), {k: str(v) for k, v in raw.iloc[i].items()}, reasons.iloc[i])
        for i in np.flatnonzero(bad.to_numpy())
    ]
    good = out[~bad].copy()
    good["_row_number"] = row_number[~bad.to_numpy()]
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


def event_keys(deal_keys: pd.Series, stages: pd.Series, entered_at: pd.Series) -> pd.Series:
    """A stable key per (deal, stage, time): the same event from two exports is one event."""
    joined = deal_keys + "|" + stages + "|" + entered_at.dt.strftime("%Y-%m-%d %H:%M:%S")
    return joined.map(lambda s: hashlib.sha1(s.encode("utf-8")).hexdigest()[:20])


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
        # A close before the creation is kept and flagged (is_closed_before_created), not quarantined.
        flag(frame["outcome"].isin(["won", "lost"]) & frame["closed_at"].isna(),
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


