"""How a process opens the DuckDB warehouse.

DuckDB lets one process at a time write a database file (others cannot even read it then), and
inside one process every connection to the file must be opened with the same configuration
("Can't open a connection to same database file with a different configuration"). Hence:

- a run (the Dagster assets) opens the warehouse one way only, read-write, in short-lived
  connections that may nest (a nested connection shares the open database);
- a read command opens it read-only, and a process that finds the file locked by another one
  waits a few seconds (a run's steps release it between steps) before saying, in one line, who
  holds it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from voronka.errors import WarehouseBusyError

# A read command waits this long for a run to release the warehouse; a run's step waits longer
# for a reader (a report, an export) to finish.
READ_WAIT_SECONDS = 5.0
RUN_WAIT_SECONDS = 60.0
_POLL_SECONDS = 0.2
_HOLDER = re.compile(r"\(PID (\d+)\)")
T = TypeVar("T")


def is_lock_conflict(error: BaseException) -> bool:
    """DuckDB's error when another process holds the file's lock."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def open_warehouse(path: Path, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse at `path`; while another process holds its lock, retry for
    up to `wait_seconds`, then raise WarehouseBusyError naming the holder."""
    return retry_while_locked(lambda: duckdb.connect(str(path), read_only=read_only), path, wait_seconds)


def retry_while_locked(open_it: Callable[[], T], path: Path, wait_seconds: float) -> T:
    """open_it() (a connect, an ATTACH), retried while another process holds the lock of the
    warehouse at `path`; after `wait_seconds`, WarehouseBusyError naming the holder."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return open_it()
        except duckdb.IOException as err:
            if not is_lock_conflict(err):
                raise
            if time.monotonic() >= deadline:
                holder = _HOLDER.search(str(err))
                raise WarehouseBusyError(path, int(holder.group(1)) if holder else None, wait_seconds) from None
            time.sleep(_POLL_SECONDS)
