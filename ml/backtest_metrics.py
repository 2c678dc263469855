"""The backtest's metrics, apart from the backtest itself so that reading them (`voronka backtest`,
the report) does not load the models (scikit-learn, lifelines): the method and horizon names, and
per method and horizon over the origins WAPE of the P50 and of the mean, bias of the mean, P10–P90
coverage and the scaled pinball loss (definitions: ml/backtest.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.names import ALL, MODEL, WEIGHTED_PIPELINE

STAGE_WIN_RATE, SEASONAL_NAIVE = "stage_win_rate", "seasonal_naive"
METHODS = (MODEL, WEIGHTED_PIPELINE, STAGE_WIN_RATE, SEASONAL_NAIVE)
HORIZONS = ("month+0", "month+1", "quarter+0", "quarter+1")
METRIC_COLUMNS = ["method", "horizon", "wape", "wape_mean", "bias", "interval_coverage", "pinball_loss",
                  "n_origins"]


def pinball(actual: np.ndarray, forecast: np.ndarray, q: float) -> np.ndarray:
    """Quantile (pinball) loss of one quantile forecast."""
    diff = np.asarray(actual, float) - np.asarray(forecast, float)
    return np.maximum(q * diff, (q - 1) * diff)


def forecast_metrics(actual, expected, p10, p50, p90) -> dict:
    """WAPE (of the P50, and of the mean), bias of the mean, P10–P90 coverage and the scaled
    pinball loss of a set of forecasts."""
    a, f, median = np.asarray(actual, float), np.asarray(expected, float), np.asarray(p50, float)
    total = a.sum()
    loss = (pinball(a, p10, 0.1) + pinball(a, median, 0.5) + pinball(a, p90, 0.9)) / 3
    inside = (np.asarray(p10, float) <= a) & (a <= np.asarray(p90, float))
    return {"wape": float(np.abs(median - a).sum() / total) if total > 0 else None,
            "wape_mean": float(np.abs(f - a).sum() / total) if total > 0 else None,
            "bias": float((f - a).sum() / total) if total > 0 else None,
            "interval_coverage": float(inside.mean()) if len(a) else None,
            "pinball_loss": float(loss.mean() / a.mean()) if len(a) and a.mean() > 0 else None,
            "n_origins": int(len(a))}


def backtest_metrics(results: pd.DataFrame, pipeline: str = ALL) -> pd.DataFrame:
    """METRIC_COLUMNS per method and horizon, over the origins, for one scope."""
    rows = []
    scoped = results[results["pipeline"] == pipeline]
    for (method, horizon), g in scoped.groupby(["method", "horizon"], sort=False):
        rows.append({"method": method, "horizon": horizon,
                     **forecast_metrics(g["actual"], g["expected"], g["p10"], g["p50"], g["p90"])})
    out = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    # undefined metrics (no bookings in a horizon yet, as on a young org) are NaN, not None
    undefined = ["wape", "wape_mean", "bias", "interval_coverage", "pinball_loss"]
    out[undefined] = out[undefined].astype(float)
    order = {m: i for i, m in enumerate(METHODS)}
    hz = {h: i for i, h in enumerate(HORIZONS)}
    return out.sort_values(["horizon", "method"], key=lambda s: s.map(hz if s.name == "horizon" else order)
                           ).reset_index(drop=True)


def horizons_not_beaten(metrics: pd.DataFrame) -> list[str]:
    """The horizons where the model's WAPE is not below every baseline's. A horizon where either
    is undefined (nothing booked there yet) is not judged."""
    model = metrics[metrics["method"] == "model"].set_index("horizon")["wape"].dropna()
    baselines = metrics[metrics["method"] != "model"].groupby("horizon")["wape"].min().dropna()
    return [h for h in model.index if h in baselines.index and not model[h] < baselines[h]]
