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
    acme, globex = Workspace(tmp_path / "acme"), Workspace(tmp_path / "globex")
    first = acme.workspace_id()
    assert len(first) == 32 and (tmp_path / "acme" / "workspace_id").read_text().strip() == first
    assert Workspace(tmp_path / "acme").workspace_id() == first  # read back, never rewritten
    assert globex.workspace_id() != first
    store = acme.model_store()
    assert store.workspace_id == first and store.root == acme.models_dir()


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
