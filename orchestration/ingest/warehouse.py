"""The raw schema of the warehouse: DDL for the canonical tables and the loader's bookkeeping."""

from __future__ import annotations

import duckdb

from orchestration.ingest.canonical import INGEST_LOG, QUARANTINE, TABLES, Column

RAW_SCHEMA = "raw"


def _ddl(table: str, columns: tuple[Column, ...]) -> str:
    body = ",\n  ".join(f"{c.name} {c.sql_type}" for c in columns)
    return f"create table if not exists {RAW_SCHEMA}.{table} (\n  {body}\n)"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and every raw table if they do not exist yet (idempotent)."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    for table, columns in TABLES.items():
        con.execute(_ddl(table, columns))
    con.execute(_ddl("ingest_log", INGEST_LOG))
    con.execute(_ddl("quarantine", QUARANTINE))
