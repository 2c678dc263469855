"""Train both models from the warehouse's canonical frames and score every open deal.

Plain functions between the Dagster assets and the estimators: `train_models` builds the as-of
examples once and fits the win model (with its stage baseline) and the time-to-close model;
`score_open_deals` gives, per open deal, P(win), the baseline's P(win), the expected close date,
P(closing won this/next quarter), whether it is stalled and the features that moved it most.

Short history: when the history is too short to train and evaluate a model (a young org, say
a few months of deals), `train_models` does not fail: the stage baselines stand in (the win
rate and the Aalen–Johansen curve of each stage, fitted on whatever outcomes are known) and the
report's `fallback` says why in one line. `baseline_models` gives the same stand-ins on demand
(for a workspace whose store has no model trained on its data).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ml.features import build_scoring_features, examples_from_timeline, prepare
from ml.metrics import kaplan_meier
from ml.periods import quarter_of
from ml.survival import (
    StageCumulativeIncidenceBaseline,
    TimeToCloseModel,
    train_time_to_close,
)
from ml.win_model import (
    ShortHistoryError,
    StageWinRateBaseline,
    WinModel,
    train_win_model,
)

SCORE_COLUMNS = [
    "deal_key", "pipeline", "stage", "owner", "amount_reporting", "p_win", "p_win_baseline",
    "expected_close_date", "p_close_this_period", "p_close_next_period", "days_in_stage",
    "stage_p90_days", "is_stalled", "top_drivers",
]


@dataclass
class WinArtifact:
    """What the model store keeps for the win model: the model and the baseline it must beat
    (model None: the history was too short, the baseline scores)."""

    model: WinModel | None
    baseline: StageWinRateBaseline


TRAINING_STEPS = ("as-of timeline", "win examples", "win model", "time-to-close examples",
                  "time-to-close model")


def train_models(deals: pd.DataFrame, stage_events: pd.DataFrame, pipeline_stages: pd.DataFrame,
                 cutoff, seed: int = 0, max_rows: int = 500_000, progress=None):
    """Examples as of every week up to `cutoff`; returns (win examples, time-to-close examples,
    win, win_report, ttc, ttc_report). `progress`, if given, is called after each of
    TRAINING_STEPS with "win model (3/5)" (as ml.backtest.run_backtest reports its origins).

    The two models read different samples of the same weekly as-of dates, as the backtest does
    (ml.backtest.fit_models): the win model at most four per deal (uncapped, a lingering deal's
    many near-identical rows dominated and the model lost to the stage baseline on its hold-out:
    AUC 0.701 vs 0.715 on the 2,000-deal company, seed 11; capped 0.765 vs 0.717); time to close
    every one, so the examples weigh like the open pipeline on any day."""
    def step_done(i: int) -> None:
        if progress is not None:
            progress(f"{TRAINING_STEPS[i - 1]} ({i}/{len(TRAINING_STEPS)})")

    timeline = prepare(deals, stage_events, pipeline_stages, cutoff)
    step_done(1)
    examples = examples_from_timeline(timeline, max_rows=max_rows, seed=seed)
    step_done(2)
    # The baseline a sales team already has: the win rate of closed deals by stage.
    baseline = _stage_win_baseline(examples)
    try:
        model, win_report = train_win_model(examples, seed=seed)
    except ShortHistoryError as err:
        model, win_report = None, _fallback_report(examples, f"{err}; the stage win rate scores")
    step_done(3)
    ttc_examples = examples_from_timeline(timeline, cap_per_deal=None, max_rows=max_rows, seed=seed)
    step_done(4)
    try:
        ttc, ttc_report = train_time_to_close(ttc_examples, seed=seed)
    except ValueError as err:  # too few examples or closes to fit or to evaluate
        ttc = StageCumulativeIncidenceBaseline().fit(ttc_examples)
        ttc_report = _fallback_report(ttc_examples, f"short history: {err}; the stage "
                                                    "close-time curves score")
    step_done(5)
    return examples, ttc_examples, WinArtifact(model, baseline), win_report, ttc, ttc_report


def used_features(artifact) -> list[str]:
    """The features a stored artifact really uses (for its card): the win model's, the
    time-to-close model's design columns, or the stage baseline's."""
    model = artifact.model if isinstance(artifact, WinArtifact) else artifact
    if model is None or isinstance(model, StageCumulativeIncidenceBaseline):
        return ["pipeline", "pipeline_stage"]
    return list(getattr(model, "features_", None) or getattr(model, "columns_", []))


def _stage_win_baseline(examples: pd.DataFrame) -> StageWinRateBaseline:
    # No outcome known yet (a brand-new workspace): the baseline says 0.5 everywhere.
    resolved = examples[examples["event"].astype(str) != "censored"]
    return StageWinRateBaseline().fit(resolved, resolved["won"].to_numpy())


def _fallback_report(examples: pd.DataFrame, reason: str) -> dict:
    resolved = examples["event"].astype(str) != "censored"
    return {"fallback": reason, "n_examples": len(examples),
            "n_resolved": int(resolved.sum()), "n_deals": int(examples["deal_key"].nunique())}


def baseline_models(deals: pd.DataFrame, stage_events: pd.DataFrame,
                    pipeline_stages: pd.DataFrame, cutoff, seed: int = 0,
                    max_rows: int = 200_000) -> tuple[WinArtifact, StageCumulativeIncidenceBaseline]:
    """The stage baselines alone, fitted on these frames: (win artifact without a model, the
    stage close-time curves) — what scores when no model of this workspace may be used."""
    timeline = prepare(deals, stage_events, pipeline_stages, cutoff)
    examples = examples_from_timeline(timeline, cap_per_deal=None, max_rows=max_rows, seed=seed)
    return (WinArtifact(None, _stage_win_baseline(examples)),
            StageCumulativeIncidenceBaseline().fit(examples))


def stage_duration_quantiles(stays: pd.DataFrame) -> pd.DataFrame:
    """Median and p90 days per (pipeline, stage) from Kaplan–Meier over stays, open stays censored.

    stays: pipeline, stage, days_in_stage, is_open (fct_stage_transitions' open-kind rows).
    A quantile the curve never reaches (too many open stays) is left empty.
    """
    rows = []
    for (pipeline, stage), group in stays.dropna(subset=["days_in_stage"]).groupby(["pipeline", "stage"]):
        table = kaplan_meier(group["days_in_stage"].to_numpy(float), ~group["is_open"].to_numpy(bool))
        out = {"pipeline": pipeline, "stage": stage, "stays": len(group)}
        for name, q in (("median_days", 0.5), ("p90_days", 0.9)):
            reached = table.loc[table["survival"] <= 1 - q, "time"]
            out[name] = float(reached.iloc[0]) if len(reached) else None
        rows.append(out)
    return pd.DataFrame(rows, columns=["pipeline", "stage", "stays", "median_days", "p90_days"])


def _drivers_text(drivers: pd.DataFrame, n_rows: int) -> list[str]:
    """'segment −38%; owner +18%' per row of the scored frame ('' for a row without drivers).
    drivers: WinModel.top_drivers' long frame, rows in order, ranks in order within a row."""
    parts = [f"{f} {'+' if e >= 0 else '−'}{abs(e):.0%}"
             for f, e in zip(drivers["feature"].to_numpy(), drivers["effect"].to_numpy())]
    text = [""] * n_rows
    rows = drivers["row"].to_numpy()
    # One join per row over its slice of the long frame, not a groupby with a group per deal.
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, int)
    for start, end in zip(starts, np.r_[starts[1:], len(rows)].astype(int)):
        text[rows[start]] = "; ".join(parts[start:end])
    return text


