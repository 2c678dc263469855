"""The dbt project on a small hand-made warehouse; every expected number is worked out by hand here.

The data (as of 2026-03-15 12:00, reporting USD; EUR quoted in USD):

    EUR/USD   2026-01-01 1.10 · 2026-02-01 1.20 · 2026-03-10 1.25 · 2026-03-20 1.50 (after as_of: unseen)

    pipeline sales: lead(1, p=.1) → meeting(2, .3) → proposal(3, .6) → won(4) | lost(5)
    s1  USD 1000  lead 01-05, meeting 01-10, proposal 01-20, won 02-01 10:00              won
    s2  EUR 2000  lead 01-08, proposal 01-15 (skips meeting), won 02-15                  won (→ 2400 at 1.20)
    s3  USD  500  lead 01-12, meeting 01-20, lead 01-25 (back), lost 02-10                lost at lead
    s4  USD  800  lead 01-15, lost 01-20, meeting 02-01 (reopened), proposal 03-01         open (lost earlier)
    s5  USD 3000  lead 02-01, meeting 02-20, won 03-20 (after as_of)                      open as of as_of
    s6  USD  700  created 03-16 (after as_of)                                             does not exist yet
    s7  EUR 1000  lead 03-01, meeting 03-02, meeting 03-02 12:00 (same stay, re-exported)  open (→ 1250 at 1.25)
    s8  USD  100  created 03-05, no stage events, current_stage lead                     open (reached lead)
    s9  USD   50  created 02-01, lead 02-01, deleted in the CRM (is_deleted)              in no mart

    pipeline renewals: review(1, .5) → negotiation(2, .8) → renewed(3) | churned(4)
    r1  USD 4000  review 2025-12-01, negotiation 12-15, renewed 2026-01-10                 won
    r2  USD  600  review 2025-12-10, churned 2026-03-01                                    lost at review
    r3  USD  900  review 02-01, negotiation 02-10                                          open
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from dbt_helpers import DbtRun, invoke_dbt

from voronka.ingest.warehouse import ensure_raw_schema

pytestmark = pytest.mark.slow  # dbt builds

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-03-15 12:00:00"

STAGES = [
    ("sales", "lead", 1, "open", 0.1), ("sales", "meeting", 2, "open", 0.3),
    ("sales", "proposal", 3, "open", 0.6), ("sales", "won", 4, "won", 1.0),
    ("sales", "lost", 5, "lost", 0.0),
    ("renewals", "review", 1, "open", 0.5), ("renewals", "negotiation", 2, "open", 0.8),
    ("renewals", "renewed", 3, "won", 1.0), ("renewals", "churned", 4, "lost", 0.0),
]

# native_id, pipeline, amount, currency, created_at, expected_close, closed_at, outcome, current_stage
DEALS = [
    ("s1", "sales", 1000, "USD", "2026-01-05 09:00:00", "2026-02-01", "2026-02-01 10:00:00", "won", "won"),
    ("s2", "sales", 2000, "EUR", "2026-01-08 09:00:00", "2026-02-28", "2026-02-15 00:00:00", "won", "won"),
    ("s3", "sales", 500, "USD", "2026-01-12 00:00:00", "2026-03-01", "2026-02-10 00:00:00", "lost", "lost"),
    ("s4", "sales", 800, "USD", "2026-01-15 00:00:00", "2026-03-31", None, "open", "proposal"),
    ("s5", "sales", 3000, "USD", "2026-02-01 00:00:00", "2026-03-20", "2026-03-20 00:00:00", "won", "won"),
    ("s6", "sales", 700, "USD", "2026-03-16 00:00:00", "2026-05-01", None, "open", "lead"),
    ("s7", "sales", 1000, "EUR", "2026-03-01 00:00:00", "2026-04-30", None, "open", "meeting"),
    ("s8", "sales", 100, "USD", "2026-03-05 00:00:00", None, None, "open", "lead"),
    ("r1", "renewals", 4000, "USD", "2025-12-01 00:00:00", "2026-01-15", "2026-01-10 00:00:00", "won", "renewed"),
    ("r2", "renewals", 600, "USD", "2025-12-10 00:00:00", "2026-02-28", "2026-03-01 00:00:00", "lost", "churned"),
    ("r3", "renewals", 900, "USD", "2026-02-01 00:00:00", "2026-06-30", None, "open", "negotiation"),
]

# native_id, stage, entered_at (the pipeline is the deal's)
EVENTS = [
    ("s1", "lead", "2026-01-05 09:00:00"), ("s1", "meeting", "2026-01-10 00:00:00"),
    ("s1", "proposal", "2026-01-20 00:00:00"), ("s1", "won", "2026-02-01 10:00:00"),
    ("s2", "lead", "2026-01-08 09:00:00"), ("s2", "proposal", "2026-01-15 00:00:00"),
    ("s2", "won", "2026-02-15 00:00:00"),
    ("s3", "lead", "2026-01-12 00:00:00"), ("s3", "meeting", "2026-01-20 00:00:00"),
    ("s3", "lead", "2026-01-25 00:00:00"), ("s3", "lost", "2026-02-10 00:00:00"),
    ("s4", "lead", "2026-01-15 00:00:00"), ("s4", "lost", "2026-01-20 00:00:00"),
    ("s4", "meeting", "2026-02-01 00:00:00"), ("s4", "proposal", "2026-03-01 00:00:00"),
    ("s5", "lead", "2026-02-01 00:00:00"), ("s5", "meeting", "2026-02-20 00:00:00"),
    ("s5", "won", "2026-03-20 00:00:00"),
    ("s6", "lead", "2026-03-16 00:00:00"),
    ("s7", "lead", "2026-03-01 00:00:00"), ("s7", "meeting", "2026-03-02 00:00:00"),
    ("s7", "meeting", "2026-03-02 12:00:00"),
    ("r1", "review", "2025-12-01 00:00:00"), ("r1", "negotiation", "2025-12-15 00:00:00"),
    ("r1", "renewed", "2026-01-10 00:00:00"),
    ("r2", "review", "2025-12-10 00:00:00"), ("r2", "churned", "2026-03-01 00:00:00"),
    ("r3", "review", "2026-02-01 00:00:00"), ("r3", "negotiation", "2026-02-10 00:00:00"),
]

FX = [("2026-01-01", 1.10), ("2026-02-01", 1.20), ("2026-03-10", 1.25), ("2026-03-20", 1.50)]

# period, scope_pipeline, scope_owner, target_amount, currency
TARGETS = [
    ("2026-Q1", None, None, 10000, "USD"),      # explicit company-wide target: 'all' = 10000
    ("2026-Q1", "sales", None, 6000, "USD"),
    ("2026-Q1", "renewals", None, 5000, "USD"),
    ("2026-Q1", None, "ann", 999, "USD"),       # owner-scoped: ignored for now
    ("2026-Q2", "sales", None, 4000, "EUR"),    # starts after as_of: as_of's rate 1.25 → 5000
    ("2026-Q2", "renewals", None, 1000, "USD"),  # no explicit 'all': 5000 + 1000
    ("2026-02", "sales", None, 2000, "EUR"),    # 02-01 rate 1.20 → 2400
    ("2025-12", "sales", None, 100, "EUR"),     # before the first rate: first rate 1.10 → 110
]


# The loader's flags on raw.deals (contract of issue 13; voronka.ingest.canonical.DEAL_FLAGS):
# never null. Added here for warehouses whose schema does not carry them yet.
DEAL_FLAG_COLUMNS = ("is_close_date_only", "is_closed_before_created", "is_created_at_missing")


def with_deal_flags(con: duckdb.DuckDBPyConnection) -> None:
    """raw.deals with the three flags, false where not set."""
    for column in DEAL_FLAG_COLUMNS:
        con.execute(f"alter table raw.deals add column if not exists {column} boolean")
        con.execute(f"update raw.deals set {column} = false where {column} is null")


def load_raw(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        ensure_raw_schema(con)
        con.executemany("insert into raw.pipeline_stages values (?, ?, ?, ?, ?)", STAGES)
        pipeline_of = {}
        for nid, pipeline, amount, currency, created, expected, closed, outcome, stage in DEALS:
            pipeline_of[nid] = pipeline
            con.execute(
                "insert into raw.deals (deal_key, source_system, native_id, pipeline, title, owner, "
                "lead_source, segment, region, product, amount, currency, created_at, "
                "expected_close_date, closed_at, outcome, lost_reason, current_stage, attributes, "
                "export_file, exported_at) values (?, 'crm', ?, ?, ?, 'ann', 'web', 'smb', 'eu', "
                "'core', ?, ?, ?, ?, ?, ?, ?, ?, '{}', 'deals.csv', '2026-03-25 00:00:00')",
                [f"crm:{nid}", nid, pipeline, f"Deal {nid}", amount, currency, created, expected,
                 closed, outcome, "price" if outcome == "lost" else None, stage])
        con.executemany(
            "insert into raw.stage_events values (?, ?, ?, ?, ?, 'history', 'events.csv')",
            [(f"e{i:03d}", f"crm:{nid}", pipeline_of[nid], stage, at)
             for i, (nid, stage, at) in enumerate(EVENTS)])
        con.executemany("insert into raw.fx_rates values (?, 'EUR', 'USD', ?)", FX)
        con.executemany("insert into raw.targets values (?, ?, ?, null, ?, ?)", TARGETS)
        con.execute("insert into raw.marketing_spend values ('2026-01', 'web', 500, 'USD')")
        # s9: a deal the CRM deleted (the loader flags it): in raw, in no mart and not for the models
        con.execute(
            "insert into raw.deals (deal_key, source_system, native_id, pipeline, amount, currency, created_at, "
            "outcome, current_stage, exported_at, is_deleted) values ('crm:s9', 'crm', 's9', 'sales', 50, 'USD', "
            "'2026-02-01 00:00:00', 'open', 'lead', '2026-03-25 00:00:00', true)")
        con.execute("insert into raw.stage_events values ('e999', 'crm:s9', 'sales', 'lead', '2026-02-01 00:00:00', "
                    "'history', 'events.csv')")
        with_deal_flags(con)
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, DbtRun]:
    """usd: `dbt build` (models, data tests, unit tests) as of AS_OF, reporting in USD.
    eur: the same raw tables reporting in EUR and without an as_of var (so as of the newest raw
         timestamp, exported_at 2026-03-25): the models the FX marts need.
    """
    root = tmp_path_factory.mktemp("dbt")
    load_raw(root / "usd.duckdb")
    shutil.copy(root / "usd.duckdb", root / "eur.duckdb")
    shutil.copy(root / "usd.duckdb", root / "then.duckdb")
    return {
        "usd": invoke_dbt(["build"], root / "usd.duckdb", root / "usd",
                          as_of=AS_OF, reporting_currency="USD"),
        "eur": invoke_dbt(["run", "--select", "+mart_bookings", "+mart_targets", "+mart_pipeline_snapshot"],
                          root / "eur.duckdb", root / "eur", reporting_currency="eur"),
        # time travel: the pipeline as of 2026-01-16 and the changes since 2026-01-25 (ends of days)
        "then": invoke_dbt(["run", "--select", "+mart_pipeline_as_of", "+mart_pipeline_waterfall"],
                           root / "then.duckdb", root / "then", as_of=AS_OF, reporting_currency="USD",
                           pipeline_date="2026-01-16", from_date="2026-01-25"),
    }


def connect(run: DbtRun) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(run.warehouse), read_only=True)


@pytest.fixture
def usd(built):
    con = connect(built["usd"])
    yield con
    con.close()


def rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_dbt_build_passes_models_data_tests_and_unit_tests(built):
    for name, run in built.items():
        assert run.success, f"{name}: {run.exception} {[k for k, v in run.statuses.items() if v not in ('success', 'pass')]}"
    statuses = built["usd"].statuses
    assert set(statuses.values()) == {"success", "pass"}
    manifest = json.loads((built["usd"].target / "manifest.json").read_text())
    unit_tests = {uid for uid in statuses if uid.startswith("unit_test.")}
    assert unit_tests == set(manifest["unit_tests"])  # every unit test ran and passed
    assert len([uid for uid in statuses if uid.startswith("test.")]) >= 50  # data tests too
    marts = ["fct_stage_transitions", "mart_funnel_conversion", "mart_pipeline_snapshot",
             "mart_bookings", "mart_targets", "fct_deals", "mart_funnel_breakdowns", "mart_time_in_stage",
             "mart_sales_cycles", "mart_sales_velocity", "mart_win_rates", "mart_stage_losses",
             "mart_cac_payback", "mart_pipeline_as_of", "mart_pipeline_daily", "fct_pipeline_changes",
             "mart_pipeline_waterfall", "mart_stalled_deals", "mart_stage_conversion_periods",
             "mart_owner_attainment", "mart_owner_performance"]
    assert all(statuses[f"model.voronka.{m}"] == "success" for m in marts)


def test_stage_transitions(usd):
    stays = {(d, n): r for d, n, *r in rows(usd, """
        select deal_key, stay_number, stage, exited_at, next_stage, is_backward, days_in_stage, is_open
        from main.fct_stage_transitions""")}
    # s6 was created after as_of; s7's repeated meeting event is one stay; s5's win is after as_of.
    assert len(stays) == len(EVENTS) - 1 - 1 - 1
    assert not any(d == "crm:s6" for d, _ in stays)
    assert stays[("crm:s3", 2)] == ["meeting", datetime(2026, 1, 25), "lead", True, 5.0, False]
    assert stays[("crm:s3", 3)] == ["lead", datetime(2026, 2, 10), "lost", False, 16.0, False]
    assert stays[("crm:s3", 4)] == ["lost", None, None, False, None, False]
    assert stays[("crm:s4", 2)] == ["lost", datetime(2026, 2, 1), "meeting", True, None, False]
    # Open stays are censored at as_of: 03-01 → 03-15 12:00 = 14.5 days; 02-20 → 03-15 12:00 = 23.5.
    assert stays[("crm:s4", 4)] == ["proposal", None, None, False, 14.5, True]
    assert stays[("crm:s5", 2)] == ["meeting", None, None, False, 23.5, True]
    assert stays[("crm:s7", 2)] == ["meeting", None, None, False, 13.5, True]
    assert stays[("crm:s1", 1)][4] == pytest.approx((datetime(2026, 1, 10) - datetime(2026, 1, 5, 9)).total_seconds() / 86400)
    assert sum(r[5] for r in stays.values()) == 4  # s4 proposal, s5 meeting, s7 meeting, r3 negotiation
    assert sum(r[3] for r in stays.values()) == 2  # s3 meeting→lead, s4 lost→meeting


def test_funnel_conversion(usd):
    got = {(p, s): r for p, s, *r in rows(usd, """
        select pipeline, stage, stage_order, reached, step_conversion, cumulative_conversion, lost_here
        from main.mart_funnel_conversion""")}
    # sales: created by as_of = s1 s2 s3 s4 s5 s7 s8 = 7 (s8 has no stage events: it reached the
    # stage its export names, lead: every deal reached at least the first stage).
    # lead: all 7; meeting: s1 s2 (skipped) s3 s4 s5 s7 = 6 (s3 moved back: still 1);
    # proposal: s1 s2 s4 = 3; won by as_of: s1 s2 = 2 (s5 wins after as_of). Lost: s3 at lead
    # (its last open stay before the loss); s4 was lost but is open again, so not lost as of as_of.
    # renewals: created 3; review 3, negotiation r1 r3 = 2, renewed r1 = 1; r2 lost at review.
    expected = {
        ("sales", "lead"): [1, 7, None, 1.0, 1],
        ("sales", "meeting"): [2, 6, 6 / 7, 6 / 7, 0],
        ("sales", "proposal"): [3, 3, 0.5, 3 / 7, 0],
        ("sales", "won"): [4, 2, 2 / 3, 2 / 7, 0],
        ("renewals", "review"): [1, 3, None, 1.0, 1],
        ("renewals", "negotiation"): [2, 2, 2 / 3, 2 / 3, 0],
        ("renewals", "renewed"): [3, 1, 0.5, 1 / 3, 0],
    }
    assert set(got) == set(expected)  # no lost stage rows
    for key, want in expected.items():
        assert got[key] == pytest.approx(want), key


def test_pipeline_snapshot(usd):
    got = {r[0]: r[1:] for r in rows(usd, """
        select deal_key, pipeline, stage, stage_order, crm_probability, entered_stage_at, days_in_stage,
               amount, currency, amount_reporting, reporting_currency, as_of
        from main.mart_pipeline_snapshot""")}
    as_of = datetime(2026, 3, 15, 12)
    assert got == {
        "crm:s4": ("sales", "proposal", 3, 0.6, datetime(2026, 3, 1), 14.5, 800, "USD", 800.0, "USD", as_of),
        # s5's export already says won (03-20); as of 03-15 it sits in meeting.
        "crm:s5": ("sales", "meeting", 2, 0.3, datetime(2026, 2, 20), 23.5, 3000, "USD", 3000.0, "USD", as_of),
        # EUR at the as_of date's rate (03-10: 1.25), not the later 1.50.
        "crm:s7": ("sales", "meeting", 2, 0.3, datetime(2026, 3, 2), 13.5, 1000, "EUR", 1250.0, "USD", as_of),
        # No stage events: the export's current stage, no stage entry time.
        "crm:s8": ("sales", "lead", 1, 0.1, None, None, 100, "USD", 100.0, "USD", as_of),
        "crm:r3": ("renewals", "negotiation", 2, 0.8, datetime(2026, 2, 10), 33.5, 900, "USD", 900.0, "USD", as_of),
    }


def test_bookings(usd):
    got = {(g, p, pl): (n, a) for g, p, pl, n, a in rows(usd, """
        select period_grain, period, pipeline, won_deals, won_amount_reporting from main.mart_bookings""")}
    # r1 4000 (01-10, renewals); s1 1000 (02-01) + s2 2000 EUR × 1.20 = 2400 (02-15, sales);
    # s5 closes after as_of. Periods run from the first win (2026-01) to as_of's (2026-03).
    expected = {
        ("month", "2026-01", "sales"): (0, 0), ("month", "2026-01", "renewals"): (1, 4000),
        ("month", "2026-01", "all"): (1, 4000),
        ("month", "2026-02", "sales"): (2, 3400), ("month", "2026-02", "renewals"): (0, 0),
        ("month", "2026-02", "all"): (2, 3400),
        ("month", "2026-03", "sales"): (0, 0), ("month", "2026-03", "renewals"): (0, 0),
        ("month", "2026-03", "all"): (0, 0),
        ("quarter", "2026-Q1", "sales"): (2, 3400), ("quarter", "2026-Q1", "renewals"): (1, 4000),
        ("quarter", "2026-Q1", "all"): (3, 7400),
    }
    assert set(got) == set(expected)
    for key, want in expected.items():
        assert got[key] == pytest.approx(want), key


def test_targets(usd):
    got = {(p, pl): (g, a) for g, p, pl, a in rows(usd, """
        select period_grain, period, pipeline, target_amount_reporting from main.mart_targets""")}
    expected = {
        ("2025-12", "sales"): ("month", 110), ("2025-12", "all"): ("month", 110),
        ("2026-02", "sales"): ("month", 2400), ("2026-02", "all"): ("month", 2400),
        ("2026-Q1", "sales"): ("quarter", 6000), ("2026-Q1", "renewals"): ("quarter", 5000),
        ("2026-Q1", "all"): ("quarter", 10000),
        ("2026-Q2", "sales"): ("quarter", 5000), ("2026-Q2", "renewals"): ("quarter", 1000),
        ("2026-Q2", "all"): ("quarter", 6000),
    }
    assert set(got) == set(expected)
    for key, (grain, amount) in expected.items():
        assert got[key][0] == grain
        assert got[key][1] == pytest.approx(amount), key


def test_scoped_targets_for_the_forecast(usd):
    """ann's Q1 target (owner-scoped) with what she booked: s1 1000, s2 EUR 2000 at its close
    date's 1.20 = 2400 and r1 4000 (every deal is ann's), as mart_bookings converts them."""
    from orchestration.assets.forecast import _scoped

    targets, booked = _scoped(usd, datetime(2026, 3, 15, 12))
    assert targets[["period", "pipeline", "owner"]].values.tolist() == [["2026-Q1", "all", "ann"]]
    assert targets["segment"].isna().all() and targets["target_amount_reporting"].tolist() == [999.0]
    assert booked["won_amount_reporting"].tolist() == [pytest.approx(7400.0)]
    assert rows(usd, "select won_deals from main.mart_scoped_targets") == [(3,)]


def test_the_models_read_the_ml_marts_not_raw(usd):
    """canonical_frames: every deal but the deleted s9 (s6, created after as_of, too: the models
    cut at their own dates), amounts at the as_of date's rate from dbt (s2: EUR 2000 x 1.25, not
    its close date's 1.20), s9's events left out, the stages with ml/'s column names."""
    from voronka.warehouse_reads import StaleMartsError, canonical_frames

    frames = canonical_frames(usd, datetime(2026, 3, 15, 12))
    deals = frames["deals"].set_index("deal_key")
    assert sorted(deals.index) == sorted(f"crm:{d[0]}" for d in DEALS)
    assert deals.loc["crm:s2", "amount_reporting"] == pytest.approx(2500.0)
    assert deals.loc["crm:s7", "amount_reporting"] == pytest.approx(1250.0)
    assert deals.loc["crm:s1", "amount_reporting"] == pytest.approx(1000.0)
    assert not deals[["is_close_date_only", "is_closed_before_created", "is_created_at_missing"]].any().any()
    events = frames["stage_events"]
    assert len(events) == len(EVENTS) and "crm:s9" not in set(events["deal_key"])
    assert list(frames["pipeline_stages"].columns) == ["pipeline", "stage", "stage_order", "kind", "crm_probability"]
    assert len(frames["pipeline_stages"]) == len(STAGES)
    with pytest.raises(StaleMartsError, match="built as of 2026-03-15"):
        canonical_frames(usd, datetime(2026, 1, 1))


