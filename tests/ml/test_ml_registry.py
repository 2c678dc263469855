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
from ml.registry import ModelNotFoundError, ModelStore, check_gate, promote_if_not_worse
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
