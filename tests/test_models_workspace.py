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
    assert lines == ["Models: win_model: the stage baseline scores the deals (not promoted: short "
                     "history: 9 training examples; the stage win rate scores)"]