def test_reporting_currency_is_a_var_and_as_of_defaults_to_the_newest_raw_time(built):
    """The same raw tables reported in EUR, no as_of var: as of exported_at (2026-03-25 00:00),
    so s5 (won 03-20) is booked and the 03-20 rate (1.50) is seen. USD divides by EUR/USD."""
    con = connect(built["eur"])
    try:
        snapshot = rows(con, "select deal_key, amount_reporting, reporting_currency, as_of "
                             "from main.mart_pipeline_snapshot order by deal_key")
        q1 = rows(con, "select won_deals, won_amount_reporting from main.mart_bookings "
                       "where period = '2026-Q1' and pipeline = 'all'")
        q2 = rows(con, "select target_amount_reporting from main.mart_targets "
                       "where period = '2026-Q2' and pipeline = 'all'")
    finally:
        con.close()
    as_of = datetime(2026, 3, 25)
    assert snapshot == [("crm:r3", pytest.approx(900 / 1.50), "EUR", as_of),
                        ("crm:s4", pytest.approx(800 / 1.50), "EUR", as_of),
                        ("crm:s6", pytest.approx(700 / 1.50), "EUR", as_of),
                        ("crm:s7", pytest.approx(1000.0), "EUR", as_of),
                        ("crm:s8", pytest.approx(100 / 1.50), "EUR", as_of)]
    # r1 4000 USD on 01-10 (1.10), s1 1000 USD on 02-01 (1.20), s2 2000 EUR, s5 3000 USD on 03-20 (1.50).
    assert q1[0][0] == 4
    assert q1[0][1] == pytest.approx(4000 / 1.10 + 1000 / 1.20 + 2000 + 3000 / 1.50)
    # Q2 starts after as_of: 4000 EUR + 1000 USD at the as_of date's rate (1.50).
    assert q2[0][0] == pytest.approx(4000 + 1000 / 1.50)


