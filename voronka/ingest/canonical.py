"""The canonical data model: the contract between the readers and the warehouse (and dbt).

Every reader (canonical CSV, amoCRM, Bitrix24, ...) turns an export into frames with exactly
these columns; the loader validates them, quarantines bad rows and writes the raw.* tables.
Timestamps are naive UTC, dates are dates, money is a decimal with an ISO-4217 currency.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# `unknown`: the CRM says the deal is closed (a closed stage, CLOSED=Y, IsClosed) but not whether it
# was won or lost (a custom closed stage such as 'Выдано' with no semantic). Not open pipeline, not
# won, not lost: shown, and left out of win rates and training labels. voronka.yaml
# `stage_outcomes` settles it (voronka/ingest/outcomes.py).
OUTCOMES = ("open", "won", "lost", "unknown")
STAGE_KINDS = ("open", "won", "lost", "unknown")
EVENT_ORIGINS = ("history", "snapshot_diff", "created", "inferred")
# Stage events the loader derives from snapshots have keys with this prefix, so a rebuild can
# find and replace exactly them (a CRM's own events are keyed by a plain hash).
SNAPSHOT_EVENT_PREFIX = "snap-"
# A history of moves only (amoCRM events, Pipedrive flow) names the stage a deal left on its first
# move: the stage it was created in. The reader writes that `created` event one second before the
# move (the latest it can be); dbt's int_stage_events moves it to the deal's created_at, and drops
# it when the deal has an earlier event (the file did not hold the deal's whole history).
CREATION_EVENT_PREFIX = "crt-"


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    required: bool = False  # a row without it is quarantined


def _cols(*spec: tuple) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in spec)


# Table name (in schema raw) -> its columns, in order. `attributes` holds every other column of
# the export as JSON so nothing a CRM gives is lost.
TABLES: dict[str, tuple[Column, ...]] = {
    "deals": _cols(
        ("deal_key", "VARCHAR", True),
        ("source_system", "VARCHAR", True),
        ("native_id", "VARCHAR", True),
        ("pipeline", "VARCHAR", True),
        ("title", "VARCHAR"),
        ("owner", "VARCHAR"),
        ("lead_source", "VARCHAR"),
        ("segment", "VARCHAR"),
        ("region", "VARCHAR"),
        ("product", "VARCHAR"),
        ("amount", "DECIMAL(18,2)"),
        ("currency", "VARCHAR"),
        ("created_at", "TIMESTAMP", True),
        ("expected_close_date", "DATE"),
        ("closed_at", "TIMESTAMP"),
        ("outcome", "VARCHAR", True),
        ("lost_reason", "VARCHAR"),
        ("current_stage", "VARCHAR", True),
        ("attributes", "JSON"),
        ("export_file", "VARCHAR", True),
        ("exported_at", "TIMESTAMP"),
    ),
    "stage_events": _cols(
        ("event_key", "VARCHAR", True),
        ("deal_key", "VARCHAR", True),
        ("pipeline", "VARCHAR", True),
        ("stage", "VARCHAR", True),
        ("entered_at", "TIMESTAMP", True),
        ("origin", "VARCHAR", True),
        ("export_file", "VARCHAR", True),
    ),
    "pipeline_stages": _cols(
        ("pipeline", "VARCHAR", True),
        ("stage", "VARCHAR", True),
        ("stage_order", "INTEGER", True),
        ("kind", "VARCHAR", True),
        ("crm_probability", "DOUBLE"),
    ),
    "targets": _cols(
        ("period", "VARCHAR", True),  # 2026-01 or 2026-Q1
        ("scope_pipeline", "VARCHAR"),  # null = all pipelines
        ("scope_owner", "VARCHAR"),
        ("scope_segment", "VARCHAR"),
        ("target_amount", "DECIMAL(18,2)", True),
        ("currency", "VARCHAR", True),
    ),
    # 1 unit of `currency` = `rate` units of `quote_currency` on `rate_date`. dbt triangulates to
    # the configured reporting currency, so changing it needs no reload.
    "fx_rates": _cols(
        ("rate_date", "DATE", True),
        ("currency", "VARCHAR", True),
        ("quote_currency", "VARCHAR", True),
        ("rate", "DOUBLE", True),
    ),
    # Expected-close-date changes (Salesforce OpportunityHistory, or successive deal exports):
    # slippage is measured from it. origin: 'history' (a CRM's history export; the loader sets it
    # when a reader leaves it empty) or 'snapshot_diff' (the loader comparing deal exports).
    "close_date_history": _cols(
        ("deal_key", "VARCHAR", True),
        ("changed_at", "TIMESTAMP", True),
        ("expected_close_date", "DATE"),
        ("export_file", "VARCHAR", True),
        ("origin", "VARCHAR"),
    ),
    # Amount changes, as close_date_history: the value from changed_at on.
    "amount_history": _cols(
        ("deal_key", "VARCHAR", True),
        ("changed_at", "TIMESTAMP", True),
        ("amount", "DECIMAL(18,2)"),
        ("currency", "VARCHAR"),
        ("export_file", "VARCHAR", True),
        ("origin", "VARCHAR"),
    ),
    "marketing_spend": _cols(
        ("month", "VARCHAR", True),  # 2026-01
        ("lead_source", "VARCHAR", True),
        ("amount", "DECIMAL(18,2)", True),
        ("currency", "VARCHAR", True),
    ),
}

# Bookkeeping tables written by the loader itself.
INGEST_LOG = _cols(
    ("export_file", "VARCHAR"),
    ("file_sha256", "VARCHAR"),
    ("source_system", "VARCHAR"),
    ("rows_read", "BIGINT"),
    ("rows_loaded", "BIGINT"),
    ("rows_quarantined", "BIGINT"),
    ("loaded_at", "TIMESTAMP"),
)
QUARANTINE = _cols(
    ("export_file", "VARCHAR"),
    ("row_number", "BIGINT"),
    ("raw_row", "JSON"),
    ("reason", "VARCHAR"),
)
# Every sighting of a deal in a deals export: the snapshot successive exports are compared
# from. is_quarantined: the deal is in the file but its row was quarantined (seen, no values).
DEAL_SNAPSHOTS = _cols(
    ("deal_key", "VARCHAR"),
    ("source_system", "VARCHAR"),
    ("pipeline", "VARCHAR"),
    ("exported_at", "TIMESTAMP"),
    ("export_file", "VARCHAR"),
    ("current_stage", "VARCHAR"),
    ("outcome", "VARCHAR"),
    ("amount", "DECIMAL(18,2)"),
    ("currency", "VARCHAR"),
    ("expected_close_date", "DATE"),
    ("created_at", "TIMESTAMP"),
    ("closed_at", "TIMESTAMP"),
    ("is_deleted", "BOOLEAN"),
    ("merged_into", "VARCHAR"),
    ("is_quarantined", "BOOLEAN"),
)
# One row per deals export and pipeline it covers; a full export flags the pipeline's deals it
# does not carry as missing.
DEAL_EXPORTS = _cols(
    ("export_file", "VARCHAR"),
    ("source_system", "VARCHAR"),
    ("pipeline", "VARCHAR"),
    ("exported_at", "TIMESTAMP"),
    ("deals", "BIGINT"),
    ("is_full", "BOOLEAN"),
)
# What the loader flags on a deal instead of quarantining it (never null; readers may set the first
# two, the loader sets what they leave out):
# is_close_date_only: the source gave the close date without a time (or at local midnight);
# is_closed_before_created: closed_at is before created_at at day resolution in the source's time
#   zone (a date-only close on the creation day is set to created_at and is not "before");
# is_created_at_missing: the source had no creation date; created_at was filled with the earliest
#   of the deal's first stage event, its closed_at and the export time;
# is_closed_after_export: a closed deal's close date was after the export that says it is closed
#   (a lost deal keeping its planned close date); closed_at was set to the export time.
ROW_FLAGS = _cols(
    ("is_close_date_only", "BOOLEAN"),
    ("is_closed_before_created", "BOOLEAN"),
    ("is_created_at_missing", "BOOLEAN"),
    ("is_closed_after_export", "BOOLEAN"),
)
ROW_FLAG_NAMES = tuple(c.name for c in ROW_FLAGS)

# Columns of raw.deals the loader derives after every deals export (no reader gives them):
# is_deleted: the newest sighting of the deal marks it deleted or merged (marts leave it out);
# merged_into: the deal_key it was merged into; missing_since_export: the first full export of
# its pipeline, newer than the deal's last sighting, that does not carry it (null = not missing).
DEAL_FLAGS = _cols(
    ("is_deleted", "BOOLEAN"),
    ("merged_into", "VARCHAR"),
    ("missing_since_export", "VARCHAR"),
) + ROW_FLAGS

# Keys: a newer export of the same entity replaces the older row instead of duplicating it.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "deals": ("deal_key",),
    "stage_events": ("event_key",),
    "pipeline_stages": ("pipeline", "stage"),
    "targets": ("period", "scope_pipeline", "scope_owner", "scope_segment"),
    "fx_rates": ("rate_date", "currency", "quote_currency"),
    "marketing_spend": ("month", "lead_source"),
    "close_date_history": ("deal_key", "changed_at"),
    "amount_history": ("deal_key", "changed_at"),
}


def column_names(table: str) -> list[str]:
    return [c.name for c in TABLES[table]]


def deal_key(source_system: str, native_id: str) -> str:
    return f"{source_system}:{native_id}"


@dataclass
class RejectedRow:
    """A row a reader could not turn into canonical form; it goes to raw.quarantine."""

    row_number: int  # 1-based data row in the file (the header is row 0)
    raw_row: dict
    reason: str


@dataclass
class ParsedExport:
    """What a reader returns for one file: canonical frames plus the rows it had to reject.

    `frames` maps a canonical table name (see TABLES) to a DataFrame holding exactly that
    table's columns except `export_file` (the loader sets it); a `_row_number` column (1-based
    row of the file) may be present so the loader can name rows it quarantines.
    rows_read counts every data row of the file: rows_read == rows in frames[primary_table] +
    len(rejected) must hold (the loader checks).
    """

    source_system: str
    primary_table: str  # the table whose rows are the file's rows (deals for a deals export)
    rows_read: int
    frames: dict
    rejected: list
    warnings: list | None = None
    # A deals export is taken as a full export of every pipeline it has rows of (deals of those
    # pipelines it does not carry are flagged missing); a reader or caller that knows the export
    # is filtered (a saved view, "my deals") sets partial=True and nothing is flagged missing.
    partial: bool = False

    def __post_init__(self) -> None:
        # Text columns leave the readers as plain objects with None for missing: the raw tables
        # are Arrow-backed strings (pd.NA), and one null per column keeps frames comparable.
        for frame in self.frames.values():
            for col in frame.columns:
                if isinstance(frame[col].dtype, pd.StringDtype) or frame[col].dtype == object:
                    values = frame[col].to_numpy(dtype=object)
                    missing = pd.isna(values)
                    # Copied only when a null is not None yet (most columns of a reader's frame
                    # have None already: copying every column cost seconds on a 4M-row file).
                    if frame[col].dtype != object or any(v is not None for v in values[missing]):
                        values = values.copy()
                        values[missing] = None
                        frame[col] = values
