"""Ingest of canonical CSVs: reconciliation, quarantine with reasons, idempotent reload, updates."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from voronka.ingest.loader import load_files

STAGES = """pipeline,stage,stage_order,kind,crm_probability
Sales,New,1,open,0.1
Sales,Proposal,2,open,0.5
Sales,Won,3,won,1.0
Sales,Lost,4,lost,0.0
"""
DEALS_HEADER = ("source_system,native_id,pipeline,title,owner,lead_source,segment,region,product,"
                "amount,currency,created_at,expected_close_date,closed_at,outcome,lost_reason,"
                "current_stage,exported_at\n")
GOOD_DEALS = [
    'crm,1,Sales,"Acme, Inc. ""big""",Ann,web,SMB,EU,A,1000.50,USD,2026-01-05 10:00:00,2026-03-01,,open,,Proposal,2026-02-01 00:00:00',
    "crm,2,Sales,Beta,Bob,ref,SMB,EU,A,200,EUR,2026-01-06 10:00:00,,2026-01-20 12:00:00,won,,Won,2026-02-01 00:00:00",
    "crm,3,Sales,Гамма,Иван,web,SMB,RU,B,50000,RUB,2026-01-07 10:00:00,,2026-01-21 12:00:00,lost,Дорого,Lost,2026-02-01 00:00:00",
]
BAD_DEALS = {
    "crm,4,Sales,Bad date,Ann,web,SMB,EU,A,10,USD,yesterday,,,open,,New,2026-02-01 00:00:00": "unparseable created_at",
    "crm,5,Sales,Bad amount,Ann,web,SMB,EU,A,lots,USD,2026-01-07 10:00:00,,,open,,New,2026-02-01 00:00:00": "unparseable amount",
    "crm,,Sales,No id,Ann,web,SMB,EU,A,10,USD,2026-01-07 10:00:00,,,open,,New,2026-02-01 00:00:00": "missing native_id",
    "crm,6,Sales,Stage?,Ann,web,SMB,EU,A,10,USD,2026-01-07 10:00:00,,,open,,Negotiation,2026-02-01 00:00:00": "unknown stage 'Negotiation'",
    "crm,7,Sales,Neg,Ann,web,SMB,EU,A,-5,USD,2026-01-07 10:00:00,,,open,,New,2026-02-01 00:00:00": "negative amount",
    "crm,1,Sales,Dup,Ann,web,SMB,EU,A,5,USD,2026-01-07 10:00:00,,,open,,New,2026-02-01 00:00:00": "duplicate deal_key (first seen in row 1)",
    "crm,8,Sales,Outcome,Ann,web,SMB,EU,A,5,USD,2026-01-07 10:00:00,,,maybe,,New,2026-02-01 00:00:00": "invalid outcome 'maybe'",
    "crm,9,Sales,Closed,Ann,web,SMB,EU,A,5,USD,2026-01-07 10:00:00,,,won,,Won,2026-02-01 00:00:00": "closed deal (won) without closed_at",
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield connection
    connection.close()


def test_every_row_lands_in_a_table_or_in_quarantine_with_its_reason(tmp_path, con):
    stages = write(tmp_path / "stages.csv", STAGES)
    deals = write(tmp_path / "deals.csv", DEALS_HEADER + "\n".join(GOOD_DEALS + list(BAD_DEALS)) + "\n")
    results = {r.file: r for r in load_files(con, [deals, stages])}

    d = results["deals.csv"]
    assert (d.rows_read, d.rows_loaded, d.rows_quarantined) == (11, 3, 8)
    assert results["stages.csv"].rows_loaded == 4
    keys = [k for (k,) in con.execute("select deal_key from raw.deals order by deal_key").fetchall()]
    assert keys == ["crm:1", "crm:2", "crm:3"]
    reasons = dict(con.execute("select row_number, reason from raw.quarantine").fetchall())
    for offset, expected in enumerate(BAD_DEALS.values()):
        assert expected in reasons[len(GOOD_DEALS) + offset + 1]
    raw_row = json.loads(con.execute("select raw_row from raw.quarantine where row_number = 4").fetchone()[0])
    assert raw_row["created_at"] == "yesterday" and raw_row["title"] == "Bad date"
    log = con.execute("select rows_read, rows_loaded, rows_quarantined from raw.ingest_log "
                      "where export_file = 'deals.csv'").fetchone()
    assert log == (11, 3, 8)


def test_values_are_typed_and_quoted_text_survives(tmp_path, con):
    load_files(con, [write(tmp_path / "s.csv", STAGES),
                     write(tmp_path / "d.csv", DEALS_HEADER + "\n".join(GOOD_DEALS) + "\n")])
    title, amount, created, closed = con.execute(
        "select title, amount, created_at, closed_at from raw.deals where deal_key = 'crm:1'").fetchone()
    assert title == 'Acme, Inc. "big"'
    assert float(amount) == 1000.50
    assert str(created) == "2026-01-05 10:00:00" and closed is None
    assert con.execute("select title from raw.deals where deal_key='crm:3'").fetchone()[0] == "Гамма"


def test_reloading_the_same_file_is_a_no_op(tmp_path, con):
    files = [write(tmp_path / "s.csv", STAGES), write(tmp_path / "d.csv", DEALS_HEADER + "\n".join(GOOD_DEALS) + "\n")]
    load_files(con, files)
    before = con.execute("select count(*) from raw.deals").fetchone()[0]
    second = load_files(con, files)
    assert [r.status for r in second] == ["already_loaded", "already_loaded"]
    assert con.execute("select count(*) from raw.deals").fetchone()[0] == before == 3
    assert con.execute("select count(*) from raw.ingest_log").fetchone()[0] == 2


def test_a_newer_export_updates_deals_and_an_older_one_does_not_overwrite(tmp_path, con):
    load_files(con, [write(tmp_path / "s.csv", STAGES),
                     write(tmp_path / "d1.csv", DEALS_HEADER + GOOD_DEALS[0] + "\n")])
    newer = GOOD_DEALS[0].replace(",open,,Proposal,2026-02-01", ",open,,New,2026-03-01")
    load_files(con, [write(tmp_path / "d2.csv", DEALS_HEADER + newer + "\n")])
    older = GOOD_DEALS[0].replace("1000.50", "1.00").replace("2026-02-01 00:00:00", "2026-01-15 00:00:00")
    load_files(con, [write(tmp_path / "d0.csv", DEALS_HEADER + older + "\n")])
    rows = con.execute("select current_stage, amount, exported_at from raw.deals").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "New" and float(rows[0][1]) == 1000.50 and str(rows[0][2]) == "2026-03-01 00:00:00"


def test_a_file_in_no_known_format_is_refused_and_others_still_load(tmp_path, con):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"foo;bar\n1;2\n")
    empty = write(tmp_path / "empty.csv", "")
    results = load_files(con, [junk, empty, write(tmp_path / "s.csv", STAGES)])
    status = {r.file: (r.status, r.message) for r in results}
    assert status["junk.csv"][0] == "refused" and "junk.csv" in status["junk.csv"][1]
    assert status["empty.csv"][0] == "refused" and "empty" in status["empty.csv"][1]
    assert status["s.csv"][0] == "loaded"
    assert con.execute("select count(*) from raw.pipeline_stages").fetchone()[0] == 4


