"""The dbt project as Dagster assets: staging → intermediate → marts, tests as asset checks."""


import hashlib
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from orchestration.resources import WorkspaceResource
from voronka import progress
from voronka.warehouse_access import RUN_WAIT_SECONDS, open_warehouse

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


# The dbt installed beside this Python (the venv's), so nothing depends on PATH being activated.
DBT_EXECUTABLE = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"


def manifest_is_stale(project_dir: Path, manifest: Path) -> bool:
    """The manifest is missing or older than a file of the project (a model edited, a Voronka
    update pulled): a stale one names models that no longer exist, or misses new ones."""
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "tests"):
        sources += [p for p in (project_dir / folder).rglob("*") if p.is_file()]
    return any(p.exists() and p.stat().st_mtime > built for p in sources)


class VoronkaDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without the dbt adapter it loads into the run's process before each
    command: only its fetch_row_counts / fetch_column_metadata use it, and Voronka counts rows
    itself (with_row_counts). Loading dbt's project and adapter here cost ~7 s a build at 5k."""

    def _initialize_dbt_core_adapter(self, args):  # dagster-dbt 0.29: optional, None = no adapter
        return None


def prepared_dbt_project() -> DbtProject:
    """The one DbtProject; its manifest is prepared (dbt parse) when stale or in `dagster dev`."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR)
    if os.getenv("DAGSTER_IS_DEV_CLI") or manifest_is_stale(DBT_PROJECT_DIR, project.manifest_path):
        VoronkaDbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE).cli(
            ["parse", "--quiet"], target_path=project.target_path).wait()
    return project


voronka_dbt = prepared_dbt_project()


class VoronkaDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        path = dbt_resource_props.get("original_file_path", "")
        for layer in ("staging", "intermediate", "marts"):
            if f"/{layer}/" in path:
                return f"dbt_{layer}"
        return "dbt"

    def get_owners(self, dbt_resource_props: Mapping[str, Any]):
        # Owners set in the dbt project (meta or group) win; else the analytics engineers.
        return super().get_owners(dbt_resource_props) or ["team:analytics-engineering"]


# The run's settings and the last build's fingerprint live in the warehouse beside the marts
# (schema voronka_run): macros/as_of.sql reads the settings while dbt executes.
RUN_SCHEMA = "voronka_run"


def write_run_settings(con, as_of: str, reporting_currency: str) -> None:
    """The as_of and reporting currency of the coming build, as data (not as dbt vars, which
    would make dbt parse the whole project again whenever they change: every day)."""
    con.execute(f"create schema if not exists {RUN_SCHEMA}")
    con.execute(f"create or replace table {RUN_SCHEMA}.settings (as_of varchar, reporting_currency varchar)")
    con.execute(f"insert into {RUN_SCHEMA}.settings values (?, ?)", [as_of, reporting_currency])


def clear_run_settings(con) -> None:
    """After the build: a `dbt build` by hand is again as of the newest raw data (or its vars)."""
    con.execute(f"drop table if exists {RUN_SCHEMA}.settings")


def project_hash(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """The content of every file that shapes what dbt builds (not target/ or logs/)."""
    digest = hashlib.sha256()
    files = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "tests", "seeds", "snapshots"):
        files += sorted(p for p in (project_dir / folder).rglob("*") if p.is_file())
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_fingerprint(con, as_of: str, reporting_currency: str) -> str:
    """What the marts are a function of: every load of raw data (raw.ingest_log: a file loaded
    is a new row, a reload a no-op), the raw tables' row counts (a belt to those braces), the
    as_of, the reporting currency and the dbt project itself."""
    # The raw tables dbt reads (its sources), not the loader's and checks' bookkeeping beside them.
    present = {t for (t,) in con.execute(
        "select table_name from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'raw'").fetchall()}
    counts = {t: con.execute(f'select count(*) from raw."{t}"').fetchone()[0]
              for t in sorted(raw_sources() & present)}
    log = con.execute("select * from raw.ingest_log order by all").fetchall() if "ingest_log" in present else []
    state = {"as_of": as_of, "reporting_currency": reporting_currency, "project": project_hash(),
             "raw_counts": counts, "ingest_log": [[str(v) for v in row] for row in log]}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def raw_sources() -> set[str]:
    """The raw.* tables the dbt project declares as sources."""
    manifest = json.loads(voronka_dbt.manifest_path.read_text(encoding="utf-8"))
    return {node["name"] for node in manifest["sources"].values() if node["source_name"] == "raw"}


def record_build(con, fingerprint: str, as_of: str, reporting_currency: str) -> None:
    con.execute(f"create schema if not exists {RUN_SCHEMA}")
    con.execute(f"create or replace table {RUN_SCHEMA}.last_build "
                "(fingerprint varchar, as_of varchar, reporting_currency varchar, built_at timestamp)")
    con.execute(f"insert into {RUN_SCHEMA}.last_build values (?, ?, ?, now()::timestamp)",
                [fingerprint, as_of, reporting_currency])


def marts_are_current(con, as_of: str, reporting_currency: str) -> bool:
    """The last successful build had this very fingerprint and its tables are all still there:
    a build now would rebuild the same marts."""
    present = {(r[0], r[1]) for r in con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database()").fetchall()}
    if (RUN_SCHEMA, "last_build") not in present:
        return False
    if any((schema, name) not in present for name, schema in table_models().items()):
        return False
    last = con.execute(f"select fingerprint from {RUN_SCHEMA}.last_build").fetchone()
    return last is not None and last[0] == build_fingerprint(con, as_of, reporting_currency)


def dbt_target_path(workspace: WorkspaceResource) -> Path:
    """One target folder per workspace, the same every run, so dbt parses only what changed
    (partial parsing); dagster-dbt's default is a new folder per run, i.e. a full parse."""
    return workspace.workspace.home / "dbt_target"


