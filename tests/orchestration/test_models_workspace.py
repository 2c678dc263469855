"""Models belong to their workspace: the store lives inside it by default, the workspace has an
identity written once, and the Dagster wiring never scores with another workspace's model."""

from __future__ import annotations

import dagster as dg
import pytest

from ml.registry import ModelStore, promote_if_not_worse
from voronka.config import Workspace

GOOD_WIN = {"auc": 0.80, "baseline_auc": 0.72, "brier": 0.17, "baseline_brier": 0.19}


def test_the_store_defaults_to_models_inside_the_workspace(tmp_path):
    ws = Workspace(tmp_path / "acme").create()
    assert ws.models_dir() == tmp_path / "acme" / "models"
    shared = tmp_path / "shared_models"
    ws.config_path.write_text(f"models_dir: {shared}\n", encoding="utf-8")
    assert ws.models_dir() == shared  # voronka.yaml still moves it
    ws.config_path.write_text("models_dir: store\n", encoding="utf-8")
    assert ws.models_dir() == tmp_path / "acme" / "store"  # relative to the workspace


def test_a_workspace_id_is_written_once_and_differs_between_workspaces(tmp_path):
    acme, globex = Workspace(tmp_path / "acme").create(), Workspace(tmp_path / "globex").create()
    first = acme.workspace_id()
    assert len(first) == 32 and (tmp_path / "acme" / "workspace_id").read_text().strip() == first
    assert Workspace(tmp_path / "acme").workspace_id() == first  # read back, never rewritten
    assert globex.workspace_id() != first
    store = acme.model_store()
    assert store.workspace_id == first and store.root == acme.models_dir()
    # A mistyped --workspace of a read command is not created; its store is empty.
    typo = Workspace(tmp_path / "acmee")
    assert typo.model_store().current_version("win_model") is None and not typo.home.exists()


def test_a_shared_store_never_gives_one_workspace_the_others_model(tmp_path):
    """The defect of issue 13: one company scored with another company's model. Two
    workspaces point models_dir at one folder; the second finds no model of its own and the
    deal scores are told so (and fall back to its own stage baselines)."""
    from orchestration.assets.models import _load_in_use

    shared = tmp_path / "shared"
    acme, globex = Workspace(tmp_path / "acme").create(), Workspace(tmp_path / "globex").create()
    for ws in (acme, globex):
        ws.config_path.write_text(f"models_dir: {shared}\n", encoding="utf-8")
    promote_if_not_worse(acme.model_store(), "win_model", "acme's model", GOOD_WIN)
    assert _load_in_use(acme.model_store(), "win_model")[0] == "acme's model"
    with pytest.raises(dg.Failure, match="trained on another workspace's data"):
        _load_in_use(globex.model_store(), "win_model")
    assert ModelStore(shared).versions("win_model")  # still there, for acme


def test_a_short_history_run_says_why_in_one_line_and_exits_0(tmp_path, capsys):
    """Short history is no failed run, even with --fail-on-check: one line says why the stage
    baseline scores."""
    from types import SimpleNamespace

    from ml.registry import usage_notes
    from voronka.cli import _exit_for_checks

    ws = Workspace(tmp_path / "young").create()
    promote_if_not_worse(ws.model_store(), "win_model", "stage baseline only",
                         {"fallback": "short history: 9 training examples; the stage win rate scores"})
    outcome = {"checks_failed": [], "model_notes": usage_notes(ws.model_store(), ("win_model",))}
    assert _exit_for_checks(outcome, SimpleNamespace(quiet=False, fail_on_check=True)) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines == [("Models: win_model: the stage baseline scores the deals (not promoted: short "
                      "history: 9 training examples; the stage win rate scores)")]


def test_a_young_org_trains_without_failing_and_the_gate_check_says_why(tmp_path, monkeypatch):
    """The trained_models asset on a young org (120 deals over three months, frames given
    directly): the run succeeds, the win model's gate check passes with the short-history
    reason, the stored version is not promoted and records this workspace."""
    from datetime import date

    import duckdb

    import orchestration.assets.models as model_assets
    from orchestration.resources import WorkspaceResource
    from voronka.simulator.company import simulate_company
    from voronka.simulator.ml_frames import ml_frames

    young = ml_frames(simulate_company(n_deals=120, seed=3, end_date=date(2026, 6, 30), years=0.25))
    frames = {k: young[k] for k in ("deals", "stage_events", "pipeline_stages")}
    monkeypatch.setattr(model_assets, "canonical_frames", lambda con, as_of, **columns: frames)
    ws = Workspace(tmp_path / "young").create()
    duckdb.connect(str(ws.warehouse)).close()
    result = dg.materialize([model_assets.trained_models], raise_on_error=False,
                            resources={"workspace": WorkspaceResource(home=str(ws.home),
                                                                      as_of="2026-06-30T23:59:59")})
    checks = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    # The time-to-close model may pass or fail its own gate on so little data (a failed blocking
    # check is the runner's business: GATE_CHECKS); the short history of the win model never fails.
    assert result.success or not checks["time_to_close_model"].passed
    win = checks["win_model"]
    assert win.passed and win.metadata["reason"].value.startswith("not promoted: short history")
    store = ws.model_store()
    assert store.current_version("win_model") is None
    card = store.card("win_model", store.versions("win_model")[-1])
    assert card["workspace_id"] == ws.workspace_id() and card["features"] == ["pipeline", "pipeline_stage"]
    materialized = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert "short history" in materialized["win_model"].materialization.metadata["fallback"].value
