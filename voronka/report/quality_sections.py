"""The model-quality section of the leadership report: the backtest and the model cards
(no Dagster).

- quality: the backtest's WAPE by method and the models' hold-out metrics from their cards.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from voronka.report.reads import (
    ALL,
    _company_wide,
    _df,
    _exists,
    _float,
    _missing,
    _value,
)

if TYPE_CHECKING:
    from ml.registry import ModelStore

BACKTEST_TABLE = "main.backtest_results"


# ---------------------------------------------------------------- model quality

# What leadership reads first: this quarter as forecast at its start; then shorter horizons.
BACKTEST_HORIZONS = ("quarter+0", "month+0", "quarter+1", "month+1")


def _backtest_methods(frame: pd.DataFrame) -> list[dict]:
    from ml.backtest_metrics import forecast_metrics

    rows = []
    for method, g in frame.groupby("method", sort=False):
        if "wape" in g:
            if g["wape"].isna().all():
                continue
            row = {"method": method, "wape": _float(g["wape"].mean()),
                   "origins": int(g["n_origins"].sum()) if "n_origins" in g else int(len(g))}
            for extra in ("bias", "interval_coverage"):
                row[extra] = _float(g[extra].mean()) if extra in g else None
        elif {"expected", "p10", "p50", "p90", "actual"} <= set(g.columns):
            g = g.dropna(subset=["expected", "p50", "actual"])
            if float(g["actual"].sum()) <= 0:
                continue
            # The backtest's own definitions (WAPE of the P50, bias of the mean).
            m = forecast_metrics(g["actual"], g["expected"], g["p10"], g["p50"], g["p90"])
            row = {"method": method, "origins": m["n_origins"], "wape": m["wape"], "bias": m["bias"],
                   "interval_coverage": m["interval_coverage"]}
        else:
            continue
        rows.append(row)
    return sorted(rows, key=lambda r: r["wape"])


def _backtest(con) -> dict:
    """WAPE (and bias, interval coverage) per method over the backtest's origins, all pipelines,
    for the first horizon of BACKTEST_HORIZONS that has booked revenue to compare with: from the
    table's metrics when it carries them, else from its per-origin rows (P50 and mean vs actual)."""
    if not _exists(con, BACKTEST_TABLE):
        return _missing(f"the backtest has not run yet ({BACKTEST_TABLE})")
    frame = _company_wide(_df(con, f"select * from {BACKTEST_TABLE}"))
    if "pipeline" in frame:
        frame = frame[frame["pipeline"] == ALL]
    if frame.empty or "method" not in frame:
        return _missing(f"{BACKTEST_TABLE} has no rows for all pipelines yet")
    if "horizon" in frame:
        horizons = [h for h in BACKTEST_HORIZONS if (frame["horizon"] == h).any()]
        horizons += [h for h in frame["horizon"].dropna().unique() if h not in horizons]
        candidates = [(h, frame[frame["horizon"] == h]) for h in horizons]
    else:
        candidates = [(None, frame)]
    for horizon, rows in candidates:
        methods = _backtest_methods(rows)
        if methods:
            by = {m["method"]: m for m in methods}
            return {"available": True, "note": None, "methods": methods, "horizon": horizon,
                    "model_wape": (by.get("model") or {}).get("wape"),
                    "weighted_pipeline_wape": (by.get("weighted_pipeline") or {}).get("wape")}
    return _missing(f"{BACKTEST_TABLE} has no origin whose periods have bookings to compare with yet")


def _model_cards(model_store) -> dict:
    """model_store: the workspace's ModelStore (only its own versions), or a path (every version)."""
    if model_store is None:
        return _missing("no model store given")
    from ml.registry import ModelStore

    store = model_store if isinstance(model_store, ModelStore) else ModelStore(model_store)
    out = {"available": False, "note": None}
    for name in ("win_model", "time_to_close_model"):
        # The promoted version; else the newest one, marked: the deals are then scored by the
        # stage baseline, and the card says by how much the model fell short.
        version, promoted = store.current_version(name), True
        if version is None:
            versions = store.versions(name)
            if not versions:
                continue
            version, promoted = versions[-1], False
        card = store.card(name, version)
        metrics, base = card.get("metrics", {}), card.get("baseline_metrics", {})
        out[name] = {"version": version, "promoted": promoted,
                     "gate": (card.get("gate") or {}).get("reason"),
                     "metrics": {k: _value(v) for k, v in metrics.items()},
                     "baseline": {k: _value(v) for k, v in base.items()},
                     "rows": card.get("rows", {}), "training_window": card.get("training_window", {}),
                     "reliability": card.get("curves", {}).get("reliability")}
        out["available"] = True
    if not out["available"]:
        out["note"] = f"no trained model in {store.root}"
    return out


def quality(con, model_store: ModelStore | Path | str | None) -> dict:
    return {"backtest": _backtest(con), "models": _model_cards(model_store)}
