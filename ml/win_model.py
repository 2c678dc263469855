"""Win probability: P(the deal is eventually won | its state at the as-of date).

WinModel: scikit-learn's HistGradientBoostingClassifier with native categorical splits on the
as-of features (ml/features.py), then calibrated on a temporal split: the booster learns from
the deals seen first (about 1 - calibration_fraction of the rows) and an isotonic (or sigmoid)
map is fitted on the deals seen last, so the probabilities are calibrated on the period closest
to the one being scored. Every split (calibration, and the booster's early-stopping validation)
keeps all the rows of one deal on one side: a deal's as-of rows share one label, and a split
through a deal rewards memorising it (measured: AUC 0.761 -> 0.777 and the correlation with
the true P(won) 0.71 -> 0.81 on the 20k-deal simulated company once the splits were grouped).

Its baselines (stage win rate, the CRM's own probability) are in ml/win_baselines.py.
evaluate_win_model: temporal hold-out. Training rows are the examples dated before the split,
labelled with what was known at the split (a deal still open at the split is left out, so no
outcome from the test period reaches training); test rows are the examples dated on or after the
split whose outcome is known at the cut-off. Both wait a maturity (see `maturity`) so recent
examples, whose outcome is known only when they closed fast, do not bias the labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from ml import metrics
from ml.features import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES
from ml.leaks import FINAL_STATE_FEATURES, final_state_leaks
from ml.win_baselines import StageWinRateBaseline, crm_baseline

OTHER = "(other)"
ISOTONIC_MIN_ROWS = 20_000  # 'auto' calibration: isotonic from this many calibration rows
PROBABILITY_FLOOR = 1e-3  # isotonic steps can reach 0 or 1; a won deal at 0 costs log loss 35


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class WinModel(ClassifierMixin, BaseEstimator):
    """Gradient boosting with native categoricals, calibrated on the newest examples.

    fit(X, y, sample_time=None, groups=None): X holds the feature columns (FEATURES by
    default); the calibration rows are the deals seen last by `sample_time` (default X['as_of']
    when present, else the row order); `groups` (default X['deal_key']) keeps a deal's rows on one
    side of every split. Categories beyond the `max_categories` most frequent become one 'other'.
    calibration: 'auto' (isotonic with at least ISOTONIC_MIN_ROWS calibration rows, else
    sigmoid), 'isotonic', 'sigmoid' or None. Probabilities are kept inside [0.001, 0.999].
    n_threads: OpenMP threads for the booster (None = all cores). Default 1: on a small shared
    machine (2 cores, other work running) two threads measured 2-4x slower than one.
    final_state_features: features left out when, on the training rows, whether they are known
    tells the outcome (ml.leaks.final_state_leaks; why in `leaks_`).
    """

    def __init__(self, categorical_features=None, numeric_features=None, max_iter=300,
                 learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=50,
                 l2_regularization=1.0, max_categories=60, calibration="auto",
                 calibration_fraction=0.2, n_threads=1, random_state=0,
                 final_state_features=FINAL_STATE_FEATURES):
        self.categorical_features = categorical_features
        self.numeric_features = numeric_features
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.max_categories = max_categories
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.n_threads = n_threads
        self.random_state = random_state
        self.final_state_features = final_state_features

    # -- encoding ------------------------------------------------------------------------
    def _columns(self) -> tuple[list[str], list[str]]:
        cats = list(CATEGORICAL_FEATURES if self.categorical_features is None
                    else self.categorical_features)
        nums = list(NUMERIC_FEATURES if self.numeric_features is None else self.numeric_features)
        return cats, nums

    def _encode(self, X: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(X), len(self.features_)), dtype=np.float64)
        for j, col in enumerate(self.categorical_):
            values = X[col]
            known = pd.Index(self.categories_[col])
            codes = known.get_indexer(values.astype(object)).astype(np.float64)
            codes[codes < 0] = len(known)  # unseen or rare -> 'other'
            codes[pd.isna(values).to_numpy()] = np.nan
            out[:, j] = codes
        k = len(self.categorical_)
        for j, col in enumerate(self.numeric_):
            out[:, k + j] = pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=np.float64)
        return out

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        if self.calibrator_ is None:
            return raw
        if self.calibration_method_ == "sigmoid":
            return self.calibrator_.predict_proba(_logit(raw)[:, None])[:, 1]
        return self.calibrator_.predict(raw)

    def _proba_encoded(self, encoded: np.ndarray) -> np.ndarray:
        p = self._calibrate(self.booster_.predict_proba(encoded)[:, 1])
        return np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)

    # -- scikit-learn API ------------------------------------------------------------------
    def _split(self, X: pd.DataFrame, y: np.ndarray, sample_time, groups):
        """Rows for the booster, its early-stopping validation and the calibration.

        Rows of one deal (several as-of dates, one label) stay together, or the validation and
        calibration rows would reward memorising deals. Calibration: the deals first seen last,
        about `calibration_fraction` of the rows. Validation: a seeded 10% of the other deals.
        """
        n = len(X)
        if sample_time is None and "as_of" in X:
            sample_time = X["as_of"]
        if groups is None and "deal_key" in X:
            groups = X["deal_key"]
        if sample_time is None:
            time = np.arange(n)
        else:
            time = np.asarray(pd.to_datetime(sample_time)).astype("datetime64[ns]").view(np.int64)
        group = np.arange(n) if groups is None else pd.factorize(np.asarray(groups))[0]
        first = pd.Series(time).groupby(group).transform("min").to_numpy()
        order = np.lexsort((group, first))
        n_cal = int(round(n * self.calibration_fraction)) if self.calibration else 0
        cal = np.zeros(n, dtype=bool)
        if n_cal:
            boundary_group = group[order[n - n_cal]]  # whole deals: cut at a deal boundary
            cal[order] = np.arange(n) >= n - n_cal
            cal |= np.isin(group, boundary_group)
            if len(np.unique(y[cal])) < 2 or len(np.unique(y[~cal])) < 2 or cal.all():
                cal[:] = False
        rest = np.flatnonzero(~cal)
        rng = np.random.default_rng(self.random_state)
        rest_groups = np.unique(group[rest])
        val_groups = rest_groups[rng.random(len(rest_groups)) < 0.1]
        val = np.isin(group[rest], val_groups)
        fit_rows, val_rows = rest[~val], rest[val]
        if len(val_rows) < 200 or len(np.unique(y[val_rows])) < 2:
            fit_rows, val_rows = rest, rest[:0]
        return fit_rows, val_rows, np.flatnonzero(cal)

    def _threads(self):
        return threadpool_limits(limits=self.n_threads, user_api="openmp")

    def fit(self, X: pd.DataFrame, y, sample_time=None, groups=None):
        with self._threads():
            return self._fit(X, y, sample_time, groups)

    def _fit_columns(self, X: pd.DataFrame, y: np.ndarray) -> None:
        """The features used, the categories kept and the typical values (for the drivers)."""
        if len(np.unique(y)) < 2:
            raise ValueError("the win model needs both won and lost examples to train")
        self.categorical_, numeric = self._columns()
        # A feature that only a final-state export carries, and whose being known tells the
        # outcome, would be a peek at the label: it is left out (see ml.features).
        self.leaks_ = final_state_leaks(X, y, [c for c in self.final_state_features or ()
                                               if c in numeric])
        # A feature never known in training (e.g. days_to_expected_close without deal history)
        # carries nothing; it is left out.
        self.numeric_ = [c for c in numeric if c not in self.leaks_
                         and pd.to_numeric(X[c], errors="coerce").notna().any()]
        self.dropped_features_ = [c for c in numeric if c not in self.numeric_]
        self.features_ = self.categorical_ + self.numeric_
        self.categories_ = {}
        self.reference_values_ = {}
        for col in self.categorical_:
            counts = X[col].astype(object).value_counts()
            self.categories_[col] = counts.index[:self.max_categories].tolist()
            self.reference_values_[col] = counts.index[0] if len(counts) else None
        for col in self.numeric_:
            values = pd.to_numeric(X[col], errors="coerce")
            self.reference_values_[col] = float(np.nanmedian(values))

    def _fit(self, X: pd.DataFrame, y, sample_time, groups):
        y = np.asarray(y, dtype=int)
        self._fit_columns(X, y)
        encoded = self._encode(X)

        fit_rows, val_rows, cal_rows = self._split(X, y, sample_time, groups)
        self.booster_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            categorical_features=[j < len(self.categorical_) for j in range(len(self.features_))],
            early_stopping=len(val_rows) > 0, n_iter_no_change=20,
            random_state=self.random_state,
        )
        if len(val_rows):
            self.booster_.fit(encoded[fit_rows], y[fit_rows],
                              X_val=encoded[val_rows], y_val=y[val_rows])
        else:
            self.booster_.fit(encoded[fit_rows], y[fit_rows])
        n_cal = len(cal_rows)
        self.calibrator_ = None
        self.calibration_method_ = None
        if n_cal:
            raw = self.booster_.predict_proba(encoded[cal_rows])[:, 1]
            method = self.calibration
            if method == "auto":  # isotonic overfits small calibration sets
                method = "isotonic" if n_cal >= ISOTONIC_MIN_ROWS else "sigmoid"
            self.calibration_method_ = method
            if method == "sigmoid":
                self.calibrator_ = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y[cal_rows])
            elif method == "isotonic":
                self.calibrator_ = IsotonicRegression(y_min=0.0, y_max=1.0,
                                                      out_of_bounds="clip").fit(raw, y[cal_rows])
            else:
                raise ValueError(f"calibration must be 'auto', 'isotonic', 'sigmoid' or None, "
                                 f"not {self.calibration!r}")
        self.classes_ = np.array([0, 1])
        self.n_fit_rows_, self.n_calibration_rows_ = len(fit_rows) + len(val_rows), n_cal
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        with self._threads():
            p = self._proba_encoded(self._encode(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    # -- explanations ----------------------------------------------------------------------
    def top_drivers(self, X: pd.DataFrame, k: int = 3) -> pd.DataFrame:
        """Per row, the k features whose replacement by the training median (numeric) or most
        frequent value (categorical) moves the probability most.

        Returns a long frame: row (position in X), rank, feature, value, effect, where effect =
        P(win) with the deal's own value - P(win) with the typical value (positive: this value
        raises the deal's chances).
        """
        with self._threads():
            return self._top_drivers(X, k)

    def _top_drivers(self, X: pd.DataFrame, k: int) -> pd.DataFrame:
        encoded = self._encode(X)
        base = self._proba_encoded(encoded)
        reference = self._encode(pd.DataFrame({c: [self.reference_values_[c]]
                                               for c in self.features_}))[0]
        effects = np.empty((len(X), len(self.features_)))
        for j in range(len(self.features_)):
            swapped = encoded.copy()
            swapped[:, j] = reference[j]
            effects[:, j] = base - self._proba_encoded(swapped)
        k = min(k, len(self.features_))
        top = np.argsort(-np.abs(effects), axis=1, kind="stable")[:, :k]
        rows = np.repeat(np.arange(len(X)), k)
        cols = top.ravel()
        names = np.array(self.features_)[cols]
        # Gathered a feature at a time (an .iloc per row took seconds on a big open pipeline).
        values = np.empty(len(rows), dtype=object)
        for j, name in enumerate(self.features_):
            at = cols == j
            if at.any():
                values[at] = X[name].to_numpy(dtype=object)[rows[at]]
        return pd.DataFrame({"row": rows, "rank": np.tile(np.arange(1, k + 1), len(X)),
                             "feature": names, "value": values,
                             "effect": effects[rows, cols]})


LOG_FEATURES = ("days_in_stage", "deal_age_days", "amount_reporting")
SMALL_NUMERIC = ("stage_position", "crm_probability", "days_in_stage", "deal_age_days",
                 "n_stage_moves", "n_backward_moves", "amount_reporting", "owner_win_rate",
                 "source_win_rate")


class SmallWinModel(WinModel):
    """For small orgs: L2-regularised logistic regression on a few features.

    The pipeline stage one-hot (the `max_categories` most frequent; the rest share the
    intercept) and the numeric features in SMALL_NUMERIC (days, age and amount as log1p;
    missing values at the training median; standardised). `C` is the inverse L2 strength.
    A few hundred deals are too few for gradient boosting and a held-out calibration set; a
    linear model needs neither and is close to calibrated as fitted. The same scikit-learn
    API, explanations and final-state guard as WinModel.
    """

    def __init__(self, categorical_features=("pipeline_stage",), numeric_features=SMALL_NUMERIC,
                 C=0.03, max_categories=20, n_threads=1, random_state=0,
                 final_state_features=FINAL_STATE_FEATURES):
        self.categorical_features = categorical_features
        self.numeric_features = numeric_features
        self.C = C
        self.max_categories = max_categories
        self.n_threads = n_threads
        self.random_state = random_state
        self.final_state_features = final_state_features

    def _fit(self, X: pd.DataFrame, y, sample_time, groups):
        y = np.asarray(y, dtype=int)
        self._fit_columns(X, y)
        design = self._design(self._encode(X), fit=True)
        self.logistic_ = LogisticRegression(C=self.C, max_iter=2000).fit(design, y)
        self.calibrator_ = None
        self.calibration_method_ = None
        self.classes_ = np.array([0, 1])
        self.n_fit_rows_, self.n_calibration_rows_ = len(X), 0
        return self

    def _design(self, encoded: np.ndarray, fit: bool = False) -> np.ndarray:
        k = len(self.categorical_)
        parts = [(encoded[:, [j]] == np.arange(len(self.categories_[col]))[None, :]).astype(float)
                 for j, col in enumerate(self.categorical_)]
        num = encoded[:, k:].copy()
        for j, col in enumerate(self.numeric_):
            if col in LOG_FEATURES:
                num[:, j] = np.log1p(np.maximum(num[:, j], 0))
        if fit:
            self.fill_values_ = np.nanmedian(num, axis=0) if num.shape[1] else np.zeros(0)
        num = np.where(np.isnan(num), self.fill_values_[None, :], num)
        if fit:
            self.means_ = num.mean(axis=0)
            scales = num.std(axis=0)
            self.scales_ = np.where(scales > 0, scales, 1.0)
        return np.hstack(parts + [(num - self.means_) / self.scales_])

    def _proba_encoded(self, encoded: np.ndarray) -> np.ndarray:
        p = self.logistic_.predict_proba(self._design(encoded))[:, 1]
        return np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)


def cutoff_of(examples: pd.DataFrame) -> pd.Timestamp:
    """The training cut-off the labels were read at (the end of every censored duration)."""
    ends = examples["as_of"] + pd.to_timedelta(examples["duration_days"], unit="D")
    return pd.Timestamp(ends.max()).round("s")


def labels_known_at(examples: pd.DataFrame, when) -> pd.DataFrame:
    """Examples dated before `when`, relabelled with what was known at `when`: a deal closed
    after `when` is censored at `when` (duration shortened accordingly)."""
    when = pd.Timestamp(when)
    ex = examples[examples["as_of"] < when].copy()
    horizon = (when - ex["as_of"]) / pd.Timedelta(days=1)
    later = ex["duration_days"].to_numpy() > horizon.to_numpy()
    if later.any():
        event = ex["event"].astype(object).to_numpy()
        event[later] = "censored"
        ex["event"] = pd.Categorical(event, categories=["won", "lost", "censored"])
        ex.loc[later, "duration_days"] = horizon[later]
        ex.loc[later, "won"] = 0
    return ex


def _resolved(examples: pd.DataFrame) -> pd.DataFrame:
    return examples[examples["event"].astype(str) != "censored"]


def maturity(examples: pd.DataFrame, maturity_days="auto", quantile: float = 0.9) -> float:
    """Days an example needs behind it before its outcome counts as a label.

    The outcome of a recent example is known only if the deal closed fast, and fast closes are
    mostly losses: training on them alone biases P(win) down. 'auto' waits the `quantile` of the
    as-of-to-close time of the examples with a known outcome (at most a year).
    """
    if maturity_days != "auto":
        return float(maturity_days or 0.0)
    closed = _resolved(examples)["duration_days"]
    return float(min(closed.quantile(quantile), 365.0)) if len(closed) else 0.0


# Below these counts a temporal hold-out says nothing: the stage baseline scores instead
# (see ShortHistoryError).
MIN_TRAIN_EXAMPLES, MIN_TRAIN_PER_CLASS = 100, 10
MIN_TEST_EXAMPLES, MIN_TEST_PER_CLASS = 30, 5
# Fewer distinct deals than this among the mature labelled examples: SmallWinModel.
SMALL_ORG_DEALS = 2000


class ShortHistoryError(ValueError):
    """Too little history with known outcomes to train and evaluate a win model."""


def classification_report(y, p, n_bins: int = 10) -> dict:
    return {"auc": metrics.roc_auc(y, p), "brier": metrics.brier_score(y, p),
            "ece": metrics.expected_calibration_error(y, p, n_bins),
            "log_loss": metrics.log_loss(y, p)}


def evaluate_win_model(examples: pd.DataFrame, split_date, model: WinModel | None = None,
                       seed: int = 0, n_bins: int = 10, maturity_days="auto") -> dict:
    """Temporal hold-out of the win model against the stage baseline (see module doc).

    Train: examples dated at least `maturity_days` before the split, with the outcomes known at
    the split. Test: examples dated from the split to `maturity_days` before the cut-off, with
    the outcomes known at the cut-off. Returns auc, brier, ece, log_loss, their baseline_*
    twins, n_train, n_test, split_date, maturity_days, test_win_rate and `reliability` /
    `baseline_reliability` (lists of reliability-curve points).
    """
    split = pd.Timestamp(split_date)
    known = labels_known_at(examples, split)
    wait = pd.Timedelta(days=maturity(known, maturity_days))
    train = _resolved(known[known["as_of"] <= split - wait])
    test_end = cutoff_of(examples) - pd.Timedelta(days=maturity(examples, maturity_days))
    test = _resolved(examples[(examples["as_of"] >= split) & (examples["as_of"] <= test_end)])
    n_won, n_test_won = int(train["won"].sum()), int(test["won"].sum())
    if (len(train) < MIN_TRAIN_EXAMPLES or min(n_won, len(train) - n_won) < MIN_TRAIN_PER_CLASS
            or len(test) < MIN_TEST_EXAMPLES
            or min(n_test_won, len(test) - n_test_won) < MIN_TEST_PER_CLASS):
        raise ShortHistoryError(
            f"short history: the hold-out split {split.date()} leaves {len(train)} training "
            f"({n_won} won) and {len(test)} test ({n_test_won} won) examples with known "
            f"outcomes; a win model needs at least {MIN_TRAIN_EXAMPLES} and {MIN_TEST_EXAMPLES} "
            f"(with {MIN_TRAIN_PER_CLASS} and {MIN_TEST_PER_CLASS} of each outcome)")
    model = WinModel(random_state=seed) if model is None else clone(model)
    model.fit(train, train["won"].to_numpy(), sample_time=train["as_of"])
    baseline = StageWinRateBaseline().fit(train, train["won"].to_numpy())
    y = test["won"].to_numpy()
    p = model.predict_proba(test)[:, 1]
    b = baseline.predict_proba(test)[:, 1]
    report = classification_report(y, p, n_bins)
    report.update({f"baseline_{k}": v for k, v in classification_report(y, b, n_bins).items()})
    crm, source, coverage = crm_baseline(test)
    if crm is not None and len(np.unique(y)) == 2:
        report.update({"crm_auc": metrics.roc_auc(y, crm), "crm_source": source,
                       "crm_coverage": round(coverage, 4)})
        if source == "crm_probability":
            report["crm_brier"] = metrics.brier_score(y, np.clip(crm, 0.0, 1.0))
    report.update({
        "model_kind": type(model).__name__,
        "features_left_out": dict(getattr(model, "leaks_", {})),
        "n_train": int(len(train)), "n_test": int(len(test)),
        "split_date": str(split.date()), "maturity_days": round(wait / pd.Timedelta(days=1), 1),
        "test_win_rate": float(y.mean()),
        "reliability": metrics.reliability_curve(y, p, n_bins).to_dict("records"),
        "baseline_reliability": metrics.reliability_curve(y, b, n_bins).to_dict("records"),
        # Global importance on the hold-out (data the model did not see), not on its training rows.
        "feature_importance": (permutation_importance_table(model, test, y, n_rows=2000, seed=seed)
                               .round(5).to_dict("records") if len(np.unique(y)) == 2 else []),
    })
    return report


def default_split(examples: pd.DataFrame, test_fraction: float = 0.2,
                  maturity_days="auto") -> pd.Timestamp:
    """The as-of date leaving the newest `test_fraction` of the mature examples for the test."""
    end = cutoff_of(examples) - pd.Timedelta(days=maturity(examples, maturity_days))
    mature = examples.loc[examples["as_of"] <= end, "as_of"]
    return pd.Timestamp(mature.quantile(1 - test_fraction)).normalize()


def default_win_model(examples: pd.DataFrame, seed: int = 0, maturity_days="auto") -> WinModel:
    """SmallWinModel when the mature examples with a known outcome come from fewer than
    SMALL_ORG_DEALS deals, else WinModel (gradient boosting)."""
    end = cutoff_of(examples) - pd.Timedelta(days=maturity(examples, maturity_days))
    n_deals = _resolved(examples[examples["as_of"] <= end])["deal_key"].nunique()
    return (SmallWinModel(random_state=seed) if n_deals < SMALL_ORG_DEALS
            else WinModel(random_state=seed))


def train_win_model(examples: pd.DataFrame, seed: int = 0, split_date=None,
                    model: WinModel | None = None, maturity_days="auto") -> tuple[WinModel, dict]:
    """Evaluate on a temporal hold-out, then fit on every mature example with a known outcome.
    `model` defaults to `default_win_model` (logistic regression for small orgs).

    Returns the fitted model and the evaluation report (with the training window added).
    Raises ShortHistoryError when the history is too short to evaluate a model.
    """
    if _resolved(examples).empty:
        raise ShortHistoryError("short history: no deal has closed yet (no outcome to learn from)")
    if model is None:
        model = default_win_model(examples, seed, maturity_days)
    split = (default_split(examples, maturity_days=maturity_days) if split_date is None
             else pd.Timestamp(split_date))
    if pd.isna(split):
        raise ShortHistoryError("short history: no example is older than the maturity "
                                f"({maturity(examples, maturity_days):.0f} days) yet")
    report = evaluate_win_model(examples, split, model=model, seed=seed,
                                maturity_days=maturity_days)
    end = cutoff_of(examples) - pd.Timedelta(days=maturity(examples, maturity_days))
    train = _resolved(examples[examples["as_of"] <= end])
    fitted = (WinModel(random_state=seed) if model is None else clone(model))
    fitted.fit(train, train["won"].to_numpy(), sample_time=train["as_of"])
    report.update({"n_fit": int(len(train)), "train_from": str(train["as_of"].min().date()),
                   "train_to": str(train["as_of"].max().date()),
                   "cutoff": str(cutoff_of(examples))})
    return fitted, report


def permutation_importance_table(model, X: pd.DataFrame, y, n_rows: int = 5000,
                                 n_repeats: int = 3, seed: int = 0,
                                 scoring: str = "roc_auc") -> pd.DataFrame:
    """Global importance: the drop in `scoring` when one feature's column is shuffled, on a
    seeded sample of at most `n_rows` rows. Sorted, most important first."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(X), size=min(n_rows, len(X)), replace=False))
    features = list(getattr(model, "features_", FEATURES))
    Xs = X.iloc[rows][features].reset_index(drop=True)
    ys = np.asarray(y)[rows]
    result = permutation_importance(model, Xs, ys, scoring=scoring, n_repeats=n_repeats,
                                    random_state=seed)
    return (pd.DataFrame({"feature": features, "importance": result.importances_mean,
                          "std": result.importances_std})
            .sort_values("importance", ascending=False, kind="stable").reset_index(drop=True))
