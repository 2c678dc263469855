"""The raw schema of the warehouse: DDL for the canonical tables and the loader's bookkeeping."""

from __future__ import annotations

import duckdb

from voronka.ingest.canonical import (
    DEAL_EXPORTS,
    DEAL_FLAGS,
    DEAL_SNAPSHOTS,
    INGEST_LOG,
    QUARANTINE,
    ROW_FLAG_NAMES,
    TABLES,
    Column,
)

RAW_SCHEMA = "raw"

# Columns a table has beyond its canonical ones: derived by the loader, never read from a file.
EXTRA_COLUMNS: dict[str, tuple[Column, ...]] = {"deals": DEAL_FLAGS}

# The loader's own tables, beside the canonical ones.
BOOKKEEPING: dict[str, tuple[Column, ...]] = {
    "ingest_log": INGEST_LOG,
    "quarantine": QUARANTINE,
    "deal_snapshots": DEAL_SNAPSHOTS,
    "deal_exports": DEAL_EXPORTS,
}


def _ddl(table: str, columns: tuple[Column, ...]) -> str:
    body = ",\n  ".join(f"{c.name} {c.sql_type}" for c in columns)
    return f"create table if not exists {RAW_SCHEMA}.{table} (\n  {body}\n)"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw schema and every raw table if they do not exist yet (idempotent).

    A warehouse made by an older version gets the columns added since (null until the next load
    that derives them)."""
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    existing: dict[str, set] = {}
    for table, column in con.execute("select table_name, column_name from information_schema.columns "
                                     "where table_schema = ?", [RAW_SCHEMA]).fetchall():
        existing.setdefault(table, set()).add(column)
    for table, columns in {**TABLES, **BOOKKEEPING}.items():
        every = columns + EXTRA_COLUMNS.get(table, ())
        if table not in existing:
            con.execute(_ddl(table, every))
            continue
        for column in every:
            if column.name not in existing[table]:
                # The row flags are never null: rows loaded before they existed were not flagged.
                default = " default false" if column.name in ROW_FLAG_NAMES else ""
                con.execute(f"alter table {RAW_SCHEMA}.{table} add column {column.name} "
                            f"{column.sql_type}{default}")