def test_a_malformed_as_of_is_one_clear_error(tmp_path):
    load_raw(tmp_path / "w.duckdb")
    run = invoke_dbt(["parse"], tmp_path / "w.duckdb", tmp_path, as_of="15.03.2026")
    assert not run.success
    assert "var as_of must be 'YYYY-MM-DD HH:MM:SS' (UTC), got '15.03.2026'" in str(run.exception)


# ---------------------------------------------------------------- the funnel marts (hand-computed)

def test_funnel_breakdown_all_is_the_funnel_with_time_in_stage(usd):
    classic = rows(usd, "select pipeline, stage, reached, step_conversion, cumulative_conversion, lost_here "
                        "from main.mart_funnel_conversion order by 1, 2")
    broken = rows(usd, "select pipeline, stage, reached, step_conversion, cumulative_conversion, lost_here "
                       "from main.mart_funnel_breakdowns where breakdown = 'all' order by 1, 2")
    assert broken == classic
    # every deal has owner 'ann': that breakdown is the same funnel again
    assert rows(usd, "select pipeline, stage, reached from main.mart_funnel_breakdowns "
                     "where breakdown = 'owner' and breakdown_value = 'ann' order by 1, 2") == [r[:3] for r in classic]
    # sales cohorts: January s1 s2 s3 s4 (1 of 4 open), February s5 (open), March s7 s8 (open)
    cohorts = {v: (c, o, i) for v, c, o, i in rows(usd, """
        select breakdown_value, created_deals, open_deals, is_immature from main.mart_funnel_breakdowns
        where breakdown = 'created_month' and pipeline = 'sales' and stage = 'lead'""")}
    assert cohorts == {"2026-01": (4, 1, False), "2026-02": (1, 1, True), "2026-03": (2, 2, True)}