def test_stage_events_get_stable_keys_so_the_same_event_twice_is_one(tmp_path, con):
    events = ("source_system,native_id,pipeline,stage,entered_at,origin\n"
              "crm,1,Sales,New,2026-01-05 10:00:00,history\n"
              "crm,1,Sales,Proposal,2026-01-09 10:00:00,history\n")
    load_files(con, [write(tmp_path / "s.csv", STAGES), write(tmp_path / "e1.csv", events)])
    load_files(con, [write(tmp_path / "e2.csv", events + "crm,1,Sales,Won,2026-01-20 10:00:00,\n")])
    rows = con.execute("select deal_key, stage, origin from raw.stage_events order by entered_at").fetchall()
    assert rows == [("crm:1", "New", "history"), ("crm:1", "Proposal", "history"), ("crm:1", "Won", "history")]


def test_an_inferred_stage_list_fills_gaps_but_never_replaces_the_real_one(tmp_path, con):
    import pandas as pd

    from voronka.ingest.canonical import ParsedExport
    from voronka.ingest.loader import load_parsed

    load_files(con, [write(tmp_path / "s.csv", STAGES)])
    guessed = pd.DataFrame({"pipeline": ["Sales", "Sales"], "stage": ["New", "Demo"], "stage_order": [9, 3],
                            "kind": ["open", "open"], "crm_probability": [None, None], "_inferred": True})
    export = ParsedExport(source_system="x", primary_table="pipeline_stages", rows_read=2,
                          frames={"pipeline_stages": guessed}, rejected=[])
    load_parsed(con, "guess.csv", "sha-guess", export)
    rows = dict(con.execute("select stage, stage_order from raw.pipeline_stages").fetchall())
    assert rows["New"] == 1 and rows["Demo"] == 3 and len(rows) == 5


def test_a_bad_mapping_refuses_the_file_with_one_line(tmp_path, con):
    data = write(tmp_path / "deals.csv", "id,name\n1,x\n")
    mapping = write(tmp_path / "m.yaml", "columns: [not, a, mapping]\n")
    [result] = load_files(con, [data], mapping=mapping)
    assert result.status == "refused" and "\n" not in result.message and result.message
