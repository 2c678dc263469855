"""Successive deal exports as snapshots: derived stage events, value histories, order-independence,
missing and deleted deals."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from voronka.ingest.canonical import ParsedExport
from voronka.ingest.loader import load_files, load_parsed
from voronka.ingest.readers.canonical_csv import parse_frame

STAGES = """pipeline,stage,stage_order,kind,crm_probability
Sales,New,1,open,0.1
Sales,Proposal,2,open,0.5
Sales,Won,3,won,1.0
Sales,Lost,4,lost,0.0
Other,Lead,1,open,0.1
Other,Done,2,won,1.0
Other,Gone,3,lost,0.0
"""
HEADER = ("source_system,native_id,pipeline,title,owner,lead_source,segment,region,product,amount,currency,"
          "created_at,expected_close_date,closed_at,outcome,lost_reason,current_stage,exported_at")


def deal(native_id, stage, amount=100, close="2026-06-01", *, pipeline="Sales", outcome="open",
         closed_at="", created="2026-01-05 10:00:00", extra=()):
    return {"native_id": str(native_id), "pipeline": pipeline, "amount": amount, "currency": "USD",
            "created_at": created, "expected_close_date": close, "closed_at": closed_at,
            "outcome": outcome, "current_stage": stage, "extra": tuple(extra)}


def export_csv(path: Path, exported_at: str, deals: list[dict], extra_columns=()) -> Path:
    lines = [HEADER + "".join("," + c for c in extra_columns)]
    for d in deals:
        lines.append(",".join([
            "crm", d["native_id"], d["pipeline"], f"Deal {d['native_id']}", "ann", "web", "SMB", "EU", "A",
            str(d["amount"]), d["currency"], d["created_at"], d["expected_close_date"], d["closed_at"],
            d["outcome"], "", d["current_stage"], exported_at,
            *(d["extra"] + ("",) * (len(extra_columns) - len(d["extra"])))]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    stages = tmp_path / "stages.csv"
    stages.write_text(STAGES, encoding="utf-8")
    load_files(connection, [stages])
    yield connection
    connection.close()


def events(con, deal_key):
    return [(stage, str(at), origin) for stage, at, origin in con.execute(
        "select stage, entered_at, origin from raw.stage_events where deal_key = ? order by entered_at",
        [deal_key]).fetchall()]


def test_stage_amount_and_close_changes_between_exports_are_recorded(tmp_path, con):
    first = export_csv(tmp_path / "e1.csv", "2026-02-01 00:00:00", [
        deal(1, "New", 100, "2026-03-01"),
        deal(2, "Proposal", 200),
        deal(3, "Won", 300, outcome="won", closed_at="2026-01-20 12:00:00"),
    ])
    second = export_csv(tmp_path / "e2.csv", "2026-03-01 00:00:00", [
        deal(1, "Proposal", 150, "2026-04-01"),
        deal(2, "Proposal", 200),
        deal(3, "Won", 300, outcome="won", closed_at="2026-01-20 12:00:00"),
    ])
    [r1] = load_files(con, [first])
    [r2] = load_files(con, [second])
    # First export: a created event per deal. In the pipeline's first stage it is dated at
    # creation, in a won stage at the close, in a later open stage at the export time.
    assert events(con, "crm:1") == [("New", "2026-01-05 10:00:00", "created"),
                                    ("Proposal", "2026-03-01 00:00:00", "snapshot_diff")]
    assert events(con, "crm:2") == [("Proposal", "2026-02-01 00:00:00", "created")]  # no change: no event
    assert events(con, "crm:3") == [("Won", "2026-01-20 12:00:00", "created")]
    assert (r1.stage_events_derived, r2.stage_events_derived) == (3, 4)  # rebuilt per deal touched
    amounts = con.execute("select deal_key, changed_at::varchar, amount::double from raw.amount_history "
                          "order by deal_key, changed_at").fetchall()
    assert amounts == [("crm:1", "2026-02-01 00:00:00", 100.0), ("crm:1", "2026-03-01 00:00:00", 150.0),
                       ("crm:2", "2026-02-01 00:00:00", 200.0), ("crm:3", "2026-02-01 00:00:00", 300.0)]
    closes = con.execute("select changed_at::varchar, expected_close_date::varchar, origin "
                         "from raw.close_date_history where deal_key = 'crm:1' order by changed_at").fetchall()
    assert closes == [("2026-02-01 00:00:00", "2026-03-01", "snapshot_diff"),
                      ("2026-03-01 00:00:00", "2026-04-01", "snapshot_diff")]
    assert con.execute("select count(*) from raw.deals").fetchone()[0] == 3  # updated, not duplicated


def test_a_close_between_two_exports_is_dated_by_its_closed_at(tmp_path, con):
    load_files(con, [export_csv(tmp_path / "e1.csv", "2026-02-01 00:00:00", [deal(1, "Proposal")])])
    load_files(con, [export_csv(tmp_path / "e2.csv", "2026-03-01 00:00:00", [
        deal(1, "Lost", outcome="lost", closed_at="2026-02-15 09:00:00")])])
    assert events(con, "crm:1") == [("Proposal", "2026-02-01 00:00:00", "created"),
                                    ("Lost", "2026-02-15 09:00:00", "snapshot_diff")]


def test_a_deal_with_history_gets_no_snapshot_events_whichever_comes_first(tmp_path, con):
    history = tmp_path / "history.csv"
    history.write_text("source_system,native_id,pipeline,stage,entered_at,origin\n"
                       "crm,1,Sales,New,2026-01-05 10:00:00,history\n"
                       "crm,1,Sales,Proposal,2026-01-25 10:00:00,history\n", encoding="utf-8")
    load_files(con, [export_csv(tmp_path / "e1.csv", "2026-02-01 00:00:00", [deal(1, "Proposal"), deal(2, "New")])])
    assert events(con, "crm:1") == [("Proposal", "2026-02-01 00:00:00", "created")]
    load_files(con, [history])  # the history arrives later: the snapshot event gives way to it
    assert events(con, "crm:1") == [("New", "2026-01-05 10:00:00", "history"),
                                    ("Proposal", "2026-01-25 10:00:00", "history")]
    assert events(con, "crm:2") == [("New", "2026-01-05 10:00:00", "created")]  # untouched
    load_files(con, [export_csv(tmp_path / "e2.csv", "2026-03-01 00:00:00", [deal(1, "Won", outcome="won",
                                                                                  closed_at="2026-02-20 00:00:00")])])
    assert [e[2] for e in events(con, "crm:1")] == ["history", "history"]  # no snapshot_diff beside history

    # Events in the same parsed export as the deals (HubSpot's "date entered" columns) count too.
    deals = parse_frame("deals", pd.DataFrame([{
        "source_system": "crm", "native_id": "7", "pipeline": "Sales", "amount": "5", "currency": "USD",
        "created_at": "2026-01-10 00:00:00", "outcome": "open", "current_stage": "Proposal",
        "exported_at": "2026-02-01 00:00:00"}], dtype=str)).frames["deals"]
    own = parse_frame("stage_events", pd.DataFrame([{
        "source_system": "crm", "native_id": "7", "pipeline": "Sales", "stage": "Proposal",
        "entered_at": "2026-01-12 00:00:00", "origin": "history"}], dtype=str)).frames["stage_events"]
    load_parsed(con, "hub.csv", "sha-hub", ParsedExport("crm", "deals", 1, {"deals": deals, "stage_events": own}, []))
    assert events(con, "crm:7") == [("Proposal", "2026-01-12 00:00:00", "history")]


# Three exports of one CRM: stage moves (one backward), amount and close changes, a deal missing
# from the middle export, a deal new in the last, a deal the last marks deleted.
THREE_EXPORTS = {
    "feb.csv": ("2026-02-01 00:00:00", [deal(1, "New", 100, "2026-03-01"), deal(2, "New", 50), deal(3, "Proposal"),
                                      deal(5, "Lead", 10, pipeline="Other")]),
    "mar.csv": ("2026-03-01 00:00:00", [deal(1, "Proposal", 120, "2026-04-01"), deal(3, "New"),
                                      deal(5, "Lead", 10, pipeline="Other")]),
    "apr.csv": ("2026-04-01 00:00:00", [deal(1, "Won", 120, "2026-04-01", outcome="won", closed_at="2026-03-20 00:00:00"),
                                      deal(2, "Proposal", 70), deal(3, "New", extra=("true",)),
                                      deal(4, "New", created="2026-03-10 00:00:00")]),
}
STATE_QUERIES = {
    "deals": "select * exclude (attributes) from raw.deals",
    "stage_events": "select * from raw.stage_events",
    "amount_history": "select * from raw.amount_history",
    "close_date_history": "select * from raw.close_date_history",
    "deal_snapshots": "select * from raw.deal_snapshots",
    "deal_exports": "select * from raw.deal_exports",
}


def warehouse_state(con) -> dict:
    return {name: sorted(map(repr, con.execute(sql).fetchall())) for name, sql in STATE_QUERIES.items()}


def test_the_warehouse_ends_the_same_whatever_order_the_exports_arrive_in(tmp_path):
    files = {}
    for name, (exported_at, deals) in THREE_EXPORTS.items():
        files[name] = export_csv(tmp_path / name, exported_at, deals,
                                 extra_columns=("is_deleted",) if name == "apr.csv" else ())
    (tmp_path / "stages.csv").write_text(STAGES, encoding="utf-8")
    states = {}
    for order in itertools.permutations(sorted(files)):
        con = duckdb.connect()  # in memory: six warehouses
        load_files(con, [tmp_path / "stages.csv"])
        for name in order:
            [result] = load_files(con, [files[name]])
            assert result.status == "loaded" and result.rows_quarantined == 0, result
        states[order] = warehouse_state(con)
        if order == ("feb.csv", "mar.csv", "apr.csv"):
            # The facts the common end state must hold (an older export loaded last makes no
            # backward event: only the true move Proposal -> New of deal 3 is backward).
            assert events(con, "crm:1") == [("New", "2026-01-05 10:00:00", "created"),
                                            ("Proposal", "2026-03-01 00:00:00", "snapshot_diff"),
                                            ("Won", "2026-03-20 00:00:00", "snapshot_diff")]
            assert events(con, "crm:2") == [("New", "2026-01-05 10:00:00", "created"),
                                            ("Proposal", "2026-04-01 00:00:00", "snapshot_diff")]
            assert [e[0] for e in events(con, "crm:3")] == ["Proposal", "New"]
            assert events(con, "crm:4") == [("New", "2026-03-10 00:00:00", "created")]
            flags = dict((k, (d, m)) for k, d, m in con.execute(
                "select deal_key, is_deleted, missing_since_export from raw.deals").fetchall())
            assert flags == {"crm:1": (False, None), "crm:2": (False, None), "crm:3": (True, None),
                             "crm:4": (False, None), "crm:5": (False, None)}
            assert con.execute("select amount::double from raw.deals where deal_key = 'crm:2'").fetchone()[0] == 70
        con.close()
    first = states[("feb.csv", "mar.csv", "apr.csv")]
    for order, state in states.items():
        for table in STATE_QUERIES:
            assert state[table] == first[table], (order, table)


def test_a_deal_missing_from_a_newer_full_export_is_flagged_not_deleted(tmp_path, con):
    load_files(con, [export_csv(tmp_path / "e1.csv", "2026-02-01 00:00:00", [
        deal(1, "New"), deal(2, "Proposal"), deal(9, "Lead", pipeline="Other")])])
    [second] = load_files(con, [export_csv(tmp_path / "e2.csv", "2026-03-01 00:00:00", [deal(1, "Proposal")])])
    flags = dict(con.execute("select deal_key, missing_since_export from raw.deals").fetchall())
    # crm:2 is gone from a newer export of its pipeline; crm:9's pipeline was not in that export.
    assert flags == {"crm:1": None, "crm:2": "e2.csv", "crm:9": None}
    assert second.deals_missing == 1
    # An older export loaded late flags nothing that a newer one carries.
    [older] = load_files(con, [export_csv(tmp_path / "e0.csv", "2026-01-15 00:00:00", [deal(2, "New")])])
    assert older.deals_missing == 0
    assert con.execute("select missing_since_export from raw.deals where deal_key = 'crm:1'").fetchone() == (None,)
    # It comes back in a later export: no longer missing.
    load_files(con, [export_csv(tmp_path / "e3.csv", "2026-04-01 00:00:00", [deal(1, "Proposal"), deal(2, "Proposal")])])
    assert con.execute("select missing_since_export from raw.deals where deal_key = 'crm:2'").fetchone() == (None,)
    # In the file but quarantined (a bad date): seen, so not missing either.
    [bad] = load_files(con, [export_csv(tmp_path / "e4.csv", "2026-04-15 00:00:00", [
        deal(1, "Proposal"), deal(2, "Proposal", created="last week")])])
    assert (bad.rows_quarantined, bad.deals_missing) == (1, 0)
    assert con.execute("select count(*) from raw.deals where missing_since_export is not null").fetchone()[0] == 0

    # A partial export (a filtered view) flags nothing.
    partial = parse_frame("deals", pd.DataFrame([{
        "source_system": "crm", "native_id": "1", "pipeline": "Sales", "created_at": "2026-01-05 10:00:00",
        "outcome": "open", "current_stage": "Proposal", "exported_at": "2026-05-01 00:00:00"}], dtype=str))
    partial.partial = True
    result = load_parsed(con, "mine.csv", "sha-mine", partial)
    assert result.deals_missing == 0
    assert con.execute("select count(*) from raw.deals where missing_since_export is not null").fetchone()[0] == 0


def test_a_deal_marked_deleted_or_merged_is_flagged_and_kept_in_raw(tmp_path, con):
    load_files(con, [export_csv(tmp_path / "e1.csv", "2026-02-01 00:00:00", [deal(1, "New"), deal(2, "New"), deal(3, "New")])])
    [result] = load_files(con, [export_csv(tmp_path / "e2.csv", "2026-03-01 00:00:00", [
        deal(1, "New", extra=("", "")),
        deal(2, "New", extra=("true", "")),   # deleted in the CRM
        deal(3, "New", extra=("", "1")),      # merged into deal 1
    ], extra_columns=("is_deleted", "merged_into"))])
    rows = {k: (d, m, miss) for k, d, m, miss in con.execute(
        "select deal_key, is_deleted, merged_into, missing_since_export from raw.deals").fetchall()}
    assert rows == {"crm:1": (False, None, None), "crm:2": (True, None, None), "crm:3": (True, "crm:1", None)}
    assert result.deals_deleted == 2 and result.rows_loaded == 3
    # The CRM restores deal 2: a newer export without the mark clears the flag.
    load_files(con, [export_csv(tmp_path / "e3.csv", "2026-04-01 00:00:00", [deal(1, "New"), deal(2, "New")])])
    assert con.execute("select is_deleted from raw.deals where deal_key = 'crm:2'").fetchone() == (False,)


SF_HEADER = '"Id","IsDeleted","Name","StageName","Amount","CloseDate","IsClosed","IsWon","CurrencyIsoCode","CreatedDate","LastModifiedDate"\n'


def test_a_salesforce_row_rejected_as_deleted_marks_the_stored_deal_deleted(tmp_path):
    fixtures = Path(__file__).parent / "readers" / "fixtures" / "salesforce" / "org"
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    exports = {
        "day1": ['"006A","false","A","Prospecting","100","2024-12-31","false","false","USD","2024-06-01T08:00:00Z","2024-06-10T08:00:00Z"',
                 '"006B","false","B","Prospecting","200","2024-12-31","false","false","USD","2024-06-02T08:00:00Z","2024-06-10T08:00:00Z"'],
        "day2": ['"006A","true","A","Prospecting","100","2024-12-31","false","false","USD","2024-06-01T08:00:00Z","2024-06-20T08:00:00Z"',
                 '"006B","false","B","Prospecting","200","2024-12-31","false","false","USD","2024-06-02T08:00:00Z","2024-06-20T08:00:00Z"'],
    }
    results = []
    for day, rows in exports.items():  # the same file name every day, as an inbox overwritten daily
        folder = tmp_path / day
        folder.mkdir()
        shutil.copy(fixtures / "OpportunityStage.csv", folder)
        (folder / "Opportunity.csv").write_text(SF_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
        results += [r for r in load_files(con, [folder / "OpportunityStage.csv", folder / "Opportunity.csv"])
                    if r.file == "Opportunity.csv"]
    assert [(r.rows_loaded, r.rows_quarantined) for r in results] == [(2, 0), (1, 1)]
    assert results[1].deals_deleted == 1 and results[1].deals_missing == 0
    flags = dict(con.execute("select deal_key, is_deleted from raw.deals").fetchall())
    assert flags == {"salesforce:006A": True, "salesforce:006B": False}
    reason = con.execute("select reason from raw.quarantine").fetchone()[0]
    assert "deleted in Salesforce" in reason
    con.close()