def test_time_in_stage_kaplan_meier(usd):
    got = {(p, s): r for p, s, *r in rows(usd, """
        select pipeline, stage, stays, censored_stays, median_days_in_stage, p90_days_in_stage,
               mean_days_in_stage_closed
        from main.mart_time_in_stage where breakdown = 'all'""")}
    # sales lead: seven finished stays 1, 4.625, 5, 6.625, 8, 16, 19 days: S = 3/7 after the
    # fourth, so the median is 6.625; 0 after the last (p90 19); mean 60.25 / 7.
    assert got[("sales", "lead")] == [7, 0, 6.625, 19.0, pytest.approx(60.25 / 7)]
    # sales meeting: 5 (s3), 10 (s1), 13.5 (s7, open), 23.5 (s5, open), 28 (s4): S(5) = 0.8,
    # S(10) = 0.6, S(28) = 0 (one of one): median and p90 28; the finished stays' mean is 14.33,
    # half the Kaplan–Meier median: the open stays are the long ones.
    assert got[("sales", "meeting")] == [5, 2, 28.0, 28.0, pytest.approx(43 / 3)]
    # sales proposal: 12 d 10 h (s1), 14.5 (s4 open), 31 (s2)
    assert got[("sales", "proposal")] == [3, 1, 31.0, 31.0, pytest.approx((12 + 10 / 24 + 31) / 2)]
    # renewals review 9, 14, 81 (r2, closed without leaving review: ended by the churn)
    assert got[("renewals", "review")] == [3, 0, 14.0, 81.0, pytest.approx(104 / 3)]
    # renewals negotiation: 26 (r1), 33.5 (r3, open): S(26) = 1/2, no p90
    assert got[("renewals", "negotiation")] == [2, 1, 26.0, None, 26.0]


