"""As-of features: known answers on a hand-made pipeline, and no feature reads the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.features import (
    CONTEXT,
    FEATURES,
    build_features,
    build_scoring_features,
    build_training_examples,
    prepare,
)

STAGES = pd.DataFrame(
    [("p", "A", 1, "open", 0.1), ("p", "B", 2, "open", 0.4), ("p", "C", 3, "open", 0.7),
     ("p", "Won", 4, "won", 1.0), ("p", "Lost", 5, "lost", 0.0)],
    columns=["pipeline", "stage", "stage_order", "kind", "crm_probability"])
T = pd.Timestamp


def hand_company():
    """d1 goes A -> B -> back to A -> B -> C and is won on 1 Feb; d2 is lost on 3 Jan; d3 stays
    open; d4 was won in December; d5 is lost on 5 Jan, reopened on 12 Jan and won on 20 Jan."""
    deals = pd.DataFrame([
        ("d1", "ann", "web", 100.0, T("2026-01-01 09:00"), T("2026-02-01"), "won", "2026-03-01"),
        ("d2", "bob", "web", 50.0, T("2026-01-02"), T("2026-01-03"), "lost", None),
        ("d3", "bob", "ads", 70.0, T("2026-01-03"), pd.NaT, "open", "2026-01-31"),
        ("d4", "ann", "web", 80.0, T("2025-12-01"), T("2025-12-20"), "won", None),
        ("d5", "cat", "ads", 60.0, T("2026-01-01"), T("2026-01-20"), "won", None),
    ], columns=["deal_key", "owner", "lead_source", "amount_reporting", "created_at", "closed_at",
                "outcome", "expected_close_date"])
    deals = deals.assign(pipeline="p", segment="SMB", region="EU", product="x", amount=deals["amount_reporting"],
                         currency="USD")
    events = pd.DataFrame([
        ("d1", "A", "2026-01-01 09:00"), ("d1", "B", "2026-01-05"), ("d1", "A", "2026-01-08"),
        ("d1", "B", "2026-01-10"), ("d1", "C", "2026-01-20"), ("d1", "Won", "2026-02-01"),
        ("d2", "A", "2026-01-02"), ("d2", "Lost", "2026-01-03"),
        ("d3", "A", "2026-01-03"),
        ("d4", "A", "2025-12-01"), ("d4", "Won", "2025-12-20"),
        ("d5", "A", "2026-01-01"), ("d5", "Lost", "2026-01-05"), ("d5", "A", "2026-01-12"),
        ("d5", "Won", "2026-01-20"),
    ], columns=["deal_key", "stage", "entered_at"]).assign(pipeline="p")
    events["entered_at"] = pd.to_datetime(events["entered_at"], format="ISO8601")
    return deals, events


def test_features_of_a_hand_made_pipeline():
    deals, events = hand_company()
    scored = build_scoring_features(deals, events, STAGES, T("2026-01-15"), smoothing=2.0)
    scored = scored.set_index("deal_key")
    assert sorted(scored.index) == ["d1", "d3", "d5"]  # d2 lost, d4 won before 15 Jan
    d1 = scored.loc["d1"]
    assert (d1["stage"], d1["stage_order"], d1["stage_position"]) == ("B", 2, 0.5)
    assert d1["days_in_stage"] == pytest.approx(5.0)
    assert d1["deal_age_days"] == pytest.approx(13.625)
    assert (d1["n_stage_moves"], d1["n_backward_moves"]) == (3, 1)
    # Closed before 15 Jan: d4 won (ann, web), d2 lost (bob, web). Company prior (1+1)/(2+2).
    # ann: (1 + 2 x 0.5) / (1 + 2); web: (1 + 1) / (2 + 2); bob: (0 + 1) / (1 + 2).
    assert d1["owner_win_rate"] == pytest.approx(2 / 3)
    assert d1["source_win_rate"] == pytest.approx(0.5)
    assert scored.loc["d3", "owner_win_rate"] == pytest.approx(1 / 3)
    assert scored.loc["d3", "days_in_stage"] == pytest.approx(12.0)
    # The reopened deal re-entered A on 12 Jan: that is where its stay starts, and it is a move.
    d5 = scored.loc["d5"]
    assert (d5["stage"], d5["days_in_stage"], d5["n_stage_moves"]) == ("A", 3.0, 1)
    # The expected close is not read from the latest export (it may have been pushed since).
    assert scored["days_to_expected_close"].isna().all()


def test_a_deal_lost_and_reopened_is_not_open_while_lost():
    deals, events = hand_company()
    at_8 = build_scoring_features(deals, events, STAGES, T("2026-01-08"))
    assert "d5" not in set(at_8["deal_key"])
    at_13 = build_scoring_features(deals, events, STAGES, T("2026-01-13"))
    assert "d5" in set(at_13["deal_key"])


def test_training_labels_are_read_at_the_cutoff():
    deals, events = hand_company()
    ex = build_training_examples(deals, events, STAGES, cutoff=T("2026-01-25"), freq_days=1,
                                 cap_per_deal=None, max_rows=None)
    d1 = ex[ex["deal_key"] == "d1"]
    # d1 is won on 1 Feb, after the cut-off: censored there, its duration runs to the cut-off.
    assert set(d1["event"].astype(str)) == {"censored"} and (d1["won"] == 0).all()
    assert np.allclose(d1["duration_days"], (T("2026-01-25") - d1["as_of"]).dt.total_seconds() / 86400)
    d5 = ex[ex["deal_key"] == "d5"]
    assert set(d5["event"].astype(str)) == {"won"}
    assert not ((d5["as_of"] >= T("2026-01-05")) & (d5["as_of"] < T("2026-01-12"))).any()
    assert ex["as_of"].max() <= T("2026-01-25")
    assert "d3" in set(ex["deal_key"]) and (ex.loc[ex["deal_key"] == "d3", "event"] == "censored").all()


def test_deal_history_gives_the_expected_close_valid_at_the_as_of_date():
    deals, events = hand_company()
    history = pd.DataFrame({"deal_key": ["d3", "d3"],
                            "valid_from": [T("2026-01-03"), T("2026-01-20")],
                            "expected_close_date": [T("2026-01-20"), T("2026-01-31")]})
    early = build_scoring_features(deals, events, STAGES, T("2026-01-15"), deal_history=history)
    late = build_scoring_features(deals, events, STAGES, T("2026-01-22"), deal_history=history)
    assert early.set_index("deal_key").loc["d3", "days_to_expected_close"] == pytest.approx(5.0)
    assert late.set_index("deal_key").loc["d3", "days_to_expected_close"] == pytest.approx(9.0)


def future_changes(company, t0: pd.Timestamp):
    """The same company with things changed only after t0: every deal closed after t0 flips its
    outcome; half the deals open at t0 get another stage event and are lost 3 days after t0; 50
    new deals are created and won within an hour after t0; the latest export's expected close
    dates move."""
    deals, events = company["deals"].copy(), company["stage_events"].copy()
    open_at_t0 = ((deals["created_at"] <= t0) & ~(deals["closed_at"] <= t0)).to_numpy()
    keys = deals.loc[open_at_t0, "deal_key"].to_numpy()[::2]
    stages = company["pipeline_stages"]
    lost_stage = stages[stages["kind"] == "lost"].set_index("pipeline")["stage"]
    first_stage = stages[stages["kind"] == "open"].sort_values("stage_order").groupby("pipeline").head(1)
    first_stage = first_stage.set_index("pipeline")["stage"]
    moved = deals.set_index("deal_key").loc[keys]
    later = pd.DataFrame({"deal_key": keys, "pipeline": moved["pipeline"].to_numpy(),
                          "stage": moved["pipeline"].map(first_stage).to_numpy(),
                          "entered_at": t0 + pd.Timedelta(hours=5)})
    closes = later.assign(stage=moved["pipeline"].map(lost_stage).to_numpy(),
                          entered_at=t0 + pd.Timedelta(days=3))
    events = events[~(events["deal_key"].isin(keys) & (events["entered_at"] > t0))]
    events = pd.concat([events, later, closes], ignore_index=True)
    flip = (deals["closed_at"] > t0) & deals["outcome"].isin(["won", "lost"])
    deals.loc[flip, "outcome"] = deals.loc[flip, "outcome"].map({"won": "lost", "lost": "won"})
    is_moved = deals["deal_key"].isin(keys)
    deals.loc[is_moved, ["outcome", "closed_at"]] = ["lost", t0 + pd.Timedelta(days=3)]
    new = deals.head(50).copy()  # created half an hour after t0, won half an hour later
    new["deal_key"] = "new:" + new["deal_key"]
    new["created_at"] = t0 + pd.Timedelta(minutes=30)
    new[["closed_at", "outcome"]] = [t0 + pd.Timedelta(hours=1), "won"]
    new_events = pd.DataFrame({"deal_key": new["deal_key"], "pipeline": new["pipeline"],
                               "stage": new["pipeline"].map(first_stage),
                               "entered_at": new["created_at"]})
    deals = pd.concat([deals, new], ignore_index=True)
    events = pd.concat([events, new_events], ignore_index=True)
    deals["expected_close_date"] = pd.to_datetime(deals["expected_close_date"]) + pd.Timedelta(days=45)
    return deals, events, int(is_moved.sum()), int(flip.sum())


CUTOFF = pd.Timestamp("2026-06-30 23:59:59")
T0 = CUTOFF.normalize() - pd.Timedelta(days=14 * 20)  # an as-of date of the 14-day grid


def test_no_feature_reads_the_future(company):
    t0 = T0
    deals, events, n_moved, n_flipped = future_changes(company, t0)
    assert n_moved > 20 and n_flipped > 100  # the changes are real
    stages = company["pipeline_stages"]
    columns = ["deal_key", "as_of", "stage", *FEATURES, *CONTEXT]

    before = build_scoring_features(company["deals"], company["stage_events"], stages, t0)
    after = build_scoring_features(deals, events, stages, t0)
    assert len(before) > 100
    pd.testing.assert_frame_equal(before[columns], after[columns], check_exact=True)

    kwargs = dict(cap_per_deal=None, max_rows=None, freq_days=14, cutoff=CUTOFF)
    ex_before = build_training_examples(company["deals"], company["stage_events"], stages, **kwargs)
    ex_after = build_training_examples(deals, events, stages, **kwargs)
    early_before = ex_before[ex_before["as_of"] <= t0].reset_index(drop=True)
    early_after = ex_after[ex_after["as_of"] <= t0].reset_index(drop=True)
    pd.testing.assert_frame_equal(early_before[columns], early_after[columns], check_exact=True)
    # ... while the labels of those rows did change: the test sees what it should not leak.
    assert (early_before["won"] != early_after["won"]).sum() > 100
    assert (early_before["as_of"] == t0).sum() > 100
    # And the features after t0 do move (the test can tell a change when there is one).
    late = ex_after[ex_after["as_of"] > t0 + pd.Timedelta(days=20)]
    assert late["owner_win_rate"].to_numpy().mean() != pytest.approx(
        ex_before[ex_before["as_of"] > t0 + pd.Timedelta(days=20)]["owner_win_rate"].mean(), abs=1e-4)


def test_an_earlier_change_does_move_the_features(company):
    """The control for the test above: the same comparison catches a change before t0."""
    t0 = T0
    stages = company["pipeline_stages"]
    events = company["stage_events"].copy()
    before = build_scoring_features(company["deals"], events, stages, t0)
    last = events[events["entered_at"] <= t0].groupby("deal_key")["entered_at"].idxmax()
    last = last[last.index.isin(before["deal_key"])]
    events.loc[last.to_numpy(), "entered_at"] -= pd.Timedelta(days=2)
    after = build_scoring_features(company["deals"], events, stages, t0)
    moved = after["days_in_stage"].to_numpy() - before["days_in_stage"].to_numpy()
    assert np.median(moved) == pytest.approx(2.0, abs=1e-6)


def test_as_of_sampling_is_seeded_capped_and_inside_each_deals_open_life(company):
    stages = company["pipeline_stages"]
    a = build_training_examples(company["deals"], company["stage_events"], stages, seed=3)
    b = build_training_examples(company["deals"], company["stage_events"], stages, seed=3)
    c = build_training_examples(company["deals"], company["stage_events"], stages, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["as_of"].equals(c["as_of"])
    assert a.groupby("deal_key").size().max() <= 4 + 1  # the cap plus the creation row
    deals = company["deals"].set_index("deal_key")
    created = deals.loc[a["deal_key"], "created_at"].to_numpy()
    closed = deals.loc[a["deal_key"], "closed_at"].to_numpy()
    assert (a["as_of"].to_numpy() >= created).all()
    assert not (a["as_of"].to_numpy() >= closed).any()
    capped = build_training_examples(company["deals"], company["stage_events"], stages, max_rows=1000)
    assert len(capped) <= 1000


def test_timeline_features_match_for_explicit_pairs(company):
    """build_features on explicit (deal, as-of) pairs returns them in the order given."""
    tl = prepare(company["deals"], company["stage_events"], company["pipeline_stages"])
    idx = np.array([5, 3, 5])
    as_of = np.array(["2025-03-01", "2025-03-01", "2025-01-01"], dtype="datetime64[ns]")
    out = build_features(tl, idx, as_of)
    assert out["deal_key"].tolist() == tl.deals["deal_key"].to_numpy()[idx].tolist()
    assert out["as_of"].tolist() == list(pd.to_datetime(as_of))
