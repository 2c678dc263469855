"""Small reads of the warehouse shared by the assets and the CLI (no Dagster imports).

pandas is imported inside the functions that return frames: the CLI's read commands use
`records` and `table_exists`, and a read command should not pay for importing pandas."""

from __future__ import annotations

import math
from datetime import datetime, time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    import pandas as pd

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


# Column types `records` converts itself, as pandas would; a result with any other column type
# (lists, structs, time zones ...) goes through pandas. TIMESTAMP_NS (a timestamp written from a
# pandas frame, deal_scores') comes back as a datetime to the microsecond: CRM times have none finer.
_AS_IS_TYPES = {"VARCHAR", "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                "UINTEGER", "UBIGINT", "TIMESTAMP", "TIMESTAMP_NS"}
_AS_FLOAT_TYPES = {"DOUBLE", "HUGEINT", "UHUGEINT"}  # and DECIMAL(p,s)


def records(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    """The rows of an executed query as dicts, the values exactly as
    `frame.astype(object).where(frame.notna(), None).to_dict("records")` of its `.df()` gives
    them (DECIMAL and HUGEINT as float, DATE as a midnight datetime, NaN as None), without
    importing pandas for the common column types."""
    names = [d[0] for d in cursor.description]
    kinds = []
    for d in cursor.description:
        kind = str(d[1])
        if kind in _AS_IS_TYPES or kind == '"NULL"' or kind.startswith("ENUM("):
            # an all-null column and an ENUM (pandas: a categorical of str) come back as they are
            kinds.append(None)
        elif kind in _AS_FLOAT_TYPES or (kind.startswith("DECIMAL(") and kind.endswith(")")):
            kinds.append("float")
        elif kind == "DATE":
            kinds.append("date")
        else:
            frame = cursor.df()
            return frame.astype(object).where(frame.notna(), None).to_dict("records")
    converters = [(i, k) for i, k in enumerate(kinds) if k is not None]
    out = []
    for row in cursor.fetchall():
        if converters:
            row = list(row)
            for i, kind in converters:
                value = row[i]
                if value is None:
                    continue
                if kind == "float":
                    value = float(value)
                    row[i] = None if math.isnan(value) else value
                else:
                    row[i] = datetime.combine(value, time())
        out.append(dict(zip(names, row)))
    return out


# The dbt marts canonical_frames reads: the one contract between dbt and the Python models
# (assets that call it depend on them; nothing in Python reads raw.* or the FX rates for modelling).
CANONICAL_FRAME_MODELS = ["ml_deals", "ml_stage_events", "ml_pipeline_stages"]


class StaleMartsError(ValueError):
    """The ML marts were built as of another date than the run asks for: their amounts would be
    at another date's FX rates."""


def canonical_frames(con: duckdb.DuckDBPyConnection, as_of: datetime,
                     deal_columns: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """The model inputs from the dbt marts CANONICAL_FRAME_MODELS (built as of `as_of`):

    - deals: ml_deals, every deal without the deleted/merged ones, amount_reporting at the as-of
      date's FX rate;
    - stage_events: ml_stage_events (deal_key, pipeline, stage, entered_at), creation events
      settled, for those deals only;
    - pipeline_stages: ml_pipeline_stages as ml/ names the columns (stage_kind as `kind`).

    Ordered: DuckDB returns rows in whatever order its threads finish, and the models' seeded
    sampling picks rows by position, so without an order the same warehouse trained different
    models from run to run. `deal_columns`: only these columns of ml_deals (deal_key always),
    e.g. ml.features.DEAL_COLUMNS for the models — `select *` with the titles and attributes
    JSON doubled the read and the memory at 1M deals (15 s, 1.4 GB)."""
    import pandas as pd

    columns = "*" if deal_columns is None else ", ".join(dict.fromkeys(["deal_key", *deal_columns]))
    deals = con.execute(f"select {columns} from main.ml_deals order by deal_key").df()
    built = con.execute("select as_of from main.ml_deals limit 1").fetchone() if len(deals) else None
    built = built[0] if built else None
    if built is not None and pd.Timestamp(built).date() != pd.Timestamp(as_of).date():
        raise StaleMartsError(f"main.ml_deals was built as of {pd.Timestamp(built)}, not {as_of}: "
                              "build the dbt models as of the same time first")
    events = con.execute("select deal_key, pipeline, stage, entered_at from main.ml_stage_events "
                         "order by deal_key, entered_at, pipeline, stage, event_key").df()
    stages = con.execute("select pipeline, stage, stage_order, stage_kind as kind, crm_probability "
                         "from main.ml_pipeline_stages order by pipeline, stage_order, stage").df()
    return {"deals": deals, "stage_events": events, "pipeline_stages": stages}
