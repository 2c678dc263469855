"""The model store: models/<name>/<version>/ holding the artifact and its model card.

A version directory holds model.joblib (the fitted model), card.json (what it is: training
window, row counts, features, metrics beside the baseline's, data fingerprint, library versions,
the promotion gate's verdict) and card.md (the same for people).

Writes are atomic: everything is written into a hidden temporary directory beside the versions
(.tmp-<random>), flushed to disk, then renamed to the version name in one step. A crash leaves at
most a hidden temporary directory, which is never read (and is swept by the next save after an
hour), so a half-written version is never loaded. Versions sort by name (UTC time of the save,
then a random suffix).

The gate: a new version is promoted only when its hold-out metrics are not worse than the
baseline's measured on the same hold-out (win model: AUC and Brier; time to close: concordance).
A version that fails is still stored, with the reason in its card, for the record; loading picks
the newest complete version that passed, so the previous one stays in use.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

ARTIFACT = "model.joblib"
CARD_JSON = "card.json"
CARD_MD = "card.md"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 3600

# name -> [(metric, direction)]: the model's metric must not be worse than baseline_<metric>.
GATES: dict[str, list[tuple[str, str]]] = {
    "win_model": [("auc", "higher"), ("brier", "lower")],
    "time_to_close_model": [("c_index", "higher")],
}


class ModelNotFoundError(LookupError):
    """No complete, promoted version of the model is in the store."""


@dataclass(frozen=True)
class Promotion:
    version: str  # the version just stored
    promoted: bool
    reason: str
    in_use: str | None  # the version loading now returns (the new one, or the previous one)


def data_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the frame's columns, dtypes and values (row order counts)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def library_versions() -> dict:
    import lifelines
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "lifelines": lifelines.__version__, "joblib": joblib.__version__}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (pd.Timestamp, datetime)):
        return x.isoformat()
    return x


def check_gate(name: str, report: dict, rules: list[tuple[str, str]] | None = None,
               tolerance: float = 0.0) -> tuple[bool, str]:
    """(passed, reason): every gated metric is not worse than its baseline_ twin (by more than
    `tolerance`). A missing or NaN metric fails."""
    if rules is None and name not in GATES:
        return False, f"not promoted: no quality gate is defined for {name!r}"
    rules = GATES[name] if rules is None else rules
    failures, checks = [], []
    for metric, direction in rules:
        value, base = report.get(metric), report.get(f"baseline_{metric}")
        if value is None or base is None or not (math.isfinite(value) and math.isfinite(base)):
            failures.append(f"{metric} or baseline_{metric} missing")
            continue
        worse = value < base - tolerance if direction == "higher" else value > base + tolerance
        text = f"{metric} {value:.4f} vs baseline {base:.4f}"
        (failures if worse else checks).append(text + (" (worse)" if worse else ""))
    if failures:
        return False, "not promoted: " + "; ".join(failures)
    return True, "promoted: " + ("; ".join(checks) if checks else "no gate for this model")


def build_card(name: str, report: dict, examples: pd.DataFrame | None = None,
               features: list[str] | None = None, params: dict | None = None) -> dict:
    """The model card's content (the version and the gate are added by the store)."""
    metrics = {k: v for k, v in report.items() if not isinstance(v, (list, dict))}
    curves = {k: v for k, v in report.items() if isinstance(v, (list, dict))}
    card = {
        "name": name,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_window": {k: report.get(k) for k in ("train_from", "train_to", "cutoff",
                                                         "split_date") if k in report},
        "rows": {k: v for k, v in metrics.items() if k.startswith("n_")},
        "features": list(features or []),
        "metrics": {k: v for k, v in metrics.items() if not k.startswith(("baseline_", "n_"))
                    and k not in ("train_from", "train_to", "cutoff", "split_date")},
        "baseline_metrics": {k[len("baseline_"):]: v for k, v in metrics.items()
                             if k.startswith("baseline_")},
        "curves": curves,
        "params": params or {},
        "library_versions": library_versions(),
    }
    if examples is not None:
        card["data_fingerprint"] = data_fingerprint(examples)
        card["rows"]["examples"] = int(len(examples))
    return _jsonable(card)


