"""The dbt project on a real PostgreSQL server: it builds, its data and unit tests pass, and every
model holds the same rows as on DuckDB.

The server is started before the suite by scripts/test.sh, which runs scripts/install_postgres.sh
(apt-get installs PostgreSQL when it is missing; a private cluster on 127.0.0.1) and exports the
VORONKA_PG_* variables it prints; by hand: `eval "$(bash scripts/install_postgres.sh)"`. The test
is skipped, saying so, when no server is configured; a configured server that cannot be reached
fails it.

Two data sets: the hand-made warehouse of test_dbt_models (full `dbt build`: models, data tests,
unit tests on PostgreSQL), and a small simulated company (`dbt run` on both engines), whose
marts are compared table by table with DuckDB's.
"""

from __future__ import annotations

import math
import os
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from dbt_helpers import PROJECT, invoke_dbt
from test_dbt_models import AS_OF, load_raw

from voronka.ingest import canonical, warehouse

psycopg2 = pytest.importorskip("psycopg2", reason="dbt-postgres (psycopg2) is not installed")
from dbt.cli.main import dbtRunner  # noqa: E402

pytestmark = pytest.mark.slow  # a PostgreSQL server and dbt builds on both engines

PG_TYPES = {"VARCHAR": "text", "TIMESTAMP": "timestamp", "DATE": "date", "DOUBLE": "double precision",
            "INTEGER": "integer", "BIGINT": "bigint", "BOOLEAN": "boolean", "JSON": "text"}
VARS = {"as_of": AS_OF, "reporting_currency": "USD", "from_date": "2026-02-01", "gross_margin": 0.5}


# ---------------------------------------------------------------- the server

SERVER_VARS = ("VORONKA_PG_HOST", "VORONKA_PG_PORT", "VORONKA_PG_USER", "VORONKA_PG_DATABASE")


@pytest.fixture(scope="module")
def server() -> dict:
    """The running server's environment (VORONKA_PG_*), as scripts/test.sh exported it."""
    missing = [name for name in SERVER_VARS if not os.environ.get(name)]
    if missing:
        pytest.skip(f"no PostgreSQL server configured ({', '.join(missing)} unset): scripts/test.sh "
                    f"starts one, or eval \"$(bash scripts/install_postgres.sh)\" before pytest")
    return {name: os.environ[name] for name in (*SERVER_VARS, "VORONKA_PG_PASSWORD") if name in os.environ}


def _connect(server: dict, database: str):
    return psycopg2.connect(host=server["VORONKA_PG_HOST"], port=int(server["VORONKA_PG_PORT"]),
                            user=server["VORONKA_PG_USER"], password=server.get("VORONKA_PG_PASSWORD", ""),
                            dbname=database)


@pytest.fixture
def new_database(server):
    """A fresh database per use (dropped afterwards)."""
    created = []

    def make() -> str:
        name = f"voronka_test_{uuid.uuid4().hex[:10]}"
        admin = _connect(server, server["VORONKA_PG_DATABASE"])
        admin.autocommit = True
        try:
            admin.cursor().execute(f'create database "{name}"')
        finally:
            admin.close()
        created.append(name)
        return name

    yield make
    admin = _connect(server, server["VORONKA_PG_DATABASE"])
    admin.autocommit = True
    try:
        for name in created:
            admin.cursor().execute(f'drop database if exists "{name}" with (force)')
    finally:
        admin.close()


def pg_type(sql_type: str) -> str:
    return "numeric" + sql_type[len("DECIMAL"):] if sql_type.startswith("DECIMAL") else PG_TYPES[sql_type]


def copy_raw_to_postgres(source: Path, server: dict, database: str) -> None:
    """The raw schema (canonical.TABLES, with the loader's derived columns) in PostgreSQL, holding
    the rows of the DuckDB warehouse `source`."""
    extra = getattr(warehouse, "EXTRA_COLUMNS", {})
    dk = duckdb.connect(str(source), read_only=True)
    pg = _connect(server, database)
    try:
        cur = pg.cursor()
        cur.execute("create schema raw")
        for table, columns in canonical.TABLES.items():
            columns = tuple(columns) + tuple(extra.get(table, ()))
            cur.execute(f"create table raw.{table} ("
                        + ", ".join(f"{c.name} {pg_type(c.sql_type)}" for c in columns) + ")")
            have = {name for (name,) in dk.execute(
                "select column_name from information_schema.columns where table_schema = 'raw' "
                "and table_name = ?", [table]).fetchall()}
            names = [c.name for c in columns if c.name in have]
            if not names:
                continue
            rows = dk.execute(f"select {', '.join(names)} from raw.{table}").fetchall()
            if rows:
                cur.executemany(f"insert into raw.{table} ({', '.join(names)}) values "
                                f"({', '.join(['%s'] * len(names))})", rows)
        pg.commit()
    finally:
        pg.close()
        dk.close()


