"""The model store: atomic versions, model cards, and the promotion gate."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml import registry
from ml.registry import (
    ForeignModelError,
    ModelNotFoundError,
    ModelStore,
    check_gate,
    promote_if_not_worse,
    usage_notes,
)
from ml.win_model import WinModel, evaluate_win_model

ROOT = Path(__file__).resolve().parents[2]
GOOD_WIN = {"auc": 0.80, "baseline_auc": 0.72, "brier": 0.17, "baseline_brier": 0.19,
            "n_train": 100, "n_test": 50, "train_from": "2024-01-01", "train_to": "2026-01-01"}


def test_a_version_holds_the_artifact_and_a_model_card(tmp_path):
    store = ModelStore(tmp_path / "models")
    frame = pd.DataFrame({"x": [1.0, 2.0], "c": pd.Categorical(["a", "b"])})
    result = promote_if_not_worse(store, "win_model", {"weights": [1, 2]}, GOOD_WIN,
                                  examples=frame, features=["x", "c"], params={"seed": 0})
    assert result.promoted and result.in_use == result.version
    folder = tmp_path / "models" / "win_model" / result.version
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "card.md", "model.joblib"]
    card = json.loads((folder / "card.json").read_text())
    assert card["metrics"]["auc"] == 0.80 and card["baseline_metrics"]["auc"] == 0.72
    assert card["training_window"] == {"train_from": "2024-01-01", "train_to": "2026-01-01"}
    assert card["rows"] == {"n_train": 100, "n_test": 50, "examples": 2}
    assert card["features"] == ["x", "c"]
    assert card["data_fingerprint"] == registry.data_fingerprint(frame)
    assert set(card["library_versions"]) >= {"scikit-learn", "lifelines", "pandas", "numpy"}
    assert "| auc | 0.8 | 0.72 |" in (folder / "card.md").read_text()
    artifact, loaded_card = store.load("win_model")
    assert artifact == {"weights": [1, 2]} and loaded_card["version"] == result.version


def test_the_fingerprint_changes_with_the_data():
    a = pd.DataFrame({"x": [1.0, 2.0]})
    assert registry.data_fingerprint(a) == registry.data_fingerprint(a.copy())
    assert registry.data_fingerprint(a) != registry.data_fingerprint(pd.DataFrame({"x": [1.0, 2.5]}))
    assert registry.data_fingerprint(a) != registry.data_fingerprint(pd.DataFrame({"y": [1.0, 2.0]}))


def test_a_save_that_fails_midway_leaves_no_version(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    first = store.save("win_model", "v1", {"name": "win_model"}, promoted=True)

    def broken_render(card):
        raise OSError("disk full")

    monkeypatch.setattr(registry, "render_card", broken_render)
    with pytest.raises(OSError, match="disk full"):
        store.save("win_model", "v2", {"name": "win_model"}, promoted=True)
    assert store.versions("win_model") == [first]
    assert [p.name for p in (tmp_path / "win_model").iterdir()] == [first]  # temp dir removed
    assert store.load("win_model")[0] == "v1"


def test_a_crash_midway_is_never_loaded(tmp_path):
    """A real crash: the process dies (os._exit) after the artifact is written."""
    store = ModelStore(tmp_path)
    first = store.save("win_model", "v1", {"name": "win_model"}, promoted=True)
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from ml import registry
        def die(card):
            os._exit(3)
        registry.render_card = die
        registry.ModelStore({str(tmp_path)!r}).save("win_model", "v2", {{}}, promoted=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert done.returncode == 3
    leftovers = [p for p in (tmp_path / "win_model").iterdir() if p.name != first]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")
    assert (leftovers[0] / "model.joblib").exists()  # it did get half way
    assert store.versions("win_model") == [first]
    assert store.load("win_model")[0] == "v1"
    # A version directory without its card (say, copied in by hand, half done) is skipped too.
    (tmp_path / "win_model" / "99999999T000000000000Z-aaaaaa").mkdir()
    assert store.current_version("win_model") == first


def test_the_gate_blocks_a_degraded_win_model(tmp_path, examples):
    """Trained on shuffled labels, the model is worse than the stage baseline: it is stored
    for the record, not promoted, and the previous version stays in use."""
    store = ModelStore(tmp_path)
    small = examples[examples["as_of"] >= examples["as_of"].quantile(0.4)]
    split = small["as_of"].quantile(0.7).normalize()
    good = evaluate_win_model(small, split, maturity_days=30)
    first = promote_if_not_worse(store, "win_model", "good model", good, examples=small)
    assert first.promoted, first.reason

    # The degraded model learns from shuffled labels; it is scored against the real outcomes on
    # the same hold-out.
    bad = evaluate_win_model(small, split, model=ShuffledLabels(random_state=0), maturity_days=30)
    assert bad["auc"] < bad["baseline_auc"]
    second = promote_if_not_worse(store, "win_model", "bad model", bad, examples=small)
    assert not second.promoted
    assert "auc" in second.reason and "worse" in second.reason
    assert second.in_use == first.version
    assert store.load("win_model")[0] == "good model"
    assert store.versions("win_model") == [first.version, second.version]
    assert store.card("win_model", second.version)["gate"]["promoted"] is False


class ShuffledLabels(WinModel):
    """A deliberately degraded win model: it trains on the labels in a random order."""

    def fit(self, X, y, sample_time=None, groups=None):
        y = np.random.default_rng(0).permutation(np.asarray(y))
        return super().fit(X, y, sample_time, groups)


def test_the_gate_blocks_a_survival_model_below_its_baseline(tmp_path):
    store = ModelStore(tmp_path)
    good = {"c_index": 0.80, "baseline_c_index": 0.77, "ibs": 0.13, "baseline_ibs": 0.15}
    bad = {"c_index": 0.74, "baseline_c_index": 0.77, "ibs": 0.12, "baseline_ibs": 0.15}
    first = promote_if_not_worse(store, "time_to_close_model", "good", good)
    second = promote_if_not_worse(store, "time_to_close_model", "bad", bad)
    assert first.promoted and not second.promoted
    assert "c_index 0.7400 vs baseline 0.7700 (worse)" in second.reason
    assert store.load("time_to_close_model")[0] == "good"
    with pytest.raises(ModelNotFoundError):
        store.load("win_model")


def test_gate_rules():
    assert check_gate("win_model", GOOD_WIN)[0]
    worse_brier = {**GOOD_WIN, "brier": 0.20}
    passed, reason = check_gate("win_model", worse_brier)
    assert not passed and "brier" in reason
    assert check_gate("win_model", worse_brier, tolerance=0.02)[0]
    assert not check_gate("win_model", {**GOOD_WIN, "auc": float("nan")})[0]
    assert not check_gate("time_to_close_model", {"c_index": 0.7})[0]  # no baseline: no promotion


@pytest.mark.parametrize("name", ["", "../x", ".hidden"])
def test_model_names_stay_inside_the_store(tmp_path, name):
    with pytest.raises(ValueError):
        ModelStore(tmp_path).save(name, 1, {}, promoted=True)


def test_the_survival_report_feeds_the_gate(survival_report):
    passed, reason = check_gate("time_to_close_model", survival_report)
    assert passed and reason.startswith("promoted: c_index")
    worse = {**survival_report, "c_index": survival_report["baseline_c_index"] - 0.01}
    assert not check_gate("time_to_close_model", worse)[0]


# ------------------------------------------------------------------ workspaces

def test_a_model_is_only_used_on_the_workspace_it_was_trained_on(tmp_path):
    """Two workspaces share one models_dir: each sees, loads and reports only its own versions;
    loading the other's version by name is refused."""
    a, b = ModelStore(tmp_path, workspace_id="ws-a"), ModelStore(tmp_path, workspace_id="ws-b")
    first = promote_if_not_worse(a, "win_model", "model of A", GOOD_WIN)
    assert first.promoted and a.card("win_model", first.version)["workspace_id"] == "ws-a"
    assert a.load("win_model")[0] == "model of A"
    assert b.current_version("win_model") is None and b.versions("win_model") == []
    assert b.foreign_versions("win_model") == [first.version]
    with pytest.raises(ModelNotFoundError, match="trained on another workspace"):
        b.load("win_model")
    with pytest.raises(ForeignModelError, match="trained on workspace ws-a, not on this one"):
        b.load("win_model", first.version)
    assert usage_notes(b, ("win_model",)) == [f"win_model: {b.not_found_message('win_model')}"]
    # B trains its own: each workspace loads its own, A's stays A's.
    second = promote_if_not_worse(b, "win_model", "model of B", GOOD_WIN)
    assert b.load("win_model")[0] == "model of B" and a.load("win_model")[0] == "model of A"
    assert a.current_version("win_model") == first.version
    assert ModelStore(tmp_path).versions("win_model") == [first.version, second.version]


