"""The fingerprint that lets a day with nothing new skip the dbt build changes with what the marts
are built from (a loaded file, a source table's rows, as_of, currency) and with nothing else (the
loader's and the quality checks' bookkeeping beside the sources)."""

import duckdb
import pytest

from orchestration.assets.dbt import build_fingerprint, raw_sources


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("create schema raw")
    for table in raw_sources():
        con.execute(f'create table raw."{table}" (x integer)')
    con.execute("create table raw.ingest_log (export_file varchar, file_sha256 varchar)")
    con.execute("insert into raw.ingest_log values ('deals.csv', 'aa')")
    con.execute("create table raw.quality_state (k varchar)")
    return con


def test_bookkeeping_beside_the_sources_does_not_change_it(con):
    before = build_fingerprint(con, "2026-11-20 23:59:59", "USD")
    con.execute("insert into raw.quality_state values ('checked')")
    con.execute("create table raw.something_new (y integer)")
    assert build_fingerprint(con, "2026-11-20 23:59:59", "USD") == before


def test_a_loaded_file_a_source_row_as_of_or_currency_changes_it(con):
    before = build_fingerprint(con, "2026-11-20 23:59:59", "USD")
    assert build_fingerprint(con, "2026-11-21 23:59:59", "USD") != before
    assert build_fingerprint(con, "2026-11-20 23:59:59", "EUR") != before
    con.execute("insert into raw.deals values (1)")
    after_row = build_fingerprint(con, "2026-11-20 23:59:59", "USD")
    assert after_row != before
    con.execute("insert into raw.ingest_log values ('deals.csv', 'bb')")
    assert build_fingerprint(con, "2026-11-20 23:59:59", "USD") != after_row
