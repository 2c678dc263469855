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


def test_a_passed_dbt_test_stores_nothing_and_one_that_warned_is_named():
    import dagster as dg

    from orchestration.assets.dbt import not_passed_test

    def result(status):
        return dg.AssetObservation(asset_key=["fct_deals"], metadata={
            "status": status, "unique_id": "test.voronka.not_null_fct_deals_deal_key.1a2b3c"})

    assert not_passed_test(result("pass")) is None
    warned = not_passed_test(result("warn"))
    assert warned.metadata["dbt_test"].value == "not_null_fct_deals_deal_key (warn)"
    assert warned.metadata["status"].value == "warn"


def test_the_daily_build_leaves_unit_tests_out_and_checks_no_test_one_by_one():
    from orchestration.assets.dbt import voronka_dbt_models

    assert not voronka_dbt_models.check_keys  # tests are observations (see orchestration/assets/dbt.py)
    assert voronka_dbt_models.op.tags.get("dagster_dbt/exclude") == "resource_type:unit_test"