def test_a_version_without_a_workspace_id_is_never_used_by_a_workspace(tmp_path):
    """Cards written before versions recorded their workspace belong to none."""
    legacy = promote_if_not_worse(ModelStore(tmp_path), "win_model", "old", GOOD_WIN)
    store = ModelStore(tmp_path, workspace_id="ws-a")
    assert store.current_version("win_model") is None
    with pytest.raises(ForeignModelError, match="not recorded"):
        store.load("win_model", legacy.version)


def test_usage_notes_say_why_the_baseline_scores(tmp_path):
    store = ModelStore(tmp_path, workspace_id="ws")
    promote_if_not_worse(store, "win_model", "baseline only",
                         {"fallback": "short history: 9 training examples; the stage win rate scores"})
    promote_if_not_worse(store, "time_to_close_model", "ttc",
                         {"c_index": 0.8, "baseline_c_index": 0.7})
    assert usage_notes(store) == [
        ("win_model: the stage baseline scores the deals (not promoted: short history: 9 training "
         "examples; the stage win rate scores)")]


def test_evaluate_shows_a_model_not_in_use_with_the_reason(tmp_path):
    store = ModelStore(tmp_path, workspace_id="ws")
    with pytest.raises(ModelNotFoundError, match="run `voronka run --retrain` first"):
        registry.model_evaluation(store)
    short = promote_if_not_worse(store, "win_model", "baseline only",
                                 {"fallback": "short history: 9 training examples"})
    ttc = promote_if_not_worse(store, "time_to_close_model", "ttc",
                               {"c_index": 0.8, "baseline_c_index": 0.7})
    out = registry.model_evaluation(store)
    assert out["win_model"] == {"version": short.version, "in_use": False,
                                "reason": "not promoted: short history: 9 training examples"}
    assert out["time_to_close"] == {"version": ttc.version, "in_use": True, "c_index": 0.8,
                                    "baseline_c_index": 0.7}