def render_card(card: dict) -> str:
    """card.md: the card for people."""
    lines = [f"# {card.get('name')} — version {card.get('version')}", ""]
    gate = card.get("gate", {})
    verdict = "passed" if gate.get("promoted") else "failed"
    lines += [f"**Gate:** {verdict} — {gate.get('reason', '')}", "",
              f"Created {card.get('created_at')}.", ""]
    window = card.get("training_window", {})
    if window:
        lines += ["## Training window", ""] + [f"- {k}: {v}" for k, v in window.items()] + [""]
    rows = card.get("rows", {})
    if rows:
        lines += ["## Rows", ""] + [f"- {k}: {v}" for k, v in rows.items()] + [""]
    metrics, base = card.get("metrics", {}), card.get("baseline_metrics", {})
    lines += ["## Hold-out metrics", "", "| metric | model | baseline |", "|---|---|---|"]
    for k, v in metrics.items():
        if isinstance(v, float):
            b = base.get(k)
            lines.append(f"| {k} | {v:.4g} | {'' if b is None else f'{b:.4g}'} |")
        else:
            lines.append(f"| {k} | {v} | |")
    lines += ["", "## Features", "", ", ".join(card.get("features", [])) or "(none recorded)", ""]
    importance = card.get("curves", {}).get("feature_importance") or []
    if importance:
        lines += ["## Feature importance (hold-out, permutation: drop in ROC AUC when shuffled)", "",
                  "| feature | importance | std |", "|---|---|---|"]
        lines += [f"| {r['feature']} | {r['importance']:.4f} | {r['std']:.4f} |" for r in importance]
        lines += [""]
    lines += ["## Data and libraries", "", f"- data fingerprint: `{card.get('data_fingerprint')}`"]
    lines += [f"- {k} {v}" for k, v in card.get("library_versions", {}).items()] + [""]
    return "\n".join(lines)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ModelStore:
    """models/<name>/<version>/{model.joblib, card.json, card.md}; see the module doc."""

    def __init__(self, root):
        self.root = Path(root)

    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a model name: {name!r}")
        return self.root / name

    def _new_version(self) -> str:
        now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{now}-{uuid.uuid4().hex[:6]}"

    def save(self, name: str, artifact, card: dict, promoted: bool, reason: str = "") -> str:
        """Store a new version atomically; returns its name."""
        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        self._sweep(folder)
        version = self._new_version()
        card = {**card, "version": version, "gate": {"promoted": bool(promoted), "reason": reason}}
        tmp = folder / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            joblib.dump(artifact, tmp / ARTIFACT)
            with open(tmp / ARTIFACT, "rb") as f:
                os.fsync(f.fileno())
            card["artifact_sha256"] = hashlib.sha256((tmp / ARTIFACT).read_bytes()).hexdigest()
            _write(tmp / CARD_MD, render_card(card).encode())
            text = json.dumps(_jsonable(card), indent=2, ensure_ascii=False)
            _write(tmp / CARD_JSON, text.encode())
            _fsync_dir(tmp)
            os.rename(tmp, folder / version)  # the commit: atomic on one file system
            _fsync_dir(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def _sweep(self, folder: Path) -> None:
        """Remove temporary directories a crashed save left behind (older than an hour)."""
        for p in folder.glob(f"{TMP_PREFIX}*"):
            try:
                if time.time() - p.stat().st_mtime > STALE_TMP_SECONDS:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass

    def _read_card(self, path: Path) -> dict | None:
        """The card of a complete version directory, else None."""
        try:
            card = json.loads((path / CARD_JSON).read_text())
        except (OSError, ValueError):
            return None
        if card.get("version") != path.name or not (path / ARTIFACT).is_file():
            return None
        return card

    def versions(self, name: str, promoted_only: bool = False) -> list[str]:
        """Complete versions, oldest first."""
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not p.is_dir():
                continue
            card = self._read_card(p)
            if card is None:
                continue
            if promoted_only and not card.get("gate", {}).get("promoted"):
                continue
            out.append(p.name)
        return out

    def current_version(self, name: str) -> str | None:
        """The version loading returns: the newest complete version that passed the gate."""
        promoted = self.versions(name, promoted_only=True)
        return promoted[-1] if promoted else None

    def card(self, name: str, version: str) -> dict:
        card = self._read_card(self._dir(name) / version)
        if card is None:
            raise ModelNotFoundError(
                f"model {name!r} has no complete version {version!r} in {self.root}")
        return card

    def load(self, name: str, version: str | None = None):
        """(artifact, card) of `version`, or of the current version."""
        version = version or self.current_version(name)
        if version is None:
            raise ModelNotFoundError(f"model {name!r} has no promoted version in {self.root}")
        card = self.card(name, version)
        return joblib.load(self._dir(name) / version / ARTIFACT), card


def promote_if_not_worse(store: ModelStore, name: str, artifact, report: dict,
                         examples: pd.DataFrame | None = None, features: list[str] | None = None,
                         params: dict | None = None, rules: list[tuple[str, str]] | None = None,
                         tolerance: float = 0.0) -> Promotion:
    """Store `artifact` as a new version of `name`, promoted only if its hold-out metrics in
    `report` are not worse than the baseline's (see GATES); returns what happened and which
    version is in use now."""
    passed, reason = check_gate(name, report, rules, tolerance)
    card = build_card(name, report, examples, features, params)
    version = store.save(name, artifact, card, promoted=passed, reason=reason)
    return Promotion(version=version, promoted=passed, reason=reason,
                     in_use=store.current_version(name))


WIN_MODEL, TIME_TO_CLOSE = "win_model", "time_to_close_model"
WIN_HEADLINE = ("auc", "baseline_auc", "brier", "baseline_brier", "ece", "log_loss", "n_train", "n_test")
TTC_HEADLINE = ("c_index", "baseline_c_index", "ibs", "baseline_ibs", "n_train", "n_test")


def headline_metrics(report: dict, keys: tuple) -> dict:
    """The metrics named by `keys` that the report has, floats rounded to 4 places."""
    return {k: (round(float(report[k]), 4) if isinstance(report[k], float) else report[k])
            for k in keys if report.get(k) is not None}


def model_evaluation(store: ModelStore) -> dict:
    """The `voronka evaluate` figures from the cards of the models in use."""
    out = {}
    for name, key, keys in ((WIN_MODEL, "win_model", WIN_HEADLINE), (TIME_TO_CLOSE, "time_to_close", TTC_HEADLINE)):
        version = store.current_version(name)
        if version is None:
            raise ModelNotFoundError(f"no promoted {name} in {store.root}: run `voronka run --retrain` first")
        card = store.card(name, version)
        flat = {**card.get("metrics", {}), **card.get("rows", {}),
                **{f"baseline_{k}": v for k, v in card.get("baseline_metrics", {}).items()}}
        out[key] = {"version": version, **headline_metrics(flat, keys)}
    return out
