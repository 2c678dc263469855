"""The dbt manifest Dagster reads is rebuilt when a file of the dbt project is newer than it:
a stale manifest names models that no longer exist, or misses new ones (a KeyError mid-run)."""

from __future__ import annotations

import os

from orchestration.assets.dbt import manifest_is_stale


def _touch(path, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x", encoding="utf-8")
    os.utime(path, (mtime, mtime))


def test_missing_newer_and_fresh_manifests(tmp_path):
    project, manifest = tmp_path / "dbt_project", tmp_path / "dbt_project" / "target" / "manifest.json"
    _touch(project / "dbt_project.yml", 1_000)
    _touch(project / "models" / "staging" / "stg_a.sql", 1_000)
    assert manifest_is_stale(project, manifest)  # missing
    _touch(manifest, 2_000)
    assert not manifest_is_stale(project, manifest)  # every file older
    _touch(project / "macros" / "new_macro.sql", 3_000)
    assert manifest_is_stale(project, manifest)  # a macro edited after the parse
    _touch(manifest, 4_000)
    _touch(project / "models" / "marts" / "new_model.yml", 5_000)
    assert manifest_is_stale(project, manifest)  # a new model's yml
