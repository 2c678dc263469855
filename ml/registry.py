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
baseline's measured on the same hold-out (win model: AUC and Brier; time to close: concordance),
the win model's AUC is not below the CRM's own probability's (when the export carries one), and
its AUC is not too good to be true (>= TOO_GOOD_AUC: a feature leaks the outcome; the reason
names the feature with the top hold-out permutation importance). A version that fails is still
stored, with the reason in its card, for the record; loading picks the newest complete version
that passed, so the previous one stays in use.

Workspaces: a store opened with a `workspace_id` writes it into every card, and sees only the
versions trained on that workspace (listing, current version, loading). Loading a version of
another workspace raises ForeignModelError: a model is never used on data it was not trained on,
even when several workspaces share one models_dir. Cards without a workspace id (written before
versions recorded it) belong to no workspace and are not used by a store that has one.
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# joblib, numpy and pandas are imported where a model is saved, loaded or fingerprinted: reading
# the cards (`voronka evaluate`, the report's model section) should not pay for them.

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


# A win model this good on a hold-out of real sales deals has seen the answer: a feature leaks.
TOO_GOOD_AUC = 0.97


class ModelNotFoundError(LookupError):
    """No complete, promoted version of the model is in the store."""


class ForeignModelError(ModelNotFoundError):
    """The version was trained on another workspace's data: it is never used here."""


@dataclass(frozen=True)
class Promotion:
    version: str  # the version just stored
    promoted: bool
    reason: str
    in_use: str | None  # the version loading now returns (the new one, or the previous one)


def data_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the frame's columns, dtypes and values (row order counts)."""
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def library_versions() -> dict:
    import joblib
    import lifelines
    import numpy as np
    import pandas as pd
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "lifelines": lifelines.__version__, "joblib": joblib.__version__}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if type(x).__module__ == "numpy" and getattr(x, "ndim", 1) == 0:  # a numpy scalar
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, datetime):  # pandas' Timestamp too
        return x.isoformat()
    return x


def check_gate(name: str, report: dict, rules: list[tuple[str, str]] | None = None,
               tolerance: float = 0.0) -> tuple[bool, str]:
    """(passed, reason): every gated metric is not worse than its baseline_ twin (by more than
    `tolerance`); for the win model also not worse in AUC than the CRM's probability (crm_auc,
    when the report has it) and not too good to be true (auc >= TOO_GOOD_AUC fails and names
    the top feature of the hold-out permutation importance). A missing or NaN metric fails; a
    report with `fallback` (no model could be trained: short history) fails with that reason."""
    if report.get("fallback"):
        return False, f"not promoted: {report['fallback']}"
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
    if name == "win_model":
        failures, checks = _win_extra_checks(report, tolerance, failures, checks)
    if failures:
        return False, "not promoted: " + "; ".join(failures)
    return True, "promoted: " + ("; ".join(checks) if checks else "no gate for this model")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _win_extra_checks(report: dict, tolerance: float, failures: list, checks: list):
    auc, crm_auc = report.get("auc"), report.get("crm_auc")
    if _finite(auc) and _finite(crm_auc):
        source = report.get("crm_source") or "CRM probability"
        text = f"auc {auc:.4f} vs {source} {crm_auc:.4f}"
        if _finite(report.get("crm_brier")):
            text += f" (brier {report.get('brier', float('nan')):.4f} vs {report['crm_brier']:.4f})"
        worse = auc < crm_auc - tolerance
        (failures if worse else checks).append(text + (" (worse)" if worse else ""))
    if _finite(auc) and auc >= TOO_GOOD_AUC:
        importance = report.get("feature_importance") or []
        top = importance[0]["feature"] if importance else None
        failures.append(f"hold-out auc {auc:.4f} >= {TOO_GOOD_AUC} is too good to be true: "
                        + (f"feature '{top}' (top hold-out permutation importance) probably "
                           "leaks the outcome" if top else "a feature probably leaks the outcome"))
    return failures, checks


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
    lines += ["## Data and libraries", "", f"- workspace: `{card.get('workspace_id')}`",
              f"- data fingerprint: `{card.get('data_fingerprint')}`"]
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
    """models/<name>/<version>/{model.joblib, card.json, card.md}; see the module doc.

    workspace_id: the identity of the workspace whose data the models are trained on (written
    into every card saved, and the only versions listed and loaded); None = every version (for
    tools that read a store as a whole)."""

    def __init__(self, root, workspace_id: str | None = None):
        self.root = Path(root)
        self.workspace_id = workspace_id

    def _belongs(self, card: dict) -> bool:
        return self.workspace_id is None or card.get("workspace_id") == self.workspace_id

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
        if self.workspace_id is not None:
            card["workspace_id"] = self.workspace_id
        tmp = folder / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            import joblib

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
        """Complete versions of this store's workspace, oldest first."""
        return [v for v, card in self._cards(name)
                if self._belongs(card) and (not promoted_only or card.get("gate", {}).get("promoted"))]

    def foreign_versions(self, name: str) -> list[str]:
        """Complete versions trained on another workspace (or on none recorded): never used."""
        return [v for v, card in self._cards(name) if not self._belongs(card)]

    def _cards(self, name: str) -> list[tuple[str, dict]]:
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        out = []
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not p.is_dir():
                continue
            card = self._read_card(p)
            if card is not None:
                out.append((p.name, card))
        return out

    def current_version(self, name: str) -> str | None:
        """The version loading returns: the newest complete version of this workspace that
        passed the gate."""
        promoted = self.versions(name, promoted_only=True)
        return promoted[-1] if promoted else None

    def card(self, name: str, version: str) -> dict:
        card = self._read_card(self._dir(name) / version)
        if card is None:
            raise ModelNotFoundError(
                f"model {name!r} has no complete version {version!r} in {self.root}")
        return card

    def not_found_message(self, name: str) -> str:
        """Why no version of `name` is in use here, in one line."""
        foreign = self.foreign_versions(name)
        text = f"model {name!r} has no promoted version trained on this workspace in {self.root}"
        if foreign:
            text += (f" ({len(foreign)} version(s) there were trained on another workspace's data"
                     " and are never used here)")
        return text

    def load(self, name: str, version: str | None = None):
        """(artifact, card) of `version`, or of the current version. A version trained on
        another workspace raises ForeignModelError."""
        version = version or self.current_version(name)
        if version is None:
            raise ModelNotFoundError(self.not_found_message(name))
        card = self.card(name, version)
        if not self._belongs(card):
            raise ForeignModelError(
                f"model {name!r} version {version} was trained on workspace "
                f"{card.get('workspace_id') or '(not recorded)'}, not on this one "
                f"({self.workspace_id}): it is not used here")
        import joblib

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
WIN_HEADLINE = ("auc", "baseline_auc", "crm_auc", "brier", "baseline_brier", "crm_brier", "ece",
                "log_loss", "n_train", "n_test")