def test_sales_cycle_speed_to_lead_and_velocity(usd):
    cycles = {p: r for p, *r in rows(usd, """
        select pipeline, median_sales_cycle_days, p90_sales_cycle_days, leads_never_worked,
               share_never_worked, median_speed_to_lead_days, p90_speed_to_lead_days
        from main.mart_sales_cycles where breakdown = 'all'""")}
    # sales: won 27.04 (s1), 37.625 (s2); open 10.5 (s8), 14.5 (s7), 42.5 (s5), 59.5 (s4) censored.
    # S(27.04) = 3/4, S(37.625) = 3/4 x 2/3 = 0.5 exactly: the median is 37.625. Speed to lead
    # 1, 4.625, 6.625, 8, 17, 19 (all worked): median 6.625, p90 19.
    assert cycles["sales"] == [37.625, None, 0, 0.0, 6.625, 19.0]
    # renewals: r2 churned without leaving review (never worked, censored at 81 days).
    assert cycles["renewals"] == [40.0, None, 1, pytest.approx(1 / 3), 14.0, None]
    velocity = {p: r for p, *r in rows(usd, """
        select pipeline, open_deals, win_rate, avg_won_amount_reporting, sales_cycle_days,
               velocity_per_day_reporting
        from main.mart_sales_velocity where breakdown = 'all'""")}
    # sales: 4 open x 2/3 (s1, s2 won; s3 lost) x 1700 (1000 and EUR 2000 at 1.20) / 37.625 days
    assert velocity["sales"] == [4, pytest.approx(2 / 3), pytest.approx(1700), 37.625,
                                 pytest.approx(4 * 2 / 3 * 1700 / 37.625)]
    assert velocity["all"][:3] == [5, pytest.approx(3 / 5), pytest.approx(7400 / 3)]


