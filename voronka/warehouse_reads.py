"""Small reads of the warehouse shared by the assets and the CLI (no Dagster imports)."""

from __future__ import annotations

from datetime import datetime, time

import duckdb
import pandas as pd


def newest_data_time(con: duckdb.DuckDBPyConnection) -> datetime:
    """The as-of time of a run: the newest data, never the wall clock.

    An export states when it was made (exported_at); without that, the newest event in it.
    """
    row = con.execute(
        """
        select coalesce(
            (select max(exported_at) from raw.deals),
            greatest(
                (select max(created_at) from raw.deals),
                (select max(closed_at) from raw.deals),
                (select max(entered_at) from raw.stage_events)
            )
        )
        """
    ).fetchone()
    if row is None or row[0] is None:
        return datetime.combine(datetime.utcnow().date(), time(23, 59, 59))
    return row[0]


def newest_export_by_source(con: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
    """source_system -> when its newest export was made (exported_at; without it, the newest
    creation or close in its deals): what freshness is judged on."""
    rows = con.execute(
        """
        select source_system, coalesce(max(exported_at), greatest(max(created_at), max(closed_at)))
        from raw.deals group by source_system order by source_system
        """
    ).fetchall()
    return {source: newest for source, newest in rows if newest is not None}


MISSING_FX_COLUMNS = ["currency", "deals", "open_deals", "amount"]


def deals_without_fx(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per currency, the deals whose amount has no rate to the reporting currency (fct_deals
    converts each deal at its close date's rate, an open deal at the as-of date's): currency,
    deals, open_deals, amount (in that currency). Without a rate they would count as nothing in
    bookings, the pipeline and the forecast. Empty before fct_deals is built."""
    if not table_exists(con, "main.fct_deals"):
        return pd.DataFrame(columns=MISSING_FX_COLUMNS)
    return con.execute(
        """
        select coalesce(currency, '') as currency, count(*) as deals,
               cast(sum(case when status_as_of = 'open' then 1 else 0 end) as bigint) as open_deals,
               sum(cast(amount as double)) as amount
        from main.fct_deals
        where amount is not null and amount <> 0 and amount_reporting is null
        group by 1
        order by deals desc, currency
        """
    ).df()


def read_table(con: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    return con.execute(f"select * from {table}").df()


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    con.register("frame_to_write", frame)
    try:
        con.execute(f"create or replace table {table} as select * from frame_to_write")
    finally:
        con.unregister("frame_to_write")


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, _, name = table.rpartition(".")
    return bool(con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema or "main", name],
    ).fetchone()[0])


# The dbt models canonical_frames reads besides the raw tables (assets that call it depend on them).
CANONICAL_FRAME_MODELS = ["int_fx_rates_triangulated", "int_stage_events"]


def canonical_frames(con: duckdb.DuckDBPyConnection, as_of: datetime) -> dict[str, pd.DataFrame]:
    """deals (with amount_reporting at the as-of date's FX rate), stage_events (with creation
    events settled, int_stage_events) and pipeline_stages, as the models read them. Needs the dbt
    models CANONICAL_FRAME_MODELS to be built.

    Ordered: DuckDB returns rows in whatever order its threads finish, and the models' seeded
    sampling picks rows by position, so without an order the same warehouse trained different
    models from run to run."""
    as_of_date = as_of.date().isoformat()
    deals = con.execute(
        """
        select d.*, cast(d.amount as double) * fx.rate_to_reporting as amount_reporting
        from raw.deals d
        left join main.int_fx_rates_triangulated fx
          on fx.currency = d.currency
         and cast(? as date) >= fx.valid_from
         and (fx.valid_to is null or cast(? as date) < fx.valid_to)
        order by d.deal_key
        """,
        [as_of_date, as_of_date],
    ).df()
    events = con.execute("select deal_key, pipeline, stage, entered_at from main.int_stage_events "
                         "order by deal_key, entered_at, pipeline, stage").df()
    stages = con.execute("select * from raw.pipeline_stages order by pipeline, stage_order, stage").df()
    return {"deals": deals, "stage_events": events, "pipeline_stages": stages}
