"""The arrival calibration of the open pipeline (ml.forecast_calibration.forecast_arrival): a
known answer with zombie deals that never close, worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.forecast_calibration import apply_arrival, forecast_arrival

CUTOFF = pd.Timestamp("2024-01-01")
AMOUNT = 1000.0


def zombie_examples(zombie_share: dict[str, float], weeks: int = 52, deals: int = 100) -> pd.DataFrame:
    """Every weekly as-of date, `deals` open deals per pipeline. A share of them are zombies
    (never close: censored at the cut-off); of the others half are lost and half won, the winners
    closing 3, 6, ..., 60 days after the as-of date. A deal that would close after the cut-off
    is censored there, as in real data."""
    rows = []
    for w in range(weeks):
        as_of = CUTOFF - pd.Timedelta(days=7 * (w + 1))
        left = (CUTOFF - as_of) / pd.Timedelta(days=1)
        for pipeline, share in zombie_share.items():
            zombies = int(round(share * deals))
            live = deals - zombies
            for i in range(deals):
                if i < zombies:
                    event, duration = "censored", left
                elif (i - zombies) % 2 == 0:  # a winner; live/2 of them
                    k = (i - zombies) // 2
                    event, duration = "won", 3.0 * (k + 1) * 20 / (live / 2)
                else:
                    event, duration = "lost", 10.0
                if duration > left:
                    event, duration = "censored", left
                rows.append({"deal_key": f"{pipeline}{w}-{i}", "pipeline": pipeline, "as_of": as_of,
                             "amount_reporting": AMOUNT, "event": event, "duration_days": duration})
    return pd.DataFrame(rows)


def model_won_by(frame: pd.DataFrame, days) -> np.ndarray:
    """The corrected models as a young org's would have them: P(win) 0.5 (the win rate of the
    deals that resolved) and every winner won evenly within 60 days."""
    return 0.5 * np.clip(np.asarray(days, float)[None, :] / 60.0, 0, 1).repeat(len(frame), axis=0)


def test_zombies_that_never_close_scale_the_arrival_down_by_the_share_that_lives():
    """Pipeline A: 60% zombies. Among the live 40%, half win, evenly within 60 days, so the money
    won within h of an as-of date is 0.4 x 0.5 x h/60 of the open amount — 0.4 of what the
    models say (0.5 x h/60) — at 30 and 60 days alike. Pipeline B has no zombies: ratio 1.
    Dates without h days of follow-up must be left out (their winners are still censored), else
    the ratio would come out lower than 0.4."""
    examples = zombie_examples({"A": 0.6, "B": 0.0})
    table = forecast_arrival(model_won_by, examples, CUTOFF, horizons=[30.0, 60.0], pseudo_wins=0.0)
    ratio = table.set_index(["pipeline", "horizon"])["ratio"]
    assert ratio[("A", 30.0)] == pytest.approx(0.4)
    assert ratio[("A", 60.0)] == pytest.approx(0.4)
    assert ratio[("B", 30.0)] == pytest.approx(1.0)
    assert ratio[("B", 60.0)] == pytest.approx(1.0)
    assert ratio[("all", 30.0)] == pytest.approx(0.7)
    dates = table.set_index(["pipeline", "horizon"])["dates"]
    assert dates[("A", 30.0)] == 52 - 4 and dates[("A", 60.0)] == 52 - 8  # 4 / 8 weeks lack follow-up

    # The forecast of the next 30 days for 100 open deals of A like those: by hand, 100 x 1000 x
    # 0.4 x 0.5 x 30/60 = 10,000. Uncorrected it says 25,000 (2.5x); corrected it is right.
    days = np.arange(91, dtype=float)
    curves = np.clip(days / 60.0, 0, 1)[None, :].repeat(100, axis=0)
    p_win = np.full(100, 0.5)
    truth = 100 * AMOUNT * 0.4 * 0.5 * 30 / 60
    uncorrected = (AMOUNT * p_win * curves[:, 30]).sum()
    corrected = (AMOUNT * p_win * apply_arrival(curves, table, np.array(["A"] * 100))[:, 30]).sum()
    assert uncorrected == pytest.approx(2.5 * truth)
    assert corrected == pytest.approx(truth)
    # A pipeline the table has never seen takes the overall ratio; the curves stay monotone.
    other = apply_arrival(curves[:1], table, np.array(["C"]))
    assert other[0, 30] == pytest.approx(0.7 * 0.5)
    assert (np.diff(apply_arrival(curves, table, np.array(["A"] * 100)), axis=1) >= 0).all()


def test_shrinkage_bounds_and_short_follow_up():
    """Shrunk towards 1 with `pseudo_wins` expected wins: with few deals the ratio moves only part
    of the way; a horizon seen on too few as-of dates takes the previous horizon's ratio; the
    bounds hold."""
    few = zombie_examples({"A": 0.6}, weeks=12, deals=10)
    table = forecast_arrival(model_won_by, few, CUTOFF, horizons=[30.0, 60.0], pseudo_wins=10.0, min_dates=5)
    r = table.set_index(["pipeline", "horizon"])["ratio"]
    assert 0.4 < r[("all", 30.0)] < 1.0
    # 12 weeks: 60 days of follow-up leave 12 - 8 = 4 dates < 5: the 30-day ratio carries over.
    assert r[("all", 60.0)] == pytest.approx(r[("all", 30.0)])
    bounded = forecast_arrival(model_won_by, zombie_examples({"A": 0.99}), CUTOFF, horizons=[30.0],
                               pseudo_wins=0.0, bounds=(0.1, 2.0))
    assert bounded["ratio"].min() == pytest.approx(0.1)
    assert forecast_arrival(model_won_by, few.iloc[:0], CUTOFF).empty