def test_win_rates_losses_and_cac(usd):
    win = {(p, b, per): r for p, b, per, *r in rows(usd, """
        select pipeline, basis, period, won_deals, lost_deals, win_rate, is_immature
        from main.mart_win_rates where period_grain = 'month'""")}
    assert win[("sales", "close_period", "2026-02")] == [2, 1, pytest.approx(2 / 3), None]
    assert win[("renewals", "close_period", "2026-03")] == [0, 1, 0.0, None]
    assert win[("sales", "creation_cohort", "2026-01")] == [2, 1, pytest.approx(2 / 3), False]
    assert win[("sales", "creation_cohort", "2026-03")] == [0, 0, None, True]
    losses = rows(usd, "select pipeline, stage, lost_reason, lost_deals, drop_off_rate from main.mart_stage_losses "
                       "order by 1")
    assert losses == [("renewals", "review", "price", 1, pytest.approx(1 / 3)),
                      ("sales", "lead", "price", 1, pytest.approx(1 / 7))]  # lead reached by all 7
    # January: web spent 500 and won r1 (its lead source is web): CAC 500; no margin configured.
    assert rows(usd, "select spend_month, lead_source, spend_reporting, won_deals, cac_reporting, payback_months "
                     "from main.mart_cac_payback order by lead_source") == [
        ("2026-01", "all", 500.0, 1, 500.0, None), ("2026-01", "web", 500.0, 1, 500.0, None)]


