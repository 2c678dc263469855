"""Data quality of the raw tables: Great Expectations suites (GX Core 1.x) run on what the marts
will read. A plain library: no Dagster here (orchestration/assets/quality.py runs the suites as
asset checks)."""

from voronka.quality.batch import validate_new
from voronka.quality.suites import SUITES, TABLE_QUERIES, Suite
from voronka.quality.validate import (
           ExpectationOutcome,
           SuiteResult,
           validate,
           validate_frames,
)

__all__ = ["SUITES", "TABLE_QUERIES", "Suite", "ExpectationOutcome", "SuiteResult", "validate",
           "validate_frames", "validate_new"]
