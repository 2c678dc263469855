"""Model metrics: discrimination, calibration and survival accuracy under censoring.

Classification (y in {0, 1}, p = predicted P(y = 1)):
- roc_auc, brier_score (mean squared error of p), log_loss (p clipped to [eps, 1 - eps]);
- reliability_curve: per bin of p (equal width), mean p beside the observed rate;
- expected_calibration_error: sum over bins of (bin share) x |mean p - observed rate|.

Survival (durations, event indicators; censored = the event was not seen by the end):
- kaplan_meier: the product-limit estimate S(t) = prod over event times t_j <= t of
  (1 - d_j / n_j); `survival_at` reads the step function (right-continuous).
- cumulative_incidence: Aalen–Johansen estimate of P(cause k by t) with competing causes:
  sum over t_j <= t of S(t_j-) d_kj / n_j, S = Kaplan–Meier of any cause.
- concordance_index: Harrell's C (lifelines): over comparable pairs (the shorter time is an
  event), the share where the model's predicted time orders the pair the same way; ties in the
  prediction count one half. 1.0 = perfect order, 0.5 = random, 0.0 = reversed.
- brier_score_at / integrated_brier_score: Graf's Brier score for predicted P(event of interest
  by t), with inverse probability of censoring weights (G = Kaplan–Meier of the censoring
  times): a subject with an observed event (of any cause) by t weighs 1/G(T-), one still at risk
  at t weighs 1/G(t), one censored before t weighs 0. With competing causes the target is 1 only
  for the cause of interest (Gerds & Schumacher's competing-risks Brier score). The integrated
  score is the trapezoid average over the time grid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines.utils import concordance_index as _lifelines_cindex
from sklearn.metrics import roc_auc_score


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y and p differ in length: {len(y)} != {len(p)}")
    return y, p


def roc_auc(y, p) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y, p = _arrays(y, p)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def brier_score(y, p) -> float:
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2))


def log_loss(y, p, eps: float = 1e-15) -> float:
    y, p = _arrays(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability_curve(y, p, n_bins: int = 10) -> pd.DataFrame:
    """Points of the reliability diagram: one row per non-empty equal-width bin of p."""
    y, p = _arrays(y, p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    sum_p = np.bincount(b, weights=p, minlength=n_bins)
    sum_y = np.bincount(b, weights=y, minlength=n_bins)
    keep = count > 0
    return pd.DataFrame({
        "bin_lower": edges[:-1][keep], "bin_upper": edges[1:][keep],
        "mean_predicted": sum_p[keep] / count[keep], "observed_rate": sum_y[keep] / count[keep],
        "count": count[keep],
    })


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    curve = reliability_curve(y, p, n_bins)
    share = curve["count"] / curve["count"].sum()
    return float(np.sum(share * np.abs(curve["mean_predicted"] - curve["observed_rate"])))


def concordance_index(durations, predicted_times, events) -> float:
    """Harrell's C. `predicted_times`: higher = later event (pass -risk for a risk score)."""
    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    if not events.any():
        return float("nan")
    return float(_lifelines_cindex(durations, np.asarray(predicted_times, dtype=float), events))


def kaplan_meier(durations, events) -> pd.DataFrame:
    """Product-limit table: time, at_risk, events, censored, survival (S just after `time`)."""
    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    times, inverse = np.unique(durations, return_inverse=True)
    d = np.bincount(inverse, weights=events, minlength=len(times))
    total = np.bincount(inverse, minlength=len(times))
    at_risk = total[::-1].cumsum()[::-1]
    survival = np.cumprod(1.0 - d / at_risk)
    return pd.DataFrame({"time": times, "at_risk": at_risk, "events": d.astype(np.int64),
                         "censored": (total - d).astype(np.int64), "survival": survival})


def survival_at(table: pd.DataFrame, times, column: str = "survival",
                left_limit: bool = False, start: float = 1.0) -> np.ndarray:
    """Read a step function (a kaplan_meier or cumulative_incidence table) at `times`.

    Right-continuous: S(t) includes the drops at t; `left_limit=True` gives S(t-).
    """
    grid = table["time"].to_numpy()
    values = np.concatenate([[start], table[column].to_numpy()])
    side = "left" if left_limit else "right"
    return values[np.searchsorted(grid, np.asarray(times, dtype=float), side=side)]


def cumulative_incidence(durations, causes, cause) -> pd.DataFrame:
    """Aalen–Johansen: time, at_risk, cif (P(cause by t)). `causes`: the cause of each subject's
    event, or None/NaN/'censored' when censored."""
    durations = np.asarray(durations, dtype=float)
    causes = pd.Series(causes).astype(object).to_numpy()
    observed = ~pd.isna(causes) & (causes != "censored")
    times, inverse = np.unique(durations, return_inverse=True)
    d_any = np.bincount(inverse, weights=observed, minlength=len(times))
    d_k = np.bincount(inverse, weights=observed & (causes == cause), minlength=len(times))
    total = np.bincount(inverse, minlength=len(times))
    at_risk = total[::-1].cumsum()[::-1]
    surv = np.cumprod(1.0 - d_any / at_risk)
    surv_before = np.concatenate([[1.0], surv[:-1]])
    cif = np.cumsum(surv_before * d_k / at_risk)
    return pd.DataFrame({"time": times, "at_risk": at_risk, "cif": cif})


def _censoring_km(durations, observed) -> pd.DataFrame:
    # Censoring is the "event"; at tied times events come before censoring (standard), which
    # the product-limit estimate of the censoring times gets by counting only censorings.
    return kaplan_meier(durations, ~np.asarray(observed, dtype=bool))


def brier_score_at(times, predicted, durations, event_of_interest, observed,
                   censor_durations=None, censor_observed=None) -> np.ndarray:
    """IPCW Brier score at each time of `times`.

    predicted: (n, len(times)) predicted P(event of interest by t). event_of_interest: the
    subject's observed event is the one predicted; observed: any event was observed (False =
    censored). The censoring distribution comes from `censor_*` (default: these subjects).
    """
    times = np.asarray(times, dtype=float)
    predicted = np.asarray(predicted, dtype=float).reshape(len(durations), len(times))
    durations = np.asarray(durations, dtype=float)
    event_of_interest = np.asarray(event_of_interest, dtype=bool)
    observed = np.asarray(observed, dtype=bool)
    if censor_durations is None:
        censor_durations, censor_observed = durations, observed
    g = _censoring_km(censor_durations, censor_observed)
    g_t = np.maximum(survival_at(g, times), 1e-12)
    g_before = np.maximum(survival_at(g, durations, left_limit=True), 1e-12)
    had_event = (durations[:, None] <= times[None, :]) & observed[:, None]
    at_risk = durations[:, None] > times[None, :]
    target = (had_event & event_of_interest[:, None]).astype(float)
    weight = np.where(had_event, 1.0 / g_before[:, None], 0.0) + np.where(at_risk, 1.0 / g_t, 0.0)
    return np.mean(weight * (target - predicted) ** 2, axis=0)


def integrated_brier_score(times, predicted, durations, event_of_interest, observed,
                           censor_durations=None, censor_observed=None) -> float:
    """Trapezoid average of brier_score_at over `times` (at least two times)."""
    times = np.asarray(times, dtype=float)
    scores = brier_score_at(times, predicted, durations, event_of_interest, observed,
                            censor_durations, censor_observed)
    return float(np.trapezoid(scores, times) / (times[-1] - times[0]))