def invoke_dbt_postgres(command: list[str], server: dict, database: str, work: Path, **vars_):
    import json

    args = [*command, "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target", "postgres",
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"), "--quiet"]
    if vars_:
        args += ["--vars", json.dumps(vars_)]
    saved = {k: os.environ.get(k) for k in server}
    os.environ.update({**server, "VORONKA_PG_DATABASE": database})
    try:
        result = dbtRunner().invoke(args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    results = getattr(result.result, "results", None) or []
    return result, {r.node.unique_id: str(r.status) for r in results}


# ---------------------------------------------------------------- comparing the engines

def _plain(value):
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return str(value)[:19]
    return value


def _sort_key(row):
    return tuple((v is None, f"{v:.6g}" if isinstance(v, float) else str(v)) for v in row)


def _rows_duckdb(con, table):
    cursor = con.execute(f"select * from main.{table}")
    names = [d[0] for d in cursor.description]
    return names, sorted((tuple(_plain(v) for v in r) for r in cursor.fetchall()), key=_sort_key)


def _rows_postgres(pg, table):
    cur = pg.cursor()
    cur.execute(f"select * from main.{table}")
    names = [d[0] for d in cur.description]
    return names, sorted((tuple(_plain(v) for v in r) for r in cur.fetchall()), key=_sort_key)


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def compare_engines(duck_path: Path, server: dict, database: str, tables: list[str]) -> dict:
    """{table: number of rows} after checking each table holds the same rows on both engines."""
    dk = duckdb.connect(str(duck_path), read_only=True)
    pg = _connect(server, database)
    counts = {}
    try:
        for table in tables:
            names_d, rows_d = _rows_duckdb(dk, table)
            names_p, rows_p = _rows_postgres(pg, table)
            assert names_d == names_p, table
            assert len(rows_d) == len(rows_p), (table, len(rows_d), len(rows_p))
            for rd, rp in zip(rows_d, rows_p):
                bad = [(n, a, b) for n, a, b in zip(names_d, rd, rp) if not _same(a, b)]
                assert not bad, (table, bad[:5], rd)
            counts[table] = len(rows_d)
    finally:
        dk.close()
        pg.close()
    return counts


def model_tables(target: Path) -> list[str]:
    import json

    manifest = json.loads((target / "manifest.json").read_text())
    return sorted(n["name"] for n in manifest["nodes"].values()
                  if n["resource_type"] == "model" and n["config"]["materialized"] in ("table", "view")
                  and not n["name"].startswith("stg_"))


# ---------------------------------------------------------------- the tests

def test_postgres_build_passes_and_equals_duckdb_on_the_hand_made_warehouse(server, new_database, tmp_path):
    load_raw(tmp_path / "w.duckdb")
    database = new_database()
    copy_raw_to_postgres(tmp_path / "w.duckdb", server, database)

    result, statuses = invoke_dbt_postgres(["build"], server, database, tmp_path / "pg", **VARS)
    failed = {k: v for k, v in statuses.items() if v not in ("success", "pass")}
    assert result.success and not failed, f"{result.exception} {failed}"
    assert sum(k.startswith("unit_test.") for k in statuses) >= 20  # every definition's hand case ran
    assert sum(k.startswith("test.") for k in statuses) >= 150

    duck = invoke_dbt(["run"], tmp_path / "w.duckdb", tmp_path / "duck", **VARS)
    assert duck.success, duck.exception
    counts = compare_engines(tmp_path / "w.duckdb", server, database, model_tables(tmp_path / "pg" / "target"))
    assert counts["mart_funnel_breakdowns"] > 0 and counts["mart_pipeline_daily"] > 0


def test_postgres_equals_duckdb_on_a_simulated_company(server, new_database, tmp_path):
    from voronka.ingest.loader import load_files
    from voronka.simulator.canonical_writer import write_canonical
    from voronka.simulator.company import simulate_company

    files = write_canonical(simulate_company(n_deals=400, seed=3, end_date=date(2026, 3, 15)),
                            tmp_path / "inbox", tmp_path / "truth")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        assert all(r.status == "loaded" for r in load_files(con, files))
    finally:
        con.close()
    database = new_database()
    copy_raw_to_postgres(tmp_path / "w.duckdb", server, database)
    sim_vars = {**VARS, "as_of": "2026-03-15 23:59:59", "from_date": "2026-01-31"}
    result, statuses = invoke_dbt_postgres(["run"], server, database, tmp_path / "pg", **sim_vars)
    assert result.success, result.exception
    duck = invoke_dbt(["run"], tmp_path / "w.duckdb", tmp_path / "duck", **sim_vars)
    assert duck.success, duck.exception
    counts = compare_engines(tmp_path / "w.duckdb", server, database, model_tables(tmp_path / "pg" / "target"))
    assert counts["fct_deals"] == 400 and counts["mart_time_in_stage"] > 50
