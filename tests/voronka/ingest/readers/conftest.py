"""Shared helpers for the reader tests: fixture paths and a `read` that checks the contract
every reader owes the loader (rows_read == kept + rejected, canonical columns) on every call."""

from __future__ import annotations

from pathlib import Path

import pytest

from voronka.ingest.canonical import ROW_FLAG_NAMES, column_names
from voronka.ingest.readers import read_export

FIXTURES = Path(__file__).parent / "fixtures"
BAD_INPUTS = Path(__file__).parent / "bad_inputs"


def check_contract(export):
    primary = export.frames[export.primary_table]
    # Rows derived from other rows (`_derived`, e.g. creation events of a history) are not file rows.
    derived = int(primary["_derived"].eq(True).sum()) if "_derived" in primary else 0
    assert export.rows_read == len(primary) - derived + len(export.rejected)
    for table, frame in export.frames.items():
        if table in ("deals", "stage_events", "pipeline_stages"):
            expected = [c for c in column_names(table) if c != "export_file"]
            # Deals may carry the row flags a reader sets (the close compared with the creation
            # by day in the source's time zone); the loader sets the rest.
            columns = [c for c in frame.columns if not c.startswith("_") and c not in ROW_FLAG_NAMES]
            assert columns == expected, table
            if table == "deals":
                for flag in set(frame.columns) & set(ROW_FLAG_NAMES):
                    assert frame[flag].notna().all() and frame[flag].isin([True, False]).all(), flag
    for row in export.rejected:
        assert row.row_number >= 1 and row.reason
    return export


@pytest.fixture
def read():
    def _read(path, **kwargs):
        return check_contract(read_export(Path(path), **kwargs))
    return _read


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