# Unit tests check the models' logic, not the data: the test suite runs them
# (tests/dbt_project), the daily build does not.
DAILY_EXCLUDE = "resource_type:unit_test"


# dbt's data tests are not one Dagster asset check each: 213 checks were ~430 events (planned,
# evaluated), each stored on its own in the instance's SQLite, most of the Dagster time of a build.
# dbt still runs them: an error-severity failure fails the build, and a test that does not pass
# is kept as an observation on its model (the runner lists it with the failed checks).
TRANSLATOR = VoronkaDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=False))


@dbt_assets(manifest=voronka_dbt.manifest_path, project=voronka_dbt, exclude=DAILY_EXCLUDE,
            dagster_dbt_translator=TRANSLATOR)
def voronka_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                       workspace: WorkspaceResource):
    config = workspace.config()
    as_of = workspace.as_of_time().strftime("%Y-%m-%d %H:%M:%S")
    warehouse = workspace.workspace.warehouse
    with workspace.connect() as con:
        write_run_settings(con, as_of, config.reporting_currency)
        fingerprint = build_fingerprint(con, as_of, config.reporting_currency)
    # dbt runs as a subprocess that inherits this environment; the profile reads the path here.
    os.environ["VORONKA_WAREHOUSE"] = str(warehouse)
    context.log.info(f"dbt build as of {as_of} in {config.reporting_currency}")
    invocation = dbt.cli(["build"], context=context, target_path=dbt_target_path(workspace))
    # One step per model built and per test result (one per model a test reads).
    total = len(context.selected_asset_keys) + test_observation_count()
    built = False
    try:
        with progress.task("dbt build", total=total) as bar:
            def advancing():
                for event in invocation.stream():
                    if isinstance(event, (dg.Output, dg.AssetMaterialization, dg.AssetObservation)):
                        bar.advance(note=_event_name(event))
                    if isinstance(event, dg.AssetObservation):
                        event = not_passed_test(event)
                    if event is not None:
                        yield event

            yield from with_row_counts(advancing(), context, warehouse, table_models())
        built = invocation.is_successful()
    finally:
        with workspace.connect() as con:
            clear_run_settings(con)
            # Only a whole build that succeeded makes the marts current (a subset is not all).
            if built and not context.is_subset:
                record_build(con, fingerprint, as_of, config.reporting_currency)