TTC_HEADLINE = ("c_index", "baseline_c_index", "ibs", "baseline_ibs", "n_train", "n_test")


def usage_notes(store: ModelStore, names: tuple = (WIN_MODEL, TIME_TO_CLOSE)) -> list[str]:
    """One line per model that is not what scores the deals (short history, refused by the
    gate, none trained on this workspace) or that left a leaking feature out; [] when the
    models in use are plain. For the CLI after a run."""
    lines = []
    for name in names:
        version = store.current_version(name)
        own = store.versions(name)
        if version is None and not own:
            lines.append(f"{name}: {store.not_found_message(name)}")
            continue
        card = store.card(name, version or own[-1])
        if version is None:
            reason = (card.get("gate") or {}).get("reason", "")
            lines.append(f"{name}: the stage baseline scores the deals ({reason})")
        left_out = (card.get("curves") or {}).get("features_left_out") or {}
        lines += [f"{name}: {why}" for why in left_out.values()]
    return lines


def headline_metrics(report: dict, keys: tuple) -> dict:
    """The metrics named by `keys` that the report has, floats rounded to 4 places."""
    return {k: (round(float(report[k]), 4) if isinstance(report[k], float) else report[k])
            for k in keys if report.get(k) is not None}


def model_evaluation(store: ModelStore) -> dict:
    """The `voronka evaluate` figures from the cards of the models in use; a model with no
    promoted version shows its newest one, `in_use` False and the gate's reason (short history,
    refused). ModelNotFoundError when the workspace never trained one."""
    out = {}
    for name, key, keys in ((WIN_MODEL, "win_model", WIN_HEADLINE), (TIME_TO_CLOSE, "time_to_close", TTC_HEADLINE)):
        version = store.current_version(name)
        own = store.versions(name)
        if version is None and not own:
            raise ModelNotFoundError(f"{store.not_found_message(name)}: run `voronka run --retrain` first")
        card = store.card(name, version or own[-1])
        flat = {**card.get("metrics", {}), **card.get("rows", {}),
                **{f"baseline_{k}": v for k, v in card.get("baseline_metrics", {}).items()}}
        out[key] = {"version": card["version"], "in_use": version is not None,
                    **headline_metrics(flat, keys)}
        if version is None:
            out[key]["reason"] = (card.get("gate") or {}).get("reason", "")
    return out
