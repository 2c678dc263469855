"""The fast ingest paths (issue 14) against the old ones, kept verbatim in ingest_oracle.py: on the
simulated company's canonical CSVs with planted defects (Arrow's CSV parser and, for a ragged
file, pandas'), and on the messy company's Bitrix24 export, the same rows land in every raw table
and in raw.quarantine, with the same reasons and row numbers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import ingest_oracle
import pandas as pd
import pytest

from voronka.ingest import loader
from voronka.ingest.canonical import TABLES
from voronka.ingest.loader import load_files
from voronka.ingest.readers import canonical_csv, frames
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company
from voronka.simulator.messy import simulate_messy
from voronka.simulator.messy_export import write_messy

END = date(2025, 6, 30)
# Planted defects, each a row the old path quarantined or loaded in its own way (comments: why).
BAD_DEALS = [
    "demo,x1,{p},Bad date,Ann,web,SMB,EU,A,10,USD,yesterday,,,open,,{s},2025-06-30 23:59:59",
    "demo,x2,{p},Bad amount,Ann,web,SMB,EU,A,lots,USD,2025-01-07 10:00:00,,,open,,{s},2025-06-30 23:59:59",
    "demo,,{p},No id,Ann,web,SMB,EU,A,10,USD,2025-01-07 10:00:00,,,open,,{s},2025-06-30 23:59:59",
    "demo,x3,{p},Stage?,Ann,web,SMB,EU,A,10,USD,2025-01-07 10:00:00,,,open,,Nowhere,2025-06-30 23:59:59",
    "demo,x4,Nopipe,Pipe?,Ann,web,SMB,EU,A,10,USD,2025-01-07 10:00:00,,,open,,{s},2025-06-30 23:59:59",
    "demo,x5,{p},Neg,Ann,web,SMB,EU,A,-5,USD,2025-01-07 10:00:00,,,open,,{s},2025-06-30 23:59:59",
    "demo,x6,{p},Outcome,Ann,web,SMB,EU,A,5,USD,2025-01-07 10:00:00,,,maybe,,{s},2025-06-30 23:59:59",
    "demo,x7,{p},Closed,Ann,web,SMB,EU,A,5,USD,2025-01-07 10:00:00,,,won,,{s},2025-06-30 23:59:59",
    "demo,x8,{p},Future,Ann,web,SMB,EU,A,5,USD,2026-01-07 10:00:00,,,open,,{s},2025-06-30 23:59:59",
    "demo,{id},{p},Dup,Ann,web,SMB,EU,A,5,USD,2025-01-07 10:00:00,,,open,,{s},2025-06-30 23:59:59",
    "demo,x8,{p},Dup of a bad row,Ann,web,SMB,EU,A,5,USD,2025-01-07 10:00:00,,,open,,{s},2025-06-30 23:59:59",
    # padding Arrow and Python strip alike, and \x1c that only Python strips
    "  demo , x9 ,{p}, Spaces ,Ann,web,SMB,EU,A, 7.5 ,USD, 2025-01-07 10:00:00 ,,, OPEN ,,{s},2025-06-30 23:59:59",
    "demo,\x1cx10\x1c,{p},\xa0Nbsp\xa0,Ann,web,SMB,EU,A,1e3,USD,2025-01-07T10:00:00+03:00,2025-02-01,2025-02-01,Won,,{w},",
    "demo,x11,{p},Blank cells,,,,,,,,,,,open,,{s},2025-06-30 23:59:59",
    "demo,x12,{p},Date only,Ann,web,SMB,EU,A,5,USD,2025-01-07,,2025-01-07,lost,Price,{l},2025-06-30 23:59:59",
]
BAD_EVENTS = [
    "demo,{id},{p},{s},not a time,history",
    "demo,{id},{p},Nowhere,2025-01-09 10:00:00,history",
    "demo,{id},{p},{s},2025-01-09 10:00:00,sideways",
    "demo,{id},{p},{s},2025-01-09 10:00:00,",
    "demo,{id},{p},{s},2025-01-09 10:00:00,HISTORY",  # the same event again: a duplicate event_key
    " demo ,{id}, {p} ,{s},2025-01-10T11:00:00.750,snapshot_diff",
    "demo,,{p},{s},2025-01-10 11:00:00,history",
]


def _old_paths(monkeypatch) -> None:
    monkeypatch.setattr(canonical_csv, "parse_frame", ingest_oracle.parse_frame)
    monkeypatch.setattr(canonical_csv, "event_keys", ingest_oracle.event_keys)
    monkeypatch.setattr(frames, "event_keys", ingest_oracle.event_keys)
    monkeypatch.setattr(loader, "_validate", ingest_oracle._validate)
    monkeypatch.setattr(loader, "canonical_table", lambda path: None)  # every file read first


def _warehouse(db: Path, files: list[Path]) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(db)) as con:
        results = load_files(con, files)
        assert all(r.status == "loaded" for r in results), [r.message for r in results]
        tables = [*TABLES, "quarantine", "deal_snapshots", "deal_exports"]
        out = {t: con.execute(f"select * from raw.{t} order by all").df() for t in tables}
        out["ingest_log"] = con.execute("select * exclude (loaded_at) from raw.ingest_log order by all").df()
    return out


def _same_as_old(tmp_path: Path, files: list[Path], monkeypatch) -> dict[str, pd.DataFrame]:
    new = _warehouse(tmp_path / "new.duckdb", files)
    with monkeypatch.context() as patched:
        _old_paths(patched)
        old = _warehouse(tmp_path / "old.duckdb", files)
    for table, frame in old.items():
        pd.testing.assert_frame_equal(new[table], frame, obj=f"raw.{table}")
    return new


def _canonical_inbox(tmp_path: Path) -> tuple[Path, dict]:
    company = simulate_company(n_deals=300, seed=7, end_date=END)
    inbox = tmp_path / "inbox"
    write_canonical(company, inbox, tmp_path / "truth")
    stages = company.pipeline_stages
    first = stages.sort_values("stage_order").iloc[0]
    kinds = stages[stages["pipeline"] == first["pipeline"]].set_index("kind")["stage"]
    names = {"p": first["pipeline"], "s": first["stage"], "w": kinds["won"], "l": kinds["lost"],
             "id": company.deals["native_id"].iloc[0]}
    with open(inbox / "deals.csv", "a", encoding="utf-8") as fh:
        fh.write("\n".join(row.format(**names) for row in BAD_DEALS) + "\n\n")
    with open(inbox / "stage_events.csv", "a", encoding="utf-8") as fh:
        fh.write("\n".join(row.format(**names) for row in BAD_EVENTS) + "\n")
    return inbox, names


def test_canonical_csvs_with_planted_defects_load_as_before(tmp_path, monkeypatch):
    inbox, _ = _canonical_inbox(tmp_path)
    new = _same_as_old(tmp_path, sorted(inbox.iterdir()), monkeypatch)
    reasons = " | ".join(new["quarantine"]["reason"])
    for expected in ("unparseable created_at 'yesterday'", "unparseable amount 'lots'", "missing native_id",
                     "unknown stage 'Nowhere'", "unknown pipeline 'Nopipe'", "negative amount '-5'",
                     "invalid outcome 'maybe'", "closed deal (won) without closed_at",
                     "created_at after exported_at", "duplicate deal_key (first seen in row",
                     "unparseable entered_at 'not a time'", "invalid origin 'sideways'",
                     "duplicate event_key (first seen in row"):
        assert expected in reasons
    assert {"demo:x9", "demo:x10", "demo:x11", "demo:x12"} <= set(new["deals"]["deal_key"])


def test_a_ragged_canonical_csv_read_by_pandas_loads_as_before(tmp_path, monkeypatch):
    inbox, names = _canonical_inbox(tmp_path)
    with open(inbox / "deals.csv", "a", encoding="utf-8") as fh:  # a short row: Arrow refuses the file
        fh.write("demo,x13,{p},Short row\n".format(**names))
    _same_as_old(tmp_path, sorted(inbox.iterdir()), monkeypatch)


@pytest.mark.slow
def test_the_messy_companys_bitrix24_export_loads_as_before(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    write_messy(simulate_messy(seed=3), inbox, tmp_path / "truth")
    new = _same_as_old(tmp_path, sorted(inbox.iterdir()), monkeypatch)
    assert len(new["deals"]) and len(new["stage_events"])
