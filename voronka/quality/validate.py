"""Run the suites with Great Expectations (GX Core 1.x): an ephemeral context (nothing written,
no analytics), a pandas data source with one dataframe asset and batch definition per raw table,
and one validation definition per suite, run on the table's frame from the warehouse."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable

import duckdb
import pandas as pd

from voronka.quality.suites import (
    CATEGORICAL,
    INDEX_COLUMNS,
    SUITES,
    TABLE_QUERIES,
    Suite,
)

EXAMPLES = 5  # failing rows shown per expectation


@dataclass
class ExpectationOutcome:
    label: str
    success: bool
    failed_rows: int
    examples: list = field(default_factory=list)  # the failing rows' index columns and values
    # With validate_frames(..., all_failing=True): the deal_key of every failing row.
    failing_deals: list = field(default_factory=list, repr=False)


@dataclass
class SuiteResult:
    suite: str
    table: str
    blocking: bool
    success: bool
    rows_checked: int
    expectations: list
    seconds: float  # of the table's validation (all its suites run as one)

    @property
    def failed(self) -> list:
        return [e for e in self.expectations if not e.success]

    @property
    def failed_rows(self) -> int:
        """Row failures: a row failing two expectations counts twice."""
        return sum(e.failed_rows for e in self.failed)


def validate(con: duckdb.DuckDBPyConnection, tables: Iterable[str] | None = None) -> list[SuiteResult]:
    """Run every suite on the given raw tables (default: all) of the warehouse."""
    chosen = [s for s in SUITES if tables is None or s.table in set(tables)]
    frames = {t: frame_of(con, t) for t in dict.fromkeys(s.table for s in chosen)}
    return validate_frames(frames, chosen)


def frame_of(con: duckdb.DuckDBPyConnection, table: str, query: str | None = None,
             params: list | None = None) -> pd.DataFrame:
    """The frame the table's suites read: TABLE_QUERIES[table], or a query selecting some of its
    rows (voronka/quality/batch.py)."""
    frame = con.execute(query or TABLE_QUERIES[table], params or []).df()
    for column in frame.columns[[pd.api.types.is_datetime64_any_dtype(t) for t in frame.dtypes]]:
        # GX compares datetime64[ns] vectorised, other resolutions row by row in Python.
        frame[column] = frame[column].astype("datetime64[ns]")
    for column in CATEGORICAL.get(table, ()):
        # Unsorted categories: sorting millions of strings is the slow part of astype("category").
        codes, uniques = pd.factorize(frame[column], use_na_sentinel=True)
        frame[column] = pd.Categorical.from_codes(codes, categories=uniques)
    return frame


def validate_frames(frames: dict[str, pd.DataFrame], suites: list[Suite] | None = None,
                    all_failing: bool = False) -> list[SuiteResult]:
    """Run suites on frames shaped like TABLE_QUERIES' (one per table the suites check);
    all_failing: also name the deal of every failing row (ExpectationOutcome.failing_deals).

    The suites of one table run as one GX validation (GX reads and fingerprints a batch once per
    run, which dominates at millions of rows); the results are split back into the suites."""
    gx, context = _ephemeral_context()
    source = context.data_sources.add_pandas("raw")
    by_table: dict[str, list[Suite]] = {}
    for suite in suites or SUITES:
        by_table.setdefault(suite.table, []).append(suite)
    results = []
    for table, table_suites in by_table.items():
        frame = frames[table]
        started = time.perf_counter()
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("whole table")
        labelled = {s.name: s.expectations() for s in table_suites}
        for name, pairs in labelled.items():
            for label, expectation in pairs:
                expectation.meta = {"suite": name, "label": label}
        gx_suite = context.suites.add(gx.ExpectationSuite(
            name=table, expectations=[e for pairs in labelled.values() for _, e in pairs]))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch, suite=gx_suite))
        index = [c for c in INDEX_COLUMNS[table] if c in frame.columns]
        run = definition.run(batch_parameters={"dataframe": frame}, result_format={
            "result_format": "COMPLETE" if all_failing else "SUMMARY", "partial_unexpected_count": EXAMPLES,
            "unexpected_index_column_names": index, "return_unexpected_index_query": False,
        })
        seconds = round(time.perf_counter() - started, 3)
        outcomes = {}
        for result in run.results:
            meta = result.expectation_config.meta
            if result.exception_info and result.exception_info.get("raised_exception"):
                raise RuntimeError(f"expectation {meta['label']!r} of {meta['suite']} could not run: "
                                   f"{result.exception_info.get('exception_message')}")
            details = result.result or {}
            failing = details.get("partial_unexpected_index_list") or []
            outcomes[(meta["suite"], meta["label"])] = ExpectationOutcome(
                label=meta["label"], success=bool(result.success),
                failed_rows=int(details.get("unexpected_count") or 0),
                examples=[_plain(row) for row in failing[:EXAMPLES]],
                failing_deals=[row.get("deal_key") for row in details.get("unexpected_index_list") or []
                               if isinstance(row, dict)] if all_failing else [],
            )
        for suite in table_suites:
            ordered = [outcomes[(suite.name, label)] for label, _ in labelled[suite.name]]
            results.append(SuiteResult(
                suite=suite.name, table=table, blocking=suite.blocking,
                success=all(o.success for o in ordered), rows_checked=len(frame), expectations=ordered,
                seconds=seconds,
            ))
    return results


def _ephemeral_context():
    """A GX context that lives in memory only: no files, no progress bars, no usage statistics."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
    )
    return gx, gx.get_context(mode="ephemeral", project_config=config)


def _plain(row: dict) -> dict:
    """JSON-friendly values for metadata: text, numbers, None."""
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and value != value):
            out[key] = None
        elif isinstance(value, (list, tuple)):
            out[key] = [None if pd.isna(v) else str(v) for v in value]
        elif hasattr(value, "item") and not isinstance(value, (str, bytes)):
            out[key] = str(value) if "datetime" in type(value).__name__.lower() else value.item()
        elif isinstance(value, (str, int, float, bool)):
            out[key] = value
        else:
            out[key] = None if pd.isna(value) else str(value)
    return out
