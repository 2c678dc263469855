"""The dbt project as Dagster assets: staging → intermediate → marts, tests as asset checks."""


import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from orchestration.resources import WorkspaceResource

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


def prepared_dbt_project() -> DbtProject:
    """The one DbtProject; its manifest is prepared (dbt parse) when stale or in `dagster dev`."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR)
    if os.getenv("DAGSTER_IS_DEV_CLI") or manifest_is_stale(DBT_PROJECT_DIR, project.manifest_path):
        DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE).cli(
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


def dbt_vars(as_of: str, reporting_currency: str) -> str:
    return json.dumps({"as_of": as_of, "reporting_currency": reporting_currency})


@dbt_assets(manifest=voronka_dbt.manifest_path, project=voronka_dbt,
            dagster_dbt_translator=VoronkaDbtTranslator())
def voronka_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                       workspace: WorkspaceResource):
    config = workspace.config()
    as_of = workspace.as_of_time().strftime("%Y-%m-%d %H:%M:%S")
    # dbt runs as a subprocess that inherits this environment; the profile reads the path here.
    os.environ["VORONKA_WAREHOUSE"] = str(workspace.workspace.warehouse)
    context.log.info(f"dbt build as of {as_of} in {config.reporting_currency}")
    yield from dbt.cli(["build", "--vars", dbt_vars(as_of, config.reporting_currency)],
                       context=context).stream()
