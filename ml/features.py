"""As-of features: each deal's state as it was on a date, never what came later.

Training examples are (deal, as-of date) pairs sampled over the history (weekly as-of dates, at
most `cap_per_deal` per deal, stratified over the deal's open life with a fixed seed). For each
pair the features are rebuilt from what was known on that date:

- the open stage the deal was in (the last stage event at or before the as-of time), its order
  and relative position in the pipeline, the CRM probability of that stage, days in it;
- deal age, number of stage moves and backward moves so far;
- amount in the reporting currency, days to the expected close date (when known);
- owner, lead source, segment, region, product;
- the owner's and the lead source's win rates over deals closed strictly before the as-of
  time, smoothed towards the company's win rate at that time.

Labels are read at the training cut-off: `event` is won / lost / censored (still open at the
cut-off), `duration_days` is the time from the as-of date to the close (or to the cut-off),
`won` is 1 for a deal won by the cut-off.

Deal attributes (amount, owner, ...) come from the deals frame, which holds their latest value;
pass `deal_history` (SCD2 rows: deal_key, valid_from and any attribute column, e.g. from
successive exports) and each pair reads the value valid at its as-of time instead. The expected
close date is different: CRMs push it out while a deal lingers, so its latest value tells how
long the deal lived (and lingering deals are mostly lost) — a leak. It is therefore read only from
`deal_history` unless `latest_attributes` says the latest value may be trusted; without history,
days_to_expected_close is empty (NaN).

A deal is open at an as-of time when it was created, its close (closed_at) is later, and its last
stage event so far is not a won/lost stage (a deal lost and later reopened is not open while it
was lost). A deal closed with an unknown outcome (outcome 'unknown') gives no example and is not
open pipeline: its label is neither won nor lost. A close before the creation is read as a close
at the creation (no negative durations).

Final-state attributes (an amount zeroed when a deal was lost) are found by ml/leaks.py.

Everything is vectorised (factorize, searchsorted, merge_asof, groupby): a million deals
build in tens of seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CATEGORICAL_FEATURES = ["pipeline", "pipeline_stage", "owner", "lead_source", "segment", "region",
                        "product"]
NUMERIC_FEATURES = [
    "stage_order", "stage_position", "crm_probability", "days_in_stage", "deal_age_days",
    "n_stage_moves", "n_backward_moves", "amount_reporting", "days_to_expected_close",
    "owner_win_rate", "source_win_rate",
]
# Kept beside the features for reading, not fed to the models: the counts grow with calendar
# time, so a model would use them as a clock (and learn the recent, immature labels' bias).
CONTEXT = ["owner_closed_deals", "source_closed_deals"]
FEATURES = CATEGORICAL_FEATURES + NUMERIC_FEATURES
# The deal columns `prepare` (and so everything in ml/) reads: what the model assets load.
DEAL_COLUMNS = ["deal_key", "pipeline", "owner", "lead_source", "segment", "region", "product",
                "amount_reporting", "created_at", "expected_close_date", "closed_at", "outcome"]
LABELS = ["won", "event", "duration_days"]
META = ["deal_key", "as_of", "stage"]
EVENTS = ("won", "lost", "censored")
# Attributes a `deal_history` frame may carry (the value valid from `valid_from` on).
HISTORIZED = ["amount_reporting", "expected_close_date", "owner", "lead_source", "segment",
              "region", "product"]
# Attributes whose latest value stands for the value at any earlier time (when no history says
# otherwise). Not expected_close_date: see the module doc.
LATEST_ATTRIBUTES = ("amount_reporting", "owner", "lead_source", "segment", "region", "product")
MISSING = "(none)"
DAY = np.timedelta64(1, "D")


@dataclass
class DealTimeline:
    """The deals and their stage paths, indexed for as-of look-ups (see `prepare`)."""

    deals: pd.DataFrame  # one row per deal, index = deal_idx (0..n-1)
    events: pd.DataFrame  # open-stage entries, sorted by entered_at, with running move counts
    states: pd.DataFrame  # every stage entry (deal_idx, entered_at, is_terminal) by entered_at
    closed: pd.DataFrame  # closed deals (close known by the cut-off), sorted by close_at
    first_stage: pd.DataFrame  # per pipeline: the first open stage (fallback before any event)
    history: pd.DataFrame | None  # deal_history with deal_idx, sorted by valid_from
    cutoff: pd.Timestamp
    smoothing: float


def _ts(values) -> pd.Series:
    values = pd.Series(values)
    text = values.dtype == object or pd.api.types.is_string_dtype(values.dtype)
    out = pd.to_datetime(values, errors="coerce", format="ISO8601" if text else None)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out.astype("datetime64[ns]")


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna(MISSING).astype(str)


def _stage_table(pipeline_stages: pd.DataFrame) -> pd.DataFrame:
    stages = pipeline_stages[["pipeline", "stage", "stage_order", "kind", "crm_probability"]].copy()
    stages["pipeline"] = stages["pipeline"].astype(str)
    stages["stage"] = stages["stage"].astype(str)
    stages["stage_order"] = pd.to_numeric(stages["stage_order"], errors="coerce")
    stages["crm_probability"] = pd.to_numeric(stages["crm_probability"], errors="coerce")
    is_open = stages["kind"].eq("open")
    lo = stages[is_open].groupby("pipeline")["stage_order"].transform("min")
    hi = stages[is_open].groupby("pipeline")["stage_order"].transform("max")
    stages["stage_position"] = np.nan
    stages.loc[is_open, "stage_position"] = ((stages.loc[is_open, "stage_order"] - lo)
                                             / (hi - lo).replace(0, np.nan)).fillna(0.0)
    return stages.drop_duplicates(["pipeline", "stage"], keep="last")


def prepare(deals: pd.DataFrame, stage_events: pd.DataFrame, pipeline_stages: pd.DataFrame,
            cutoff=None, deal_history: pd.DataFrame | None = None,
            smoothing: float = 20.0,
            latest_attributes: tuple[str, ...] = LATEST_ATTRIBUTES) -> DealTimeline:
    """Index the canonical frames once; everything after `cutoff` is ignored.

    deals: deal_key, pipeline, owner, lead_source, segment, region, product, amount_reporting
    (else amount), created_at, expected_close_date, closed_at, outcome.
    stage_events: deal_key, stage, entered_at. pipeline_stages: pipeline, stage, stage_order,
    kind, crm_probability. The cut-off defaults to the newest timestamp in the data.
    latest_attributes: deal columns whose latest value is used where `deal_history` has none
    (the others are left empty there).
    """
    stages = _stage_table(pipeline_stages)
    d = pd.DataFrame({"deal_key": deals["deal_key"].astype(str).to_numpy()})
    for col in ["pipeline", "owner", "lead_source", "segment", "region", "product"]:
        d[col] = _text(deals[col]).to_numpy() if col in deals else MISSING
    amount_col = "amount_reporting" if "amount_reporting" in deals else "amount"
    d["amount_reporting"] = pd.to_numeric(deals[amount_col], errors="coerce").to_numpy(float)
    d["created_at"] = _ts(deals["created_at"]).to_numpy()
    d["expected_close_date"] = (_ts(deals["expected_close_date"]).to_numpy()
                                if "expected_close_date" in deals else np.datetime64("NaT"))
    for col in HISTORIZED:
        if col not in latest_attributes:
            d[col] = np.datetime64("NaT") if col == "expected_close_date" else (
                np.nan if col == "amount_reporting" else MISSING)
    outcome = deals["outcome"].astype(str).str.lower().to_numpy()
    closed_at = _ts(deals["closed_at"]).to_numpy()
    # A close before the creation (flagged by ingest) is a close at the creation.
    created_v = d["created_at"].to_numpy()
    closed_at = np.where(pd.notna(closed_at) & pd.notna(created_v) & (closed_at < created_v),
                         created_v, closed_at).astype("datetime64[ns]")

    ev = pd.DataFrame({
        "deal_key": stage_events["deal_key"].astype(str).to_numpy(),
        "stage": stage_events["stage"].astype(str).to_numpy(),
        "entered_at": _ts(stage_events["entered_at"]).to_numpy(),
    })
    codes = pd.Index(d["deal_key"])
    ev["deal_idx"] = codes.get_indexer(ev["deal_key"])
    ev = ev[(ev["deal_idx"] >= 0) & ev["entered_at"].notna()].drop(columns="deal_key")
    ev["pipeline"] = d["pipeline"].to_numpy()[ev["deal_idx"].to_numpy()]
    ev = ev.merge(stages, on=["pipeline", "stage"], how="left")
    ev["kind"] = ev["kind"].fillna("open")
    ev = ev.sort_values(["deal_idx", "entered_at", "stage_order"], kind="stable")

    # The close time: closed_at, else the first entry into a won/lost stage.
    first_terminal = (ev[ev["kind"] != "open"].groupby("deal_idx")["entered_at"].min()
                      .reindex(range(len(d))).to_numpy())
    is_closed = np.isin(outcome, ["won", "lost"])
    close_at = np.where(is_closed, np.where(pd.isna(closed_at), first_terminal, closed_at),
                        np.datetime64("NaT"))
    d["close_at"] = close_at.astype("datetime64[ns]")
    d["outcome"] = np.where(is_closed, outcome, "open")
    if cutoff is None:
        cutoff = max(pd.Series(d["created_at"]).max(), pd.Series(d["close_at"]).max(),
                     ev["entered_at"].max() if len(ev) else pd.NaT)
    cutoff = pd.Timestamp(cutoff)
    # A deal closed with no known close time cannot be placed in time: it has no as-of rows.
    d["close_known"] = d["close_at"].notna() & (d["close_at"] <= cutoff)
    # Closed with an unknown outcome: neither a label nor open pipeline, so no example at all.
    d["placeable"] = d["created_at"].notna() & (d["created_at"] <= cutoff) & ~(
        (d["outcome"] != "open") & d["close_at"].isna()) & (outcome != "unknown")

    ev = ev[ev["entered_at"] <= cutoff]
    # A repeated entry into the stage the deal is already in (a snapshot seeing it twice) is no
    # move; a re-entry after a won/lost stage (a reopened deal) is.
    same_deal = ev["deal_idx"].eq(ev["deal_idx"].shift())
    ev = ev[~(same_deal & ev["stage"].eq(ev["stage"].shift()))]
    states = pd.DataFrame({"deal_idx": ev["deal_idx"].to_numpy(),
                           "entered_at": ev["entered_at"].to_numpy(),
                           "is_terminal": (ev["kind"] != "open").to_numpy()})
    states = states.sort_values("entered_at", kind="stable").reset_index(drop=True)
    # Open-stage entries with running counts of moves and backward moves.
    ev = ev[ev["kind"] == "open"]
    same_deal = ev["deal_idx"].eq(ev["deal_idx"].shift())
    backward = same_deal & (ev["stage_order"] < ev["stage_order"].shift())
    ev = ev.assign(
        n_stage_moves=same_deal.astype(np.int32).groupby(ev["deal_idx"]).cumsum(),
        n_backward_moves=backward.astype(np.int32).groupby(ev["deal_idx"]).cumsum(),
    )
    ev = ev[["deal_idx", "entered_at", "pipeline", "stage", "stage_order", "stage_position",
             "crm_probability", "n_stage_moves", "n_backward_moves"]]
    ev = ev.sort_values("entered_at", kind="stable").reset_index(drop=True)

    closed = d.loc[d["close_known"] & (d["outcome"] != "open"),
                   ["owner", "lead_source", "close_at", "outcome"]]
    closed = closed.assign(is_won=(closed["outcome"] == "won").astype(np.int64))
    closed = closed.sort_values("close_at", kind="stable").reset_index(drop=True)

    first = stages[stages["kind"].eq("open")].sort_values("stage_order")
    first = first.groupby("pipeline").head(1)[
        ["pipeline", "stage", "stage_order", "stage_position", "crm_probability"]]

    history = None
    if deal_history is not None and len(deal_history):
        cols = [c for c in HISTORIZED if c in deal_history]
        history = deal_history[["deal_key", "valid_from", *cols]].copy()
        history["deal_idx"] = codes.get_indexer(history["deal_key"].astype(str))
        history["valid_from"] = _ts(history["valid_from"])
        if "expected_close_date" in history:
            history["expected_close_date"] = _ts(history["expected_close_date"])
        history = history[(history["deal_idx"] >= 0) & history["valid_from"].notna()
                          & (history["valid_from"] <= cutoff)]
        history = history.drop(columns="deal_key").sort_values("valid_from", kind="stable")
    return DealTimeline(d, ev, states, closed, first, history, cutoff, float(smoothing))


def at_cutoff(timeline: DealTimeline, cutoff) -> DealTimeline:
    """The timeline `prepare` builds with the earlier cut-off `cutoff`, cut from one prepared
    with a later one (the backtest's origins: prepared once, not once per origin, which cost
    ~15 s an origin at 1M deals). Nothing `prepare` derives reads past the cut-off except what
    the cut-off masks: events, states, closes and history are sorted by time, so each is a
    prefix; which deals are placeable and which closes are known is recomputed."""
    cutoff = pd.Timestamp(cutoff)
    if cutoff > timeline.cutoff:
        raise ValueError(f"cut-off {cutoff} is after the timeline's ({timeline.cutoff})")
    d = timeline.deals
    close_known = d["close_at"].notna() & (d["close_at"] <= cutoff)
    d = d.assign(close_known=close_known, placeable=d["placeable"] & (d["created_at"] <= cutoff))

    def until(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        end = np.searchsorted(frame[column].to_numpy(), np.datetime64(cutoff, "ns"), side="right")
        return frame.iloc[:end]

    history = timeline.history
    if history is not None:
        history = history[history["valid_from"] <= cutoff]
    return DealTimeline(d, until(timeline.events, "entered_at"), until(timeline.states, "entered_at"),
                        until(timeline.closed, "close_at"), timeline.first_stage, history, cutoff,
                        timeline.smoothing)


def _win_rates(pairs: pd.DataFrame, timeline: DealTimeline, key: str, prefix: str,
               prior: np.ndarray) -> pd.DataFrame:
    """Smoothed win rate of `key` over deals closed strictly before each pair's as-of time."""
    closed = timeline.closed
    right = pd.DataFrame({
        key: closed[key].to_numpy(),
        "close_at": closed["close_at"].to_numpy(),
        "won_n": closed.groupby(key)["is_won"].cumsum().to_numpy(),
        "closed_n": closed.groupby(key).cumcount().to_numpy() + 1,
    })
    left = pairs[["row", "as_of", key]]
    merged = pd.merge_asof(left, right, left_on="as_of", right_on="close_at", by=key,
                           allow_exact_matches=False, direction="backward")
    won = merged["won_n"].fillna(0).to_numpy(float)
    n = merged["closed_n"].fillna(0).to_numpy(float)
    m = timeline.smoothing
    rate = (won + m * prior[merged["row"].to_numpy()]) / (n + m)
    out = pd.DataFrame({"row": merged["row"].to_numpy(), f"{prefix}_win_rate": rate,
                        f"{prefix}_closed_deals": n})
    return out