def test_pipeline_as_of_today_and_daily_trend(usd):
    snapshot = rows(usd, "select deal_key, stage, amount_reporting from main.mart_pipeline_snapshot order by 1")
    assert rows(usd, "select deal_key, stage, amount_reporting from main.mart_pipeline_as_of order by 1") == snapshot
    daily = {(str(d), p, s): (n, a) for d, p, s, n, a in rows(usd, """
        select snapshot_date, pipeline, stage, open_deals, amount_reporting from main.mart_pipeline_daily""")}
    assert len({k[0] for k in daily}) == 400
    # the as_of date is the snapshot
    assert daily[("2026-03-15", "sales", "lead")] == (1, 100.0)
    assert daily[("2026-03-15", "sales", "meeting")] == (2, 4250.0)
    assert daily[("2026-03-15", "sales", "proposal")] == (1, 800.0)
    assert daily[("2026-03-15", "renewals", "negotiation")] == (1, 900.0)
    # end of 01-16: lead s3 + s4, meeting s1, proposal s2 (EUR 2000 at 1.10), review r2
    assert daily[("2026-01-16", "sales", "lead")] == (2, 1300.0)
    assert daily[("2026-01-16", "sales", "meeting")] == (1, 1000.0)
    assert daily[("2026-01-16", "sales", "proposal")] == (1, pytest.approx(2200.0))
    assert daily[("2026-01-16", "renewals", "review")] == (1, 600.0)
    # end of 01-22: s4 is lost (reopened only on 02-01), s3 in meeting
    assert daily[("2026-01-22", "sales", "lead")] == (0, 0.0)
    assert daily[("2026-01-22", "sales", "meeting")] == (1, 500.0)


def test_time_travel_pipeline_then_and_the_waterfall(built):
    run = built["then"]
    assert run.success, run.exception
    con = connect(run)
    try:
        then = rows(con, "select deal_key, stage, amount_reporting, pipeline_at from main.mart_pipeline_as_of "
                         "order by 1")
        waterfall = {c: r for c, *r in rows(con, """
            select change_type, deals, amount_reporting, period_deals, period_amount_reporting
            from main.mart_pipeline_waterfall where pipeline = 'all'""")}
        kinds = dict(rows(con, "select deal_key, change_type from main.fct_pipeline_changes"))
    finally:
        con.close()
    at = datetime(2026, 1, 16, 23, 59, 59)
    assert then == [("crm:r2", "review", 600.0, at), ("crm:s1", "meeting", 1000.0, at),
                    ("crm:s2", "proposal", pytest.approx(2200.0), at), ("crm:s3", "lead", 500.0, at),
                    ("crm:s4", "lead", 800.0, at)]
    # From the end of 01-25 to as_of, amounts at the 03-15 rate (EUR 1.25). s4 was lost then (it
    # was reopened on 02-01); r3 s5 s7 s8 are new; s1 s2 won; r2 s3 lost. Q1 is the close period.
    assert kinds == {"crm:r2": "lost", "crm:s1": "won", "crm:s2": "won", "crm:s3": "lost", "crm:s4": "reopened",
                     "crm:r3": "new", "crm:s5": "new", "crm:s7": "new", "crm:s8": "new"}
    expected = {
        "opening": [4, 4600, 4, 4600], "new": [4, 5250, 1, 3000], "reopened": [1, 800, 1, 800],
        "won": [2, -3500, 2, -3500], "lost": [2, -1100, 2, -1100], "closing": [5, 6050, 2, 3800],
        "pushed": [0, 0, 0, 0], "pulled_in": [0, 0, 0, 0], "amount_changed": [0, 0, 0, 0],
    }
    for step, want in expected.items():
        assert waterfall[step] == pytest.approx(want), step


# ---------------------------------------------------------------- real exports: no history, unknown outcomes

