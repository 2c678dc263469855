"""The Great Expectations suites on the raw tables: a clean warehouse and a dirty twin with one
planted defect per expectation; every expectation passes on the clean one and fails on the dirty
one naming the planted row; a failing blocking check stops the assets downstream."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd
import pytest

from orchestration.assets.ingest import RAW_KEYS
from orchestration.assets.quality import raw_quality_checks
from orchestration.resources import WorkspaceResource
from voronka.ingest.warehouse import ensure_raw_schema
from voronka.quality import SUITES, validate

T = datetime.fromisoformat
EXPORTED = T("2026-03-01 00:00:00")

STAGES = [  # pipeline, stage, stage_order, kind, crm_probability
    ("Sales", "New", 1, "open", 0.1),
    ("Sales", "Proposal", 2, "open", 0.5),
    ("Sales", "Won", 3, "won", 1.0),
    ("Sales", "Lost", 4, "lost", 0.0),
    ("Sales", "Issued", 5, "unknown", None),  # a closed stage of unknown outcome
]


def deal(key, stage="New", outcome="open", amount=100.0, currency="USD", created="2026-01-05 10:00:00",
         closed=None, exported=EXPORTED, **other):
    native = key.split(":")[1] if key else "x"
    row = {"deal_key": key, "source_system": "crm", "native_id": native, "pipeline": "Sales",
           "current_stage": stage, "outcome": outcome, "amount": amount, "currency": currency,
           "created_at": T(created) if created else None, "closed_at": T(closed) if closed else None,
           "exported_at": exported, "export_file": "deals.csv"}
    row.update(other)
    return row


def event(key, deal_key, stage="New", at="2026-01-05 10:00:00", origin="history", pipeline="Sales"):
    return {"event_key": key, "deal_key": deal_key, "pipeline": pipeline, "stage": stage,
            "entered_at": T(at) if at else None, "origin": origin, "export_file": "events.csv"}


CLEAN_DEALS = [
    deal("crm:1"),
    deal("crm:2", "Won", "won", 200, closed="2026-02-01 12:00:00"),
    deal("crm:3", "Lost", "lost", 0, closed="2026-02-02 12:00:00"),
    deal("crm:4", "Proposal", amount=None, currency=None),
    # What the loader keeps and flags instead of quarantining (issue 13): a close on an earlier
    # day than the creation, a close seconds before it on the same day, a closed deal of unknown
    # outcome (in an open stage, and in a stage of unknown kind), a filled-in creation date.
    deal("crm:5", "Lost", "lost", 0, created="2026-01-05 10:00:00", closed="2026-01-03 00:00:00",
         is_closed_before_created=True, is_close_date_only=True),
    deal("crm:6", "Won", "won", 10, created="2026-01-05 13:32:57", closed="2026-01-05 13:32:00"),
    deal("crm:7", "Proposal", "unknown", 10, closed="2026-02-03 00:00:00"),
    deal("crm:8", "Issued", "unknown", 10, closed="2026-02-03 00:00:00"),
    deal("crm:9", "New", created="2026-02-01 00:00:00", is_created_at_missing=True),
]
CLEAN_EVENTS = [
    event("e1", "crm:1"),
    event("e2", "crm:2"), event("e3", "crm:2", "Won", "2026-02-01 12:00:00"),
    event("e4", "crm:3"), event("e5", "crm:3", "Lost", "2026-02-02 12:00:00"),
    event("e6", "crm:4"), event("e7", "crm:4", "Proposal", "2026-02-10 00:00:00"),
]

# (suite, expectation label, the key the failure names, the planted row). One defect each.
DEFECTS = [
    # deals_integrity
    ("deals_integrity", "deal_key present", "99", ("deals", deal(None, native_id="99"))),
    ("deals_integrity", "deal_key unique", "crm:1", ("deals", deal("crm:1", amount=5))),  # crm:1 twice
    ("deals_integrity", "source_system present", "crm:10", ("deals", deal("crm:10", source_system=None))),
    ("deals_integrity", "native_id present", "crm:11", ("deals", deal("crm:11", native_id=None))),
    ("deals_integrity", "pipeline present", "crm:12", ("deals", deal("crm:12", pipeline=None))),
    ("deals_integrity", "current_stage present", "crm:13", ("deals", deal("crm:13", stage=None))),
    ("deals_integrity", "outcome present", "crm:14", ("deals", deal("crm:14", outcome=None))),
    ("deals_integrity", "created_at present", "crm:15", ("deals", deal("crm:15", created=None))),
    ("deals_integrity", "outcome valid", "crm:16", ("deals", deal("crm:16", outcome="maybe"))),
    ("deals_integrity", "current_stage is a stage of its pipeline", "crm:17",
     ("deals", deal("crm:17", stage="Negotiation"))),                   # no such stage in Sales
    ("deals_integrity", "outcome agrees with the kind of its stage", "crm:18",
     ("deals", deal("crm:18", "Won", "open"))),                         # open, yet in the won stage
    ("deals_integrity", "amount not negative", "crm:19", ("deals", deal("crm:19", amount=-5))),
    ("deals_integrity", "closed deal has closed_at", "crm:20", ("deals", deal("crm:20", "Won", "won"))),
    ("deals_integrity", "closed_at not before created_at", "crm:21",
     ("deals", deal("crm:21", "Lost", "lost", closed="2026-01-01 00:00:00"))),  # closed before created
    # deals_plausibility
    ("deals_plausibility", "exported_at present", "crm:30", ("deals", deal("crm:30", exported=None))),
    ("deals_plausibility", "created_at after 2000", "crm:31", ("deals", deal("crm:31", created="1970-01-01 00:00:00"))),
    ("deals_plausibility", "created_at not after exported_at", "crm:32",
     ("deals", deal("crm:32", created="2026-04-01 00:00:00"))),          # created after the export
    ("deals_plausibility", "closed_at not after exported_at", "crm:33",
     ("deals", deal("crm:33", "Won", "won", closed="2026-05-01 00:00:00"))),
    ("deals_plausibility", "open deal has no closed_at", "crm:34",
     ("deals", deal("crm:34", closed="2026-02-01 00:00:00"))),
    ("deals_plausibility", "amount has a currency", "crm:35", ("deals", deal("crm:35", currency=None))),
    ("deals_plausibility", "currency is a 3-letter code", "crm:36", ("deals", deal("crm:36", currency="US dollar"))),
    # stage_events_integrity
    ("stage_events_integrity", "event_key present", "crm:2", ("stage_events", event(None, "crm:2"))),
    ("stage_events_integrity", "event_key unique", "e1", ("stage_events", event("e1", "crm:1", "Proposal",
                                                                                "2026-02-01 00:00:00"))),
    ("stage_events_integrity", "deal_key present", "e40", ("stage_events", event("e40", None))),
    ("stage_events_integrity", "pipeline present", "e41", ("stage_events", event("e41", "crm:1", pipeline=None))),
    ("stage_events_integrity", "stage present", "e42", ("stage_events", event("e42", "crm:1", stage=None))),
    ("stage_events_integrity", "entered_at present", "e43", ("stage_events", event("e43", "crm:1", at=None))),
    ("stage_events_integrity", "origin present", "e44", ("stage_events", event("e44", "crm:1", origin=None))),
    ("stage_events_integrity", "origin valid", "e45", ("stage_events", event("e45", "crm:1", origin="guess"))),
    ("stage_events_integrity", "stage is a stage of its pipeline", "e46",
     ("stage_events", event("e46", "crm:1", stage="Negotiation"))),
    # stage_events_plausibility
    ("stage_events_plausibility", "the event's deal is in raw.deals", "e50", ("stage_events", event("e50", "crm:999"))),
    ("stage_events_plausibility", "entered_at not before the deal's created_at", "e51",
     ("stage_events", event("e51", "crm:1", "Proposal", "2025-12-01 00:00:00"))),
    ("stage_events_plausibility", "entered_at not after the deal's exported_at", "e52",
     ("stage_events", event("e52", "crm:1", "Proposal", "2026-06-01 00:00:00"))),
    # pipeline_stages_integrity
    ("pipeline_stages_integrity", "pipeline present", "Orphan", ("pipeline_stages", (None, "Orphan", 9, "open", None))),
    ("pipeline_stages_integrity", "stage present", "Renewals", ("pipeline_stages", ("Renewals", None, 1, "open", None))),
    ("pipeline_stages_integrity", "stage_order present", "Unordered",
     ("pipeline_stages", ("Sales", "Unordered", None, "open", None))),
    ("pipeline_stages_integrity", "kind present", "Kindless", ("pipeline_stages", ("Sales", "Kindless", 11, None, None))),
    ("pipeline_stages_integrity", "stage unique in its pipeline", "Proposal",
     ("pipeline_stages", ("Sales", "Proposal", 12, "open", 0.5))),      # Sales/Proposal twice
    ("pipeline_stages_integrity", "kind valid", "Maybe", ("pipeline_stages", ("Sales", "Maybe", 13, "pending", None))),
    ("pipeline_stages_integrity", "crm_probability within 0..1", "Sure",
     ("pipeline_stages", ("Sales", "Sure", 14, "open", 1.5))),          # a percentage, not a share
    # pipeline_stages_plausibility
    ("pipeline_stages_plausibility", "stage_order unique in its pipeline", "Demo",
     ("pipeline_stages", ("Sales", "Demo", 2, "open", 0.3))),           # shares 2 with Proposal
]


def write_tables(con, deals, events, stages) -> None:
    ensure_raw_schema(con)
    for table, rows in (("deals", deals), ("stage_events", events)):
        con.register("rows", pd.DataFrame(rows))
        con.execute(f"insert into raw.{table} by name select * from rows")
        con.unregister("rows")
    con.executemany("insert into raw.pipeline_stages values (?, ?, ?, ?, ?)", stages)


def tables(defects=()):
    extra = {"deals": [], "stage_events": [], "pipeline_stages": []}
    for _, _, _, (table, row) in defects:
        extra[table].append(row)
    return (CLEAN_DEALS + extra["deals"], CLEAN_EVENTS + extra["stage_events"], STAGES + extra["pipeline_stages"])


@pytest.fixture(scope="module")
def outcomes():
    found = {}
    for name, defects in (("clean", ()), ("dirty", DEFECTS)):
        con = duckdb.connect()
        write_tables(con, *tables(defects))
        found[name] = {(r.suite, e.label): (e, r) for r in validate(con) for e in r.expectations}
        con.close()
    return found


def test_every_expectation_has_a_planted_defect():
    labels = {(s.name, label) for s in SUITES for label, _ in s.expectations()}
    assert labels == {(suite, label) for suite, label, _, _ in DEFECTS}


@pytest.mark.parametrize("suite,label,key", [d[:3] for d in DEFECTS], ids=[f"{d[0]}:{d[1]}" for d in DEFECTS])
def test_each_expectation_passes_on_clean_data_and_names_the_planted_row_on_dirty(outcomes, suite, label, key):
    clean, _ = outcomes["clean"][(suite, label)]
    dirty, _ = outcomes["dirty"][(suite, label)]
    assert clean.success and clean.failed_rows == 0
    assert not dirty.success and dirty.failed_rows >= 1
    named = [str(v) for row in dirty.examples for v in row.values()]
    assert key in named, dirty.examples


def test_the_suites_results_add_up(outcomes):
    suites = {r.suite: r for _, r in outcomes["dirty"].values()}
    assert not any(r.success for r in suites.values())
    deals = suites["deals_integrity"]
    assert deals.rows_checked == len(CLEAN_DEALS) + sum(1 for d in DEFECTS if d[3][0] == "deals")
    assert deals.failed_rows == sum(e.failed_rows for e in deals.failed) >= len(deals.failed)
    assert all(r.success for _, r in outcomes["clean"].values())


def test_deleted_deals_are_not_checked(tmp_path):
    # A deal the CRM deleted is out of the marts, so its defects do not block them.
    con = duckdb.connect()
    write_tables(con, CLEAN_DEALS + [deal("crm:99", amount=-1, is_deleted=True)], CLEAN_EVENTS, STAGES)
    [integrity] = [r for r in validate(con, tables=["deals"]) if r.suite == "deals_integrity"]
    assert integrity.success and integrity.rows_checked == len(CLEAN_DEALS)


def materialize_on(home, deals, events, stages):
    @dg.multi_asset(specs=[dg.AssetSpec(RAW_KEYS[t]) for t in ("deals", "stage_events", "pipeline_stages")])
    def raw_stand_in(workspace: WorkspaceResource):
        with workspace.connect() as con:
            write_tables(con, deals, events, stages)
        for t in ("deals", "stage_events", "pipeline_stages"):
            yield dg.MaterializeResult(asset_key=RAW_KEYS[t])

    @dg.asset(deps=[RAW_KEYS["deals"], RAW_KEYS["stage_events"]])
    def funnel_mart() -> None:
        return None

    return dg.materialize([raw_stand_in, funnel_mart, *raw_quality_checks],
                          resources={"workspace": WorkspaceResource(home=str(home))}, raise_on_error=False)


def test_a_failing_blocking_check_stops_the_assets_downstream_and_a_warning_does_not(tmp_path):
    warn_only = [d for d in DEFECTS if d[0] == "deals_plausibility"]
    blocking = [d for d in DEFECTS if d[1] == "amount not negative"]
    runs = {name: materialize_on(tmp_path / name, *tables(defects))
            for name, defects in (("warn", warn_only), ("block", blocking))}

    def checks(result):
        return {e.check_name: e for e in result.get_asset_check_evaluations()}

    warn = checks(runs["warn"])
    assert runs["warn"].success and runs["warn"].asset_materializations_for_node("funnel_mart")
    assert not warn["deals_plausibility"].passed
    assert warn["deals_plausibility"].severity == dg.AssetCheckSeverity.WARN
    assert warn["deals_integrity"].passed

    block = checks(runs["block"])
    assert not runs["block"].success
    assert not runs["block"].asset_materializations_for_node("funnel_mart")  # did not run
    failed = block["deals_integrity"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    meta = failed.metadata
    assert meta["failed_rows"].value == 1
    assert meta["examples"].value["amount not negative"] == [{"amount": -5.0, "deal_key": "crm:19", "native_id": "19"}]
