"""dbt in-process for the tests (tests/dbt_project and the round trip of native exports through
dbt): on a given warehouse file, its target/ and logs/ under a temporary folder. On the tests'
path through `pythonpath` in pyproject.toml (the one shared helper module)."""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.cli.main import dbtRunner

PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"


@dataclass
class DbtRun:
    warehouse: Path
    target: Path
    success: bool
    exception: BaseException | None
    statuses: dict  # unique_id -> status, for the nodes dbt ran


def invoke_dbt(command: list[str], warehouse: Path, work: Path, **vars_) -> DbtRun:
    """dbt in-process on `warehouse`; its target/ and logs/ go under `work`, never into the repo."""
    target = work / "target"
    args = [*command, "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
            "--target-path", str(target), "--log-path", str(work / "logs"), "--quiet"]
    if vars_:
        args += ["--vars", json.dumps(vars_)]
    previous = os.environ.get("VORONKA_WAREHOUSE")
    os.environ["VORONKA_WAREHOUSE"] = str(warehouse)
    try:
        result = dbtRunner().invoke(args)
    finally:
        # dbt-duckdb keeps its database open in-process; release it so tests can open the file.
        DuckDBConnectionManager.close_all_connections()
        gc.collect()
        if previous is None:
            os.environ.pop("VORONKA_WAREHOUSE", None)
        else:
            os.environ["VORONKA_WAREHOUSE"] = previous
    results = getattr(result.result, "results", None) or []
    return DbtRun(warehouse, target, result.success, result.exception,
                  {r.node.unique_id: str(r.status) for r in results})
