"""The daily build passes the as_of and reporting currency as data (voronka_run.settings) and keeps
one target folder, so dbt parses only what changed; the marts must not change for it.

A simulated company is loaded into two warehouses. One is built the old way (as_of and
reporting currency as --vars, a new target folder each time: a full parse), the other the new way
(the settings table, one target folder: partial parsing, unit tests left out as in the daily
run). Every mart table must be equal: on the first day, after a new day of exports has been
loaded, and back at an earlier as_of (time travel).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dbt_helpers import invoke_dbt
from test_dbt_models import with_deal_flags

from orchestration.assets.dbt import (
    DAILY_EXCLUDE,
    clear_run_settings,
    table_models,
    write_run_settings,
)
from voronka.ingest.loader import load_files
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company

pytestmark = pytest.mark.slow  # six dbt builds

N_DEALS = 600
SEED = 42
DAY_1, DAY_2 = date(2026, 6, 29), date(2026, 6, 30)


def load_day(warehouse: Path, root: Path, end_date: date) -> None:
    """The company's exports up to `end_date` (a new export of the same deals the next day)."""
    files = write_canonical(simulate_company(n_deals=N_DEALS, seed=SEED, end_date=end_date),
                            root / f"inbox_{end_date}", root / f"truth_{end_date}")
    con = duckdb.connect(str(warehouse))
    try:
        results = load_files(con, files)
        with_deal_flags(con)
    finally:
        con.close()
    # A file identical to the day before (the stages) is already loaded: a no-op.
    assert all(r.status in ("loaded", "already_loaded") for r in results), [r.as_dict() for r in results]
    assert any(r.status == "loaded" for r in results)


def build_old_way(warehouse: Path, work: Path, as_of: str) -> None:
    run = invoke_dbt(["build"], warehouse, work, as_of=as_of, reporting_currency="EUR")
    assert run.success, run.exception


def build_new_way(warehouse: Path, work: Path, as_of: str) -> str:
    """The orchestrator's build; returns what dbt logged (whether it parsed everything again)."""
    con = duckdb.connect(str(warehouse))
    try:
        write_run_settings(con, as_of, "EUR")
    finally:
        con.close()
    log = work / "logs" / "dbt.log"
    log.unlink(missing_ok=True)
    run = invoke_dbt(["build", "--exclude", DAILY_EXCLUDE, "--log-level-file", "debug"], warehouse, work)
    con = duckdb.connect(str(warehouse))
    try:
        clear_run_settings(con)
    finally:
        con.close()
    assert run.success, run.exception
    assert not any(uid.startswith("unit_test.") for uid in run.statuses)
    return log.read_text(encoding="utf-8")


def assert_marts_equal(old: Path, new: Path) -> None:
    tables = table_models()
    assert {"fct_deals", "fct_stage_transitions", "mart_funnel_conversion"} <= set(tables)
    with duckdb.connect(str(old), read_only=True) as a, duckdb.connect(str(new), read_only=True) as b:
        for name, schema in sorted(tables.items()):
            query = f'select * from "{schema}"."{name}" order by all'
            left, right = a.execute(query).df(), b.execute(query).df()
            pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9, obj=name)


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory):
    root = tmp_path_factory.mktemp("as_of_as_data")
    old, new = root / "old.duckdb", root / "new.duckdb"
    for warehouse in (old, new):
        load_day(warehouse, root, DAY_1)
    return root, old, new


def test_marts_equal_the_var_built_ones_day_after_day_and_back_in_time(warehouses):
    root, old, new = warehouses
    day_1, day_2, earlier = f"{DAY_1} 23:59:59", f"{DAY_2} 23:59:59", "2026-03-31 23:59:59"

    build_old_way(old, root / "old_1", day_1)
    build_new_way(new, root / "new", day_1)
    assert_marts_equal(old, new)

    # A new day of exports, as_of a day later: the new way parses only what changed.
    for warehouse in (old, new):
        load_day(warehouse, root, DAY_2)
    build_old_way(old, root / "old_2", day_2)
    log = build_new_way(new, root / "new", day_2)
    assert "Unable to do partial parsing" not in log
    assert_marts_equal(old, new)

    # Time travel: as of an earlier date, still the same marts.
    build_old_way(old, root / "old_3", earlier)
    build_new_way(new, root / "new", earlier)
    assert_marts_equal(old, new)


def test_a_var_given_by_hand_wins_over_the_run_settings(warehouses):
    root, _, new = warehouses
    con = duckdb.connect(str(new))
    try:
        write_run_settings(con, "2026-05-31 23:59:59", "EUR")
    finally:
        con.close()
    built = "select distinct as_of::varchar, reporting_currency from mart_pipeline_snapshot"
    run = invoke_dbt(["run", "--select", "+mart_pipeline_snapshot"], new, root / "by_hand",
                     as_of="2026-04-30 23:59:59", reporting_currency="USD")
    assert run.success, run.exception
    with duckdb.connect(str(new)) as con:
        assert con.execute(built).fetchall() == [("2026-04-30 23:59:59", "USD")]
        clear_run_settings(con)
    # Nothing given: as of the newest raw data, in USD (as before the settings table).
    run = invoke_dbt(["run", "--select", "+mart_pipeline_snapshot"], new, root / "by_hand")
    assert run.success, run.exception
    with duckdb.connect(str(new), read_only=True) as con:
        newest = con.execute("select greatest(max(exported_at), max(created_at), max(closed_at))::varchar "
                             "from raw.deals").fetchone()[0]
        assert con.execute(built).fetchall() == [(newest, "USD")]