def test_deals_without_history_and_unknown_outcomes_count(tmp_path):
    """A real export's shape (issue 13): deal lists without stage history, a closed stage with no
    known outcome, a date-only close dated before the creation. As of 2026-03-15 12:00, pipeline
    p = lead(1) meeting(2) won(3) lost(4) issued(5, outcome unknown):

        b1  lost, export stage 'lost', only the loader's snapshot event into lost  -> lost at no known stage
        b2  lost, export stage meeting (the CRM keeps it), no events               -> lost at meeting
        b3  won, no events                                                         -> passed every stage
        b4  closed in 'issued' (outcome unknown), no events                        -> closed, outcome unknown
        b5  open, lead 03-01                                                       -> the open pipeline
        b6  won, close dated 03-01 (date only), created 03-02 10:00                -> cycle 0, flagged

    created 6; reached lead 6 (every deal), meeting 3 (b2, and b3 b6 won), won 2; lost at meeting 1,
    at an unknown stage 1; win rate of March 2 / (2 + 2): b4 is neither."""
    warehouse = tmp_path / "w.duckdb"
    con = duckdb.connect(str(warehouse))
    try:
        ensure_raw_schema(con)
        con.executemany("insert into raw.pipeline_stages values ('p', ?, ?, ?, null)", [
            ("lead", 1, "open"), ("meeting", 2, "open"), ("won", 3, "won"), ("lost", 4, "lost"),
            ("issued", 5, "unknown")])
        deals = [  # native_id, created_at, closed_at, outcome, current_stage
            ("b1", "2026-03-01 00:00:00", "2026-03-05 00:00:00", "lost", "lost"),
            ("b2", "2026-03-01 00:00:00", "2026-03-06 00:00:00", "lost", "meeting"),
            ("b3", "2026-03-01 00:00:00", "2026-03-04 00:00:00", "won", "won"),
            ("b4", "2026-03-01 00:00:00", "2026-03-07 00:00:00", "unknown", "issued"),
            ("b5", "2026-03-01 00:00:00", None, "open", "lead"),
            ("b6", "2026-03-02 10:00:00", "2026-03-01 00:00:00", "won", "won"),
        ]
        for nid, created, closed, outcome, stage in deals:
            con.execute(
                "insert into raw.deals (deal_key, source_system, native_id, pipeline, amount, currency, created_at, "
                "closed_at, outcome, current_stage, exported_at) values (?, 'crm', ?, 'p', 100, 'USD', ?, ?, ?, ?, "
                "'2026-03-15 00:00:00')", [f"crm:{nid}", nid, created, closed, outcome, stage])
        con.executemany("insert into raw.stage_events values (?, ?, 'p', ?, ?, ?, 'deals.csv')", [
            ("snap-b1", "crm:b1", "lost", "2026-03-05 00:00:00", "snapshot_diff"),
            ("e-b5", "crm:b5", "lead", "2026-03-01 00:00:00", "history")])
        with_deal_flags(con)
        con.execute("update raw.deals set is_close_date_only = true, is_closed_before_created = true "
                    "where deal_key = 'crm:b6'")
    finally:
        con.close()
    run = invoke_dbt(["build", "--select", "+mart_stage_losses", "+mart_win_rates", "+mart_pipeline_snapshot"],
                     warehouse, tmp_path, as_of="2026-03-15 12:00:00", reporting_currency="USD")
    assert run.success, f"{run.exception} {[k for k, v in run.statuses.items() if v not in ('success', 'pass')]}"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        funnel = {s: r for s, *r in rows(con, """
            select stage, stage_order, reached, lost_here, created_deals, closed_unknown_deals
            from main.mart_funnel_conversion""")}
        assert funnel == {"lead": [1, 6, 0, 6, 1], "meeting": [2, 3, 1, 6, 1], "won": [3, 2, 0, 6, 1],
                          "(stage unknown)": [None, None, 1, 6, 1]}
        assert rows(con, "select stage, lost_deals, drop_off_rate from main.mart_stage_losses order by stage") == [
            ("(stage unknown)", 1, None), ("meeting", 1, pytest.approx(1 / 3))]
        assert rows(con, "select won_deals, lost_deals, win_rate, deals from main.mart_win_rates where pipeline = 'p' "
                         "and basis = 'close_period' and period = '2026-03'") == [(2, 2, 0.5, 4)]
        assert rows(con, "select deal_key from main.mart_pipeline_snapshot") == [("crm:b5",)]
        facts = {k: r for k, *r in rows(con, """
            select deal_key, status_as_of, lost_at_stage, sales_cycle_days, is_closed_before_created
            from main.fct_deals""")}
        assert facts["crm:b4"] == ["unknown", None, None, False]
        assert facts["crm:b6"] == ["won", None, 0.0, True]
        assert facts["crm:b2"][1] == "meeting" and facts["crm:b1"][1] is None
        # the report's funnel: both lost deals counted, the closed-unknown one said
        from voronka.report.data import report_data
        from voronka.report.render import render_report

        data = report_data(con)
        shown = data["funnel"]["pipelines"][0]
        assert (shown["created"], shown["won"], shown["lost"], shown["closed_unknown"]) == (6, 2, 2, 1)
        assert "closed, outcome unknown 1" in render_report(data)
    finally:
        con.close()