def test_the_gate_refuses_what_is_too_good_to_be_true():
    leaky = {**GOOD_WIN, "auc": 0.995, "baseline_auc": 0.72,
             "feature_importance": [{"feature": "amount_reporting", "importance": 0.4, "std": 0.01},
                                    {"feature": "pipeline_stage", "importance": 0.01, "std": 0.0}]}
    passed, reason = check_gate("win_model", leaky)
    assert not passed
    assert "auc 0.9950 >= 0.97 is too good to be true: feature 'amount_reporting'" in reason
    assert check_gate("win_model", {**leaky, "auc": 0.96})[0]


def test_the_gate_compares_with_the_crm_probability():
    with_crm = {**GOOD_WIN, "crm_auc": 0.82, "crm_brier": 0.36, "crm_source": "crm_probability"}
    passed, reason = check_gate("win_model", with_crm)  # AUC 0.80 < 0.82: refused
    assert not passed
    assert "auc 0.8000 vs crm_probability 0.8200 (brier 0.1700 vs 0.3600) (worse)" in reason
    passed, reason = check_gate("win_model", {**with_crm, "crm_auc": 0.78})
    assert passed and "vs crm_probability 0.7800" in reason
    # Without a CRM probability the gate is the stage baseline's alone.
    assert check_gate("win_model", GOOD_WIN)[0]