def score_open_deals(win: WinArtifact, ttc: TimeToCloseModel, deals: pd.DataFrame,
                     stage_events: pd.DataFrame, pipeline_stages: pd.DataFrame, as_of,
                     durations: pd.DataFrame, n_drivers: int = 3,
                     use_model: bool = True) -> pd.DataFrame:
    """One row per deal open at `as_of` (see SCORE_COLUMNS).

    use_model=False (or no model in `win`) scores p_win with the stage baseline (when no win
    model passed its gate); the deal then has no drivers. `ttc` may be the stage baseline
    (StageCumulativeIncidenceBaseline) too."""
    use_model = use_model and win.model is not None
    as_of = pd.Timestamp(as_of)
    X = build_scoring_features(deals, stage_events, pipeline_stages, as_of)
    if X.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    this_q, next_q = quarter_of(as_of.date()), quarter_of(as_of.date(), 1)
    horizons = [(pd.Timestamp(p.end) + pd.Timedelta(days=1) - as_of) / pd.Timedelta(days=1)
                for p in (this_q, next_q)]
    won_within, close_date = ttc.won_within_and_close_date(X, horizons)
    quantiles = durations.set_index(["pipeline", "stage"])["p90_days"]
    p90 = pd.Series([quantiles.get((p, s)) for p, s in zip(X["pipeline"], X["stage"])], dtype=float)
    owners = deals.set_index("deal_key")["owner"] if "owner" in deals else pd.Series(dtype=object)
    scores = pd.DataFrame({
        "deal_key": X["deal_key"],
        "pipeline": X["pipeline"],
        "stage": X["stage"],
        "owner": X["deal_key"].map(owners),
        "amount_reporting": X["amount_reporting"],
        "p_win": (win.model if use_model else win.baseline).predict_proba(X)[:, 1],
        "p_win_baseline": win.baseline.predict_proba(X)[:, 1],
        "expected_close_date": close_date.to_numpy(),
        "p_close_this_period": won_within[:, 0],
        "p_close_next_period": np.clip(won_within[:, 1] - won_within[:, 0], 0, 1),
        "days_in_stage": X["days_in_stage"],
        "stage_p90_days": p90.to_numpy(),
    })
    scores["is_stalled"] = (scores["days_in_stage"] > scores["stage_p90_days"]).fillna(False).astype(bool)
    scores["top_drivers"] = (_drivers_text(win.model.top_drivers(X, k=n_drivers), len(X))
                             if use_model else "")
    return scores[SCORE_COLUMNS]


def this_and_next_quarter(day: date) -> tuple[str, str]:
    return quarter_of(day).label, quarter_of(day, 1).label
