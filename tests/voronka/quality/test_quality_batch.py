"""The asset checks validate what is new (voronka/quality/batch.py): a run that loaded nothing runs
no GX, a new export checks the deals it touched and those that failed before, a failing blocking
suite keeps failing until the data is fixed, a new stage list checks everything again — and at
every step the verdicts and failure counts are the ones the suites give on the whole tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from voronka.ingest.loader import load_files
from voronka.quality import SUITES, batch, validate, validate_new

STAGES = """pipeline,stage,stage_order,kind,crm_probability
Sales,New,1,open,0.1
Sales,Won,2,won,1.0
Sales,Lost,3,lost,0.0
"""
HEADER = ("source_system,native_id,pipeline,title,owner,lead_source,segment,region,product,amount,currency,"
          "created_at,expected_close_date,closed_at,outcome,lost_reason,current_stage,exported_at\n")
EVENTS = "source_system,native_id,pipeline,stage,entered_at,origin\n"


def deal(n: int, stage="New", outcome="open", exported="2026-02-01 00:00:00") -> str:
    closed = "2026-01-20 12:00:00" if outcome != "open" else ""
    return f"crm,{n},Sales,Deal {n},Ann,web,SMB,EU,A,100,USD,2026-01-05 10:00:00,,{closed},{outcome},,{stage},{exported}\n"


def load(con, folder: Path, **files: str) -> None:
    folder.mkdir(parents=True)
    paths = []
    for name, text in files.items():
        paths.append(folder / f"{name}.csv")
        paths[-1].write_text(text, encoding="utf-8")
    assert all(r.status == "loaded" for r in load_files(con, paths))


def events_of(con, *deals: int) -> int:
    keys = [f"crm:{n}" for n in deals]
    return con.execute("select count(*) from raw.stage_events where list_contains(?, deal_key)", [keys]).fetchone()[0]


def check(con, table: str) -> tuple[bool, int]:
    """validate_new's verdict and rows checked, after asserting it is the whole table's verdict."""
    results = validate_new(con, table)
    whole = validate(con, tables=[table])
    assert [(r.suite, r.success, [(e.label, e.success, e.failed_rows) for e in r.expectations]) for r in results] \
        == [(r.suite, r.success, [(e.label, e.success, e.failed_rows) for e in r.expectations]) for r in whole]
    return all(r.success for r in results), results[0].rows_checked


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield connection
    connection.close()


def test_only_what_is_new_is_validated_and_a_failure_keeps_failing(tmp_path, con, monkeypatch):
    load(con, tmp_path / "day1", stages=STAGES, deals=HEADER + deal(1) + deal(2) + deal(3, "Won", "won"),
         events=EVENTS + "crm,1,Sales,New,2026-01-05 10:00:00,history\n")
    assert check(con, "deals") == (True, 3)
    assert check(con, "stage_events") == (True, events_of(con, 1, 2, 3))  # deals 2, 3: from the snapshot
    assert check(con, "pipeline_stages") == (True, 3)

    with monkeypatch.context() as no_gx:  # nothing new: no GX at all
        no_gx.setattr(batch, "validate_frames", lambda *a, **k: pytest.fail("GX ran on a no-op"))
        for table in ("deals", "stage_events", "pipeline_stages"):
            results = validate_new(con, table)
            assert all(r.success and r.rows_checked == 0 for r in results)
            assert len(results) == sum(s.table == table for s in SUITES)

    # The next day's export: deal 1 updated, deal 4 new.
    load(con, tmp_path / "day2", deals2=HEADER + deal(1, exported="2026-02-02 00:00:00")
         + deal(4, exported="2026-02-02 00:00:00"))
    assert check(con, "deals") == (True, 2)
    assert check(con, "stage_events") == (True, events_of(con, 1, 4))  # deal 1's against its new row

    # An open deal in a won stage passes the loader but fails the blocking deals_integrity suite;
    # a run that loads nothing gives the same failure again (without GX), and the next export's
    # batch takes the failing deal in with the deals it touched.
    load(con, tmp_path / "day3", deals3=HEADER + deal(5, "Won", "open", exported="2026-02-03 00:00:00"))
    assert check(con, "deals") == (False, 1)
    with monkeypatch.context() as no_gx:
        no_gx.setattr(batch, "validate_frames", lambda *a, **k: pytest.fail("GX ran on a no-op"))
        assert check(con, "deals") == (False, 0)
    load(con, tmp_path / "day3b", deals3b=HEADER + deal(6, exported="2026-02-03 00:00:00"))
    assert check(con, "deals") == (False, 2)
    # Fixed in a file of the same name: a row carries its file's name, so the rows that name holds
    # are new again.
    load(con, tmp_path / "day4", deals3=HEADER + deal(5, "Won", "won", exported="2026-02-04 00:00:00"))
    assert check(con, "deals") == (True, 1)

    # A new stage list: every row is checked again.
    load(con, tmp_path / "day5", stages=STAGES + "Sales,Hold,4,open,0.2\n")
    assert check(con, "deals") == (True, 6)
    assert check(con, "pipeline_stages") == (True, 4)
