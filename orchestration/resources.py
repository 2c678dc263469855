"""Dagster resources: the workspace (paths, config, warehouse connection, as-of time)."""


from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator, Optional

import dagster as dg
import duckdb

from voronka.config import VoronkaConfig, Workspace
from voronka.ingest.warehouse import ensure_raw_schema
from voronka.warehouse_access import RUN_WAIT_SECONDS, open_warehouse
from voronka.warehouse_reads import newest_data_time


class WorkspaceResource(dg.ConfigurableResource):
    """Where the workspace lives and, optionally, the time the run is analysed as of."""

    home: str
    as_of: Optional[str] = None  # ISO date/time; default: the newest data in the warehouse

    @property
    def workspace(self) -> Workspace:
        return Workspace(Path(self.home))

    def config(self) -> VoronkaConfig:
        return self.workspace.config()

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection for one step: dbt runs as a separate process between steps,
        and DuckDB allows one writing process at a time. Always read-write: in one process every
        connection to the file must share one configuration, so a step that reads must not open
        it read-only while a helper it calls (as_of_time) connects too. Connections may nest."""
        self.workspace.create()
        con = open_warehouse(self.workspace.warehouse, read_only=False, wait_seconds=RUN_WAIT_SECONDS)
        try:
            ensure_raw_schema(con)
            yield con
        finally:
            con.close()

    def as_of_time(self) -> datetime:
        if self.as_of:
            return datetime.fromisoformat(self.as_of)
        with self.connect() as con:
            return newest_data_time(con)