def _rows_of(frame: pd.DataFrame, deal_idx: np.ndarray, n_deals: int) -> pd.DataFrame:
    """The rows of `frame` (events, states, history: by deal_idx) of these deals only, in order.
    merge_asof `by` deal matches nothing else, and it costs the size of its right side: a few
    thousand deals' features read the 4M events of a 1M-deal timeline on every call (the
    backtest builds features seven times an origin)."""
    if len(deal_idx) * 4 >= n_deals:  # most deals: filtering would cost more than it saves
        return frame
    wanted = np.zeros(n_deals, dtype=bool)
    wanted[deal_idx] = True
    return frame[wanted[frame["deal_idx"].to_numpy()]]


def build_features(timeline: DealTimeline, deal_idx: np.ndarray, as_of) -> pd.DataFrame:
    """Features of each (deal, as-of time) pair, from what was known at that time only.

    deal_idx: positions in `timeline.deals`; as_of: one timestamp or one per pair. Returns one
    row per pair in the given order with META + FEATURES + CONTEXT columns and `is_open` (the
    deal was open at that time: created, not closed, last stage event not won/lost).
    """
    deal_idx = np.asarray(deal_idx, dtype=np.int64)
    as_of = np.broadcast_to(np.asarray(pd.to_datetime(as_of), dtype="datetime64[ns]"),
                            deal_idx.shape).copy()
    d = timeline.deals
    pairs = pd.DataFrame({"row": np.arange(len(deal_idx)), "deal_idx": deal_idx, "as_of": as_of})
    for col in ["pipeline", "owner", "lead_source", "segment", "region", "product",
                "amount_reporting", "expected_close_date"]:
        pairs[col] = d[col].to_numpy()[deal_idx]
    pairs = pairs.sort_values("as_of", kind="stable").reset_index(drop=True)

    if timeline.history is not None:
        hist = _rows_of(timeline.history, deal_idx, len(d))
        cols = [c for c in hist.columns if c not in ("deal_idx", "valid_from")]
        got = pd.merge_asof(pairs[["row", "deal_idx", "as_of"]], hist, left_on="as_of",
                            right_on="valid_from", by="deal_idx", direction="backward")
        for col in cols:
            has = got["valid_from"].notna().to_numpy()
            values = got[col].to_numpy()
            if col in ("owner", "lead_source", "segment", "region", "product"):
                values = pd.Series(values).astype("string").fillna(MISSING).astype(str).to_numpy()
            pairs[col] = np.where(has, values, pairs[col].to_numpy())
        pairs["amount_reporting"] = pd.to_numeric(pairs["amount_reporting"], errors="coerce")
        pairs["expected_close_date"] = _ts(pairs["expected_close_date"])

    stage = pd.merge_asof(pairs[["row", "deal_idx", "as_of"]],
                          _rows_of(timeline.events, deal_idx, len(d)).drop(columns="pipeline"),
                          left_on="as_of", right_on="entered_at", by="deal_idx",
                          direction="backward")
    # Before any open-stage event (or for exports without history): the pipeline's first stage.
    none = stage["entered_at"].isna().to_numpy()
    if none.any():
        fb = pairs.loc[none, ["pipeline"]].merge(timeline.first_stage, on="pipeline", how="left")
        for col in ["stage", "stage_order", "stage_position", "crm_probability"]:
            stage.loc[none, col] = fb[col].to_numpy()
        stage.loc[none, "entered_at"] = d["created_at"].to_numpy()[pairs.loc[none, "deal_idx"]]
        stage.loc[none, ["n_stage_moves", "n_backward_moves"]] = 0

    out = pd.DataFrame({"row": pairs["row"].to_numpy()})
    out["deal_key"] = d["deal_key"].to_numpy()[pairs["deal_idx"].to_numpy()]
    out["as_of"] = pairs["as_of"].to_numpy()
    out["stage"] = stage["stage"].fillna(MISSING).astype(str).to_numpy()
    out["pipeline"] = pairs["pipeline"].to_numpy()
    out["pipeline_stage"] = out["pipeline"] + "/" + out["stage"]
    for col in ["owner", "lead_source", "segment", "region", "product"]:
        out[col] = pairs[col].to_numpy()
    for col in ["stage_order", "stage_position", "crm_probability"]:
        out[col] = pd.to_numeric(stage[col], errors="coerce").to_numpy(float)
    as_of_v = pairs["as_of"].to_numpy()
    out["days_in_stage"] = np.maximum((as_of_v - stage["entered_at"].to_numpy()) / DAY, 0.0)
    created = d["created_at"].to_numpy()[pairs["deal_idx"].to_numpy()]
    out["deal_age_days"] = np.maximum((as_of_v - created) / DAY, 0.0)
    out["n_stage_moves"] = stage["n_stage_moves"].to_numpy(float)
    out["n_backward_moves"] = stage["n_backward_moves"].to_numpy(float)
    out["amount_reporting"] = pairs["amount_reporting"].to_numpy(float)
    out["days_to_expected_close"] = (pairs["expected_close_date"].to_numpy() - as_of_v) / DAY

    # Company win rate before each as-of time (Laplace-smoothed): the prior of the group rates.
    closed = timeline.closed
    idx = np.searchsorted(closed["close_at"].to_numpy(), as_of_v, side="left")
    won_before = np.concatenate([[0], closed["is_won"].cumsum().to_numpy()])[idx]
    prior = (won_before + 1.0) / (idx + 2.0)
    prior_by_row = np.empty(len(pairs))
    prior_by_row[pairs["row"].to_numpy()] = prior
    for key, prefix in (("owner", "owner"), ("lead_source", "source")):
        rates = _win_rates(pairs, timeline, key, prefix, prior_by_row)
        rates = rates.set_index("row").reindex(out["row"])
        out[f"{prefix}_win_rate"] = rates[f"{prefix}_win_rate"].to_numpy()
        out[f"{prefix}_closed_deals"] = rates[f"{prefix}_closed_deals"].to_numpy()

    state = pd.merge_asof(pairs[["row", "deal_idx", "as_of"]], _rows_of(timeline.states, deal_idx, len(d)),
                          left_on="as_of", right_on="entered_at", by="deal_idx",
                          direction="backward")
    close_at = d["close_at"].to_numpy()[pairs["deal_idx"].to_numpy()]
    is_open = ((created <= as_of_v) & ~(as_of_v >= close_at)
               & ~state["is_terminal"].fillna(False).to_numpy(dtype=bool))
    out["is_open"] = is_open

    out = out.sort_values("row").drop(columns="row").reset_index(drop=True)
    for col in CATEGORICAL_FEATURES:
        out[col] = out[col].astype("category")
    return out[META + FEATURES + CONTEXT + ["is_open"]]