def table_models() -> dict[str, str]:
    """dbt model name -> schema, for the models materialised as tables (views are not counted:
    counting one runs its query)."""
    manifest = json.loads(voronka_dbt.manifest_path.read_text(encoding="utf-8"))
    return {node["name"]: node["schema"] for node in manifest["nodes"].values()
            if node["resource_type"] == "model" and node["config"].get("materialized") in ("table", "incremental")}


def test_observation_count() -> int:
    """The test results dagster-dbt reports in a daily build: one per model a data test reads."""
    manifest = json.loads(voronka_dbt.manifest_path.read_text(encoding="utf-8"))
    return sum(len(node["depends_on"]["nodes"]) for node in manifest["nodes"].values()
               if node["resource_type"] == "test")


# dbt's statuses of a test that passed (or did not run: a failed upstream model says why).
PASSED_TEST_STATUSES = {"pass", "success", "skipped"}


def not_passed_test(observation: dg.AssetObservation) -> dg.AssetObservation | None:
    """A dbt test's result: None when it passed (nothing to store), else the observation with
    the test's name in `dbt_test` (what the runner lists)."""
    status = observation.metadata.get("status")
    status = getattr(status, "value", status)
    if status in PASSED_TEST_STATUSES:
        return None
    unique_id = observation.metadata.get("unique_id")
    unique_id = str(getattr(unique_id, "value", unique_id) or "")
    name = unique_id.split(".")[2] if unique_id.count(".") >= 2 else unique_id
    return observation.with_metadata({**observation.metadata, "dbt_test": f"{name} ({status})"})


def with_row_counts(events, context: dg.AssetExecutionContext, warehouse: Path, tables: dict[str, str]):
    """The events with `dagster/row_count` on each table model's materialisation.

    DuckDB has one writer and dbt holds the file until it exits, so the events are gathered
    first and counted afterwards (the UI sees them at the end; the progress bar moves live). A
    failing build still hands over what it built before raising. (dagster-dbt's own
    fetch_row_counts reads the relation names parsed into the manifest, which name the database
    of the parse, not the workspace's warehouse.)"""
    gathered, failure = [], None
    try:
        gathered.extend(events)
    except Exception as err:  # the build failed: report what it built, then fail
        failure = err
    names = {}
    for event in gathered:
        if isinstance(event, dg.Output):
            names[id(event)] = context.asset_key_for_output(event.output_name).path[-1]
        elif isinstance(event, dg.AssetMaterialization):
            names[id(event)] = event.asset_key.path[-1]
    counts = {}
    if warehouse.exists() and any(name in tables for name in names.values()):
        # The run's one way of opening the warehouse (voronka/warehouse_access.py).
        with open_warehouse(warehouse, read_only=False, wait_seconds=RUN_WAIT_SECONDS) as con:
            present = {(r[0], r[1]) for r in con.execute(
                "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
            ).fetchall()}
            for name in set(names.values()):
                if (tables.get(name), name) in present:
                    counts[name] = con.execute(f'select count(*) from "{tables[name]}"."{name}"').fetchone()[0]
    for event in gathered:
        name = names.get(id(event))
        yield event.with_metadata({**event.metadata, "dagster/row_count": counts[name]}) if name in counts else event
    if failure is not None:
        raise failure


def _event_name(event) -> str:
    if isinstance(event, dg.AssetObservation):
        return f"tests of {event.asset_key.to_user_string()}"
    key = getattr(event, "asset_key", None)
    return key.to_user_string() if key is not None else event.output_name
