"""Known answers for the model metrics (ml/metrics.py), each computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter

from ml import metrics


def harrell_by_pairs(durations, predicted, events) -> float:
    """Harrell's C by enumerating pairs: comparable when the shorter time is an event, or at a
    tied time when only one of the two is an event (the censored one outlived it); two events at
    the same time are not comparable. Concordant when the shorter time has the smaller
    prediction; tied predictions count one half."""
    num = den = 0.0
    for i, j in itertools.permutations(range(len(durations)), 2):
        shorter = durations[i] < durations[j] or (durations[i] == durations[j] and not events[j])
        if shorter and events[i]:
            den += 1
            num += 1.0 if predicted[i] < predicted[j] else 0.5 if predicted[i] == predicted[j] else 0
    return num / den


def test_concordance_of_a_perfect_order_is_one_and_of_the_reverse_zero():
    t = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    e = np.ones(5, dtype=bool)
    assert metrics.concordance_index(t, t * 10, e) == 1.0
    assert metrics.concordance_index(t, -t, e) == 0.0


def test_concordance_hand_case_with_censoring_and_ties():
    # Comparable pairs (shorter time an event): (1,2) (1,3) (1,3') (1,5), (3,5), (3',5) = 6;
    # the tied event times 3 and 3' are not comparable; subject 2 is censored.
    # Concordant: the four of subject 1, (3,5); (3',5) ties in prediction -> 0.5. C = 5.5 / 6.
    t = [1, 2, 3, 3, 5]
    e = [1, 0, 1, 1, 0]
    pred = [2, 5, 3, 4, 4]
    assert metrics.concordance_index(t, pred, e) == pytest.approx(5.5 / 6)
    assert harrell_by_pairs(t, pred, e) == pytest.approx(5.5 / 6)
    rng = np.random.default_rng(3)
    t, pred = rng.integers(1, 8, 40), rng.integers(1, 5, 40)
    e = rng.random(40) < 0.6
    assert metrics.concordance_index(t, pred, e) == pytest.approx(harrell_by_pairs(t, pred, e))


def test_expected_calibration_error_hand_case():
    y = [0, 0, 1, 1, 1, 0, 1, 0]
    p = [0.1, 0.15, 0.8, 0.9, 0.85, 0.7, 0.3, 0.35]
    # Bin [0, .5): mean p 0.225, rate 1/4 -> 0.025; bin [.5, 1]: mean p 0.8125, rate 3/4 ->
    # 0.0625; half the rows each: ECE = 0.04375.
    assert metrics.expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.04375)
    curve = metrics.reliability_curve(y, p, n_bins=2)
    assert curve["mean_predicted"].tolist() == pytest.approx([0.225, 0.8125])
    assert curve["observed_rate"].tolist() == pytest.approx([0.25, 0.75])
    assert curve["count"].tolist() == [4, 4]
    assert metrics.expected_calibration_error([0, 1, 1, 0], [0.0, 1.0, 1.0, 0.0]) == 0.0


def test_classification_scores_hand_case():
    y, p = [0, 1, 1, 0], [0.2, 0.6, 0.9, 0.4]
    assert metrics.brier_score(y, p) == pytest.approx((0.04 + 0.16 + 0.01 + 0.16) / 4)
    assert metrics.log_loss(y, p) == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.9, 0.6])))
    assert metrics.roc_auc(y, p) == 1.0  # every won ranks above every lost
    assert metrics.roc_auc([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.75)
    assert np.isnan(metrics.roc_auc([1, 1], [0.3, 0.4]))


def test_kaplan_meier_on_five_stays_by_hand():
    # Stays of 2, 3, 3 (censored), 5 and 8 (censored) days.
    # S(2) = 4/5 = 0.8; S(3) = 0.8 x 3/4 = 0.6 (the censored 3 is at risk at 3);
    # S(5) = 0.6 x 1/2 = 0.3; S(8) = 0.3 (a censoring does not drop the curve).
    km = metrics.kaplan_meier([2, 3, 3, 5, 8], [1, 1, 0, 1, 0])
    assert km["time"].tolist() == [2, 3, 5, 8]
    assert km["at_risk"].tolist() == [5, 4, 2, 1]
    assert km["survival"].tolist() == pytest.approx([0.8, 0.6, 0.3, 0.3])
    assert metrics.survival_at(km, [0, 2, 2.5, 4, 100]).tolist() == pytest.approx([1, .8, .8, .6, .3])
    assert metrics.survival_at(km, [3], left_limit=True).tolist() == pytest.approx([0.8])
    lifelines_km = KaplanMeierFitter().fit([2, 3, 3, 5, 8], [1, 1, 0, 1, 0])
    assert lifelines_km.predict([2, 3, 5, 8]).tolist() == pytest.approx([0.8, 0.6, 0.3, 0.3])


def test_cumulative_incidence_hand_case_with_a_competing_cause():
    # Days 1 won, 2 lost, 3 censored, 4 won. At 1: 1/4 won -> 0.25, S = 0.75. At 2: a loss,
    # S = 0.5. At 3: censored. At 4: the one at risk wins: + S(4-) x 1/1 = 0.5 -> 0.75.
    causes = ["won", "lost", None, "won"]
    won = metrics.cumulative_incidence([1, 2, 3, 4], causes, "won")
    lost = metrics.cumulative_incidence([1, 2, 3, 4], causes, "lost")
    assert won["cif"].tolist() == pytest.approx([0.25, 0.25, 0.25, 0.75])
    assert lost["cif"].tolist() == pytest.approx([0.0, 0.25, 0.25, 0.25])
    # No censoring: the cumulative incidence is the plain share.
    cif = metrics.cumulative_incidence([1, 2, 2, 3, 5], ["won", "lost", "won", "won", "lost"], "won")
    assert metrics.survival_at(cif, [2, 10], column="cif", start=0.0).tolist() == pytest.approx([0.4, 0.6])
    ajf = AalenJohansenFitter(jitter_level=1e-6, seed=0)
    ajf.fit(pd.Series([1, 2, 3, 4.0]), pd.Series([1, 2, 0, 1]), event_of_interest=1)
    assert float(ajf.cumulative_density_.iloc[-1, 0]) == pytest.approx(0.75, abs=1e-6)


def test_brier_score_with_censoring_weights_by_hand():
    # At t = 2.5: subject 1 won at 1 (weight 1/G(1-) = 1, (1 - 0.8)^2 = 0.04); subject 2 was
    # censored at 2 (weight 0); subject 3 is still open (weight 1/G(2.5) = 1/0.5, (0 - 0.4)^2).
    # BS = (0.04 + 0 + 2 x 0.16) / 3 = 0.12.
    bs = metrics.brier_score_at([2.5], [[0.8], [0.1], [0.4]], [1, 2, 3], [1, 0, 1], [1, 0, 1])
    assert bs.tolist() == pytest.approx([0.12])


def test_integrated_brier_score_known_answers():
    durations = np.array([1.0, 2.0, 3.0, 4.0])
    times = np.array([0.5, 1.5, 2.5, 3.5])
    perfect = (durations[:, None] <= times[None, :]).astype(float)
    events = np.ones(4, dtype=bool)
    assert metrics.integrated_brier_score(times, perfect, durations, events, events) == 0.0
    half = np.full((4, 4), 0.5)
    assert metrics.integrated_brier_score(times, half, durations, events, events) == pytest.approx(0.25)
    # A competing outcome is an observed 'not this event': predicting it as 0 is right.
    lost = np.array([False, True, True, False])
    target = (durations[:, None] <= times[None, :]) & ~lost[:, None]
    assert metrics.integrated_brier_score(times, target.astype(float), durations, ~lost, events) == 0.0