def _label(timeline: DealTimeline, deal_idx: np.ndarray, as_of: np.ndarray) -> pd.DataFrame:
    d = timeline.deals
    close_at = d["close_at"].to_numpy()[deal_idx]
    known = d["close_known"].to_numpy()[deal_idx]
    outcome = d["outcome"].to_numpy()[deal_idx]
    event = np.where(known, outcome, "censored")
    end = np.where(known, close_at, np.datetime64(timeline.cutoff, "ns"))
    return pd.DataFrame({
        "won": (event == "won").astype(np.int8),
        "event": pd.Categorical(event, categories=list(EVENTS)),
        "duration_days": np.maximum((end - as_of) / DAY, 0.0),
    })


def sample_as_of_pairs(timeline: DealTimeline, freq_days: int = 7, cap_per_deal: int | None = 4,
                       max_rows: int | None = None, seed: int = 0, start=None,
                       include_creation: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(deal_idx, as_of) pairs: as-of dates every `freq_days` days ending at the cut-off day.

    A deal is eligible on each as-of date from its creation to (excluding) its close. At most
    `cap_per_deal` dates per deal, spread over its open life (one random date per equal slice);
    With `include_creation`, each deal also gives one pair at its creation time (its state on
    the day it appeared: what the model sees when it scores a new deal). Then at most `max_rows`
    pairs overall (uniform, seeded).
    """
    d = timeline.deals
    rng = np.random.default_rng(seed)
    first = d.loc[d["placeable"], "created_at"].min() if start is None else pd.Timestamp(start)
    last = timeline.cutoff.normalize()
    periods = max(int((last - first.normalize()) / pd.Timedelta(days=freq_days)) + 1, 1)
    grid = pd.date_range(end=last, periods=periods, freq=f"{freq_days}D").to_numpy()
    place = d["placeable"].to_numpy()
    created = d["created_at"].to_numpy()
    end = np.where(d["close_known"].to_numpy(), d["close_at"].to_numpy(),
                   np.datetime64(timeline.cutoff + pd.Timedelta(1, "ns"), "ns"))
    lo = np.searchsorted(grid, created, side="left")
    hi = np.searchsorted(grid, end, side="left")
    n = np.where(place, np.maximum(hi - lo, 0), 0)
    k = n if cap_per_deal is None else np.minimum(n, cap_per_deal)
    deal = np.repeat(np.arange(len(d)), k)
    j = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)  # 0..k-1 within each deal
    n_r, k_r = np.repeat(n, k), np.repeat(k, k)
    pos = np.repeat(lo, k) + np.floor((j + rng.random(len(j))) * n_r / k_r).astype(np.int64)
    as_of = grid[pos]
    if include_creation:
        born = np.flatnonzero(place)
        deal = np.concatenate([deal, born])
        as_of = np.concatenate([as_of, created[born]])
    # One row per (deal, time): a deal created at midnight of an as-of date is sampled once.
    pairs = pd.DataFrame({"deal": deal, "as_of": as_of}).drop_duplicates()
    deal, as_of = pairs["deal"].to_numpy(), pairs["as_of"].to_numpy()
    if max_rows is not None and len(deal) > max_rows:
        keep = np.sort(rng.choice(len(deal), size=max_rows, replace=False))
        deal, as_of = deal[keep], as_of[keep]
    return deal, as_of


def build_training_examples(deals: pd.DataFrame, stage_events: pd.DataFrame,
                            pipeline_stages: pd.DataFrame, cutoff=None, freq_days: int = 7,
                            cap_per_deal: int | None = 4, max_rows: int | None = 500_000,
                            seed: int = 0, deal_history: pd.DataFrame | None = None,
                            smoothing: float = 20.0,
                            latest_attributes: tuple[str, ...] = LATEST_ATTRIBUTES) -> pd.DataFrame:
    """As-of training examples: META + FEATURES + LABELS, one row per sampled (deal, as-of).

    Only data up to `cutoff` (default: the newest timestamp in the data) is read, so the same
    call with an earlier cut-off replays what was known then (the backtest relies on it).
    """
    timeline = prepare(deals, stage_events, pipeline_stages, cutoff, deal_history, smoothing,
                       latest_attributes)
    return examples_from_timeline(timeline, freq_days, cap_per_deal, max_rows, seed)


def examples_from_timeline(timeline: DealTimeline, freq_days: int = 7,
                           cap_per_deal: int | None = 4, max_rows: int | None = 500_000,
                           seed: int = 0) -> pd.DataFrame:
    deal_idx, as_of = sample_as_of_pairs(timeline, freq_days, cap_per_deal, max_rows, seed)
    features = build_features(timeline, deal_idx, as_of)
    labels = _label(timeline, deal_idx, as_of)
    examples = pd.concat([features, labels], axis=1)
    # A deal lost and reopened later was not open between the two: no example there.
    return examples[examples.pop("is_open").to_numpy()].reset_index(drop=True)


def build_scoring_features(deals: pd.DataFrame, stage_events: pd.DataFrame,
                           pipeline_stages: pd.DataFrame, as_of,
                           deal_history: pd.DataFrame | None = None, smoothing: float = 20.0,
                           latest_attributes: tuple[str, ...] = LATEST_ATTRIBUTES) -> pd.DataFrame:
    """Features (META + FEATURES + CONTEXT) of every deal open at `as_of`, as they were then.

    Use the same `deal_history`, `smoothing` and `latest_attributes` as for training."""
    as_of = pd.Timestamp(as_of)
    timeline = prepare(deals, stage_events, pipeline_stages, as_of, deal_history, smoothing,
                       latest_attributes)
    return open_deal_features(timeline, as_of)


def open_deal_features(timeline: DealTimeline, as_of) -> pd.DataFrame:
    as_of = pd.Timestamp(as_of)
    d = timeline.deals
    open_ = (d["placeable"] & (d["created_at"] <= as_of)
             & ~(d["close_known"] & (d["close_at"] <= as_of))).to_numpy()
    features = build_features(timeline, np.flatnonzero(open_), as_of)
    return features[features.pop("is_open").to_numpy()].reset_index(drop=True)
