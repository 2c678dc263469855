"""Great Expectations suites on the raw tables as asset checks: integrity suites block the dbt
assets downstream when they fail, plausibility suites warn (voronka/quality/suites.py)."""


import dagster as dg

from orchestration.assets.ingest import RAW_KEYS
from orchestration.resources import WorkspaceResource
from voronka.quality import SUITES, SuiteResult, validate_new


def _check_result(result: SuiteResult) -> dg.AssetCheckResult:
    failed = result.failed
    return dg.AssetCheckResult(
        asset_key=RAW_KEYS[result.table],
        check_name=result.suite,
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR if result.blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "rows_checked": result.rows_checked,
            "expectations": len(result.expectations),
            "expectations_failed": len(failed),
            "failed_rows": result.failed_rows,
            "failed_rows_by_expectation": dg.MetadataValue.json({e.label: e.failed_rows for e in failed}),
            "examples": dg.MetadataValue.json({e.label: e.examples for e in failed}),
            "seconds": result.seconds,
        },
    )


def _table_checks(table: str) -> dg.AssetChecksDefinition:
    suites = [s for s in SUITES if s.table == table]

    @dg.multi_asset_check(
        name=f"{table}_quality",
        specs=[dg.AssetCheckSpec(s.name, asset=RAW_KEYS[table], blocking=s.blocking,
                                 description=s.description) for s in suites],
    )
    def _check(workspace: WorkspaceResource):
        with workspace.connect() as con:
            # Only the rows changed since the suites last passed (voronka/quality/batch.py).
            results = validate_new(con, table)
        for result in results:
            yield _check_result(result)

    return _check


raw_quality_checks = [_table_checks(table) for table in dict.fromkeys(s.table for s in SUITES)]
