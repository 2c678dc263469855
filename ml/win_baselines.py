"""The baselines the win model must beat on the same hold-out.

StageWinRateBaseline: the historical win rate of the deal's current stage, per pipeline
(smoothed towards the pipeline's rate).

crm_baseline: the CRM's own view of each deal (its stage probability, or the stage's position
where the CRM has no probabilities).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin


class StageWinRateBaseline(ClassifierMixin, BaseEstimator):
    """P(win) = the historical win rate of examples in the same pipeline and stage, smoothed
    towards the pipeline's rate (and that towards the overall rate) with `smoothing` pseudo
    examples."""

    def __init__(self, smoothing=10.0):
        self.smoothing = smoothing

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, dtype=float)
        frame = pd.DataFrame({"pipeline": X["pipeline"].astype(str).to_numpy(),
                              "stage": X["pipeline_stage"].astype(str).to_numpy(), "y": y})
        m = self.smoothing
        # No outcome known yet (a brand-new workspace): an even prior, nothing learnt.
        self.overall_rate_ = float(y.mean()) if len(y) else 0.5
        pipe = frame.groupby("pipeline")["y"].agg(["sum", "count"])
        pipe_rate = (pipe["sum"] + m * self.overall_rate_) / (pipe["count"] + m)
        self.pipeline_rates_ = pipe_rate.to_dict()
        stage = frame.groupby(["pipeline", "stage"])["y"].agg(["sum", "count"]).reset_index()
        prior = stage["pipeline"].map(self.pipeline_rates_)
        stage["rate"] = (stage["sum"] + m * prior) / (stage["count"] + m)
        self.stage_rates_ = dict(zip(stage["stage"], stage["rate"]))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        stage = X["pipeline_stage"].astype(str).map(self.stage_rates_)
        pipe = X["pipeline"].astype(str).map(self.pipeline_rates_)
        p = stage.fillna(pipe).fillna(self.overall_rate_).to_numpy(dtype=float)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def crm_baseline(X: pd.DataFrame) -> tuple[np.ndarray | None, str | None, float]:
    """The CRM's own view of each example, as of its date: (scores, source, coverage).

    source 'crm_probability' (the stage's CRM probability, known for at least half of the rows;
    the other rows get the mean) is a probability; 'stage_order' (the stage's position in its
    pipeline, for CRMs without probabilities: amoCRM, Bitrix24) only ranks deals, so only its
    AUC means something. (None, None, 0) when neither is known."""
    prob = pd.to_numeric(X["crm_probability"], errors="coerce").to_numpy(float) \
        if "crm_probability" in X else np.full(len(X), np.nan)
    known = np.isfinite(prob)
    if len(X) and known.mean() >= 0.5:
        return np.where(known, prob, np.nanmean(prob)), "crm_probability", float(known.mean())
    pos = pd.to_numeric(X["stage_position"], errors="coerce").to_numpy(float) \
        if "stage_position" in X else np.full(len(X), np.nan)
    if len(X) and np.isfinite(pos).any():
        return np.nan_to_num(pos, nan=0.0), "stage_order", float(np.isfinite(pos).mean())
    return None, None, 0.0
