"""The funnel marts on a simulated company, against an independent pandas computation.

A company is simulated (voronka.simulator), written as canonical CSV exports, loaded by the
loader into a fresh DuckDB warehouse, and `dbt build` runs on it (models, data tests, unit
tests). The numbers are then recomputed here from the raw tables alone, with pandas, lifelines'
Kaplan–Meier and scipy's normal distribution, following docs/metrics.md, and compared with the
marts. Finally the simulator's truth (the win probability it drew per lead source) must come back
out of the marts within sampling error, and the CLI's funnel/changes commands read the marts.
"""

from __future__ import annotations

import json
import math
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from dbt_helpers import invoke_dbt
from lifelines import KaplanMeierFitter
from scipy.stats import norm
from test_dbt_models import with_deal_flags

from voronka.ingest.loader import load_files
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company

pytestmark = pytest.mark.slow  # dbt build on a simulated company

END_DATE = date(2026, 6, 30)
AS_OF = pd.Timestamp("2026-06-30 23:59:59")
FROM = pd.Timestamp("2026-05-31 23:59:59")  # var from_date '2026-05-31' = the end of that day
N_DEALS = 1500
SEED = 7
DAY = pd.Timedelta(days=1)


# ---------------------------------------------------------------- the build

@pytest.fixture(scope="module")
def company(tmp_path_factory):
    root = tmp_path_factory.mktemp("funnel")
    simulated = simulate_company(n_deals=N_DEALS, seed=SEED, end_date=END_DATE)
    files = write_canonical(simulated, root / "inbox", root / "truth")
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    try:
        results = load_files(con, files)
        with_deal_flags(con)
    finally:
        con.close()
    assert all(r.status == "loaded" for r in results), [r.as_dict() for r in results]
    run = invoke_dbt(["build"], root / "warehouse.duckdb", root / "dbt",
                     as_of=str(AS_OF), reporting_currency="USD", from_date="2026-05-31",
                     gross_margin=0.6)
    return simulated, run


@pytest.fixture(scope="module")
def con(company):
    _, run = company
    assert run.success, f"{run.exception} {[k for k, v in run.statuses.items() if v not in ('success', 'pass')]}"
    connection = duckdb.connect(str(run.warehouse), read_only=True)
    yield connection
    connection.close()


def mart(con, sql: str) -> pd.DataFrame:
    return con.execute(sql).df()


# ---------------------------------------------------------------- the reference computation

class Reference:
    """docs/metrics.md in pandas, from the raw tables only."""

    def __init__(self, con: duckdb.DuckDBPyConnection, as_of: pd.Timestamp):
        self.as_of = as_of
        deals = con.execute("select * from raw.deals").df()
        if "is_deleted" in deals:
            deals = deals[~deals["is_deleted"].fillna(False).astype(bool)]
        deals = deals[deals["created_at"] <= as_of].copy()
        closed = deals["outcome"].isin(["won", "lost"]) & (deals["closed_at"] <= as_of)
        deals["status"] = np.where(closed, deals["outcome"], "open")
        deals["closed"] = deals["closed_at"].where(closed)
        deals["amount"] = deals["amount"].astype(float)
        self.stages = con.execute("select * from raw.pipeline_stages").df()
        self.fx = con.execute("select rate_date, currency, rate from raw.fx_rates "
                              "where quote_currency = 'USD' and rate_date <= ?", [as_of.date()]).df()
        deals["amount_reporting"] = deals["amount"] * self.rate(
            deals["currency"], deals["closed"].fillna(as_of).dt.normalize())
        self.spend = con.execute("select * from raw.marketing_spend").df()

        events = con.execute("select * from raw.stage_events").df()
        events = events.merge(self.stages[["pipeline", "stage", "stage_order", "kind"]],
                              on=["pipeline", "stage"], how="left")
        events = events[events["deal_key"].isin(deals["deal_key"]) & (events["entered_at"] <= as_of)]
        events = events.sort_values(["deal_key", "entered_at", "stage_order", "event_key"])
        same = ((events["deal_key"] == events["deal_key"].shift())
                & (events["stage"] == events["stage"].shift())
                & (events["pipeline"] == events["pipeline"].shift()))
        stays = events[~same].copy()
        stays["stay_number"] = stays.groupby("deal_key").cumcount() + 1
        stays["exited"] = stays.groupby("deal_key")["entered_at"].shift(-1)
        stays["next_kind"] = stays.groupby("deal_key")["kind"].shift(-1)
        stays["next_order"] = stays.groupby("deal_key")["stage_order"].shift(-1)
        stays["next_pipeline"] = stays.groupby("deal_key")["pipeline"].shift(-1)
        self.stays = stays

        own = stays.merge(deals[["deal_key", "pipeline", "status", "closed"]], on=["deal_key", "pipeline"])
        self.own = own
        first = self.stages[self.stages["kind"] == "open"].groupby("pipeline")["stage_order"].min()
        progress = own.groupby("deal_key").agg(
            max_open=("stage_order", lambda s: s[own.loc[s.index, "kind"] == "open"].max()),
            entered_won=("kind", lambda k: (k == "won").any()))
        worked_mask = (own["kind"] == "won") | ((own["kind"] == "open")
                                               & (own["stage_order"] > own["pipeline"].map(first)))
        worked = own[worked_mask].groupby("deal_key")["entered_at"].min().rename("first_worked")
        before_loss = own[(own["status"] == "lost") & (own["kind"] == "open") & (own["entered_at"] <= own["closed"])]
        lost_at = before_loss.sort_values("stay_number").groupby("deal_key")["stage"].last().rename("lost_at")
        deals = deals.set_index("deal_key").join(progress).join(worked).join(lost_at).reset_index()
        # Without an open stay in its pipeline, a deal got to the export's stage if that is open,
        # else to the first open stage; a lost one was lost there, or at no known stage.
        open_stages = self.stages[self.stages["kind"] == "open"].set_index(["pipeline", "stage"])["stage_order"]
        export_order = pd.Series(open_stages.reindex(pd.MultiIndex.from_arrays(
            [deals["pipeline"], deals["current_stage"]])).to_numpy(), index=deals.index)
        no_open_stay = deals["max_open"].isna()
        deals["reached_order"] = deals["max_open"].where(~no_open_stay, export_order).fillna(
            deals["pipeline"].map(first))
        fallback = no_open_stay & (deals["status"] == "lost") & export_order.notna()
        deals.loc[fallback, "lost_at"] = deals.loc[fallback, "current_stage"]
        deals["entered_won"] = deals["entered_won"].fillna(False).astype(bool)
        deals["has_events"] = deals["deal_key"].isin(own["deal_key"])
        deals["created_month"] = deals["created_at"].dt.strftime("%Y-%m")
        deals["created_week"] = (deals["created_at"].dt.normalize()
                                 - pd.to_timedelta(deals["created_at"].dt.weekday, unit="D")).dt.strftime("%Y-%m-%d")
        # speed to lead and cycle (days), with their event flags
        worked_days = (deals["first_worked"] - deals["created_at"]).dt.total_seconds().clip(lower=0) / 86400
        waiting_days = (deals["closed"].fillna(as_of) - deals["created_at"]).dt.total_seconds() / 86400
        deals["lead_days"] = np.where(deals["first_worked"].notna(), worked_days, waiting_days)
        deals["lead_event"] = deals["first_worked"].notna()
        deals.loc[~deals["has_events"], "lead_days"] = np.nan
        deals["never_worked"] = deals["has_events"] & deals["first_worked"].isna() & (deals["status"] == "lost")
        deals["cycle_days"] = ((deals["closed"].fillna(as_of) - deals["created_at"]).dt.total_seconds() / 86400
                               ).where(deals["status"] != "lost")
        self.deals = deals

    def rate(self, currency: pd.Series, day: pd.Series) -> np.ndarray:
        """The USD rate of each currency on each day: the latest on or before it, else the first."""
        out = np.ones(len(currency))
        for cur, rates in self.fx.groupby("currency"):
            rates = rates.sort_values("rate_date")
            mask = (currency == cur).to_numpy()
            if not mask.any():
                continue
            dates = pd.to_datetime(rates["rate_date"]).to_numpy()
            idx = np.searchsorted(dates, pd.to_datetime(day[mask]).to_numpy(), side="right") - 1
            out[mask] = rates["rate"].to_numpy()[np.clip(idx, 0, None)]
        return out

    # ---- funnel
    def funnel(self, by: str | None = None) -> pd.DataFrame:
        rows = []
        deals = self.deals.assign(group=self.deals[by].fillna("(none)") if by else "all")
        for (pipeline, group), d in deals.groupby(["pipeline", "group"]):
            stages = self.stages[(self.stages["pipeline"] == pipeline) & self.stages["kind"].isin(["open", "won"])]
            passed = d["entered_won"] | (d["status"] == "won")
            for _, s in stages.iterrows():
                if s["kind"] == "won":
                    reached = (d["status"] == "won").sum()
                else:
                    reached = ((d["reached_order"] >= s["stage_order"]) | passed).sum()
                rows.append({"pipeline": pipeline, "breakdown_value": group, "stage": s["stage"],
                             "created_deals": len(d), "reached": reached,
                             "lost_here": (d["lost_at"] == s["stage"]).sum(),
                             "open_deals": (d["status"] == "open").sum()})
            unknown = ((d["status"] == "lost") & d["lost_at"].isna()).sum()
            if unknown:
                rows.append({"pipeline": pipeline, "breakdown_value": group, "stage": "(stage unknown)",
                             "created_deals": len(d), "reached": np.nan, "lost_here": unknown,
                             "open_deals": (d["status"] == "open").sum()})
        return pd.DataFrame(rows)

    # ---- time in stage
    def stay_observations(self) -> pd.DataFrame:
        s = self.own[self.own["kind"] == "open"].copy()
        ended = s["exited"].copy()
        no_next = ended.isna() & s["closed"].notna()
        ended[no_next] = s.loc[no_next, "closed"].where(s.loc[no_next, "closed"] >= s.loc[no_next, "entered_at"],
                                                         s.loc[no_next, "entered_at"])
        s["event"] = ended.notna()
        s["days"] = (ended.fillna(self.as_of) - s["entered_at"]).dt.total_seconds() / 86400
        return s.merge(self.deals[["deal_key", "owner", "created_week", "created_month"]], on="deal_key")


def clock(days: pd.Series) -> np.ndarray:
    """The Kaplan–Meier clock of the marts: whole hours, rounded up."""
    return np.ceil(np.maximum(np.asarray(days, dtype=float) * 24 - 1e-9, 0)) / 24


def km_quantile(durations, events, q: float) -> float | None:
    """lifelines' Kaplan–Meier; the first time S(t) <= 1 - q."""
    fitter = KaplanMeierFitter().fit(clock(durations), np.asarray(events, dtype=bool))
    curve = fitter.survival_function_.iloc[:, 0]
    below = curve[curve <= (1 - q) + 1e-9]
    return float(below.index[0]) if len(below) else None


def same(a, b, rel=1e-9) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return b is not None and not (isinstance(b, float) and math.isnan(b)) and math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


@pytest.fixture(scope="module")
def ref(con) -> Reference:
    return Reference(con, AS_OF)


# ---------------------------------------------------------------- the tests

def test_build_passes_on_the_simulated_company(company):
    _, run = company
    assert run.success, run.exception
    bad = {k: v for k, v in run.statuses.items() if v not in ("success", "pass")}
    assert not bad, bad


@pytest.mark.parametrize("by", [None, "owner", "lead_source", "created_month", "created_week"])
def test_conversion_matches_pandas(con, ref, by):
    got = mart(con, f"select * from main.mart_funnel_breakdowns where breakdown = '{by or 'all'}'")
    want = ref.funnel(by)
    merged = want.merge(got, on=["pipeline", "breakdown_value", "stage"], suffixes=("_want", ""), how="outer",
                        indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    for column in ("created_deals", "reached", "lost_here", "open_deals"):
        want_, got_ = merged[f"{column}_want"], merged[column]
        assert ((want_ == got_) | (want_.isna() & got_.isna())).all(), column
    assert np.allclose(merged["cumulative_conversion"].astype(float),
                       merged["reached_want"] / merged["created_deals_want"], equal_nan=True)
    if by is None:  # the breakdown 'all' is mart_funnel_conversion
        classic = mart(con, "select pipeline, stage, reached, step_conversion, lost_here from main.mart_funnel_conversion")
        joined = classic.merge(got, on=["pipeline", "stage"], suffixes=("", "_b"))
        assert len(joined) == len(classic) == len(got)
        assert joined["reached"].astype(float).equals(joined["reached_b"].astype(float))
        assert (joined["lost_here"] == joined["lost_here_b"]).all()
        assert np.allclose(joined["step_conversion"].astype(float), joined["step_conversion_b"].astype(float),
                           equal_nan=True)
    if by and by.startswith("created_"):
        share = merged["open_deals_want"] / merged["created_deals_want"]
        assert (merged["is_immature"] == (share > 0.5)).all()


@pytest.mark.parametrize("by", [None, "owner", "created_month"])
def test_time_in_stage_kaplan_meier_matches_lifelines(con, ref, by):
    got = mart(con, f"select * from main.mart_time_in_stage where breakdown = '{by or 'all'}'")
    stays = ref.stay_observations()
    stays["group"] = stays[by].fillna("(none)") if by else "all"
    checked = 0
    for (pipeline, group, stage), s in stays.groupby(["pipeline", "group", "stage"]):
        row = got[(got["pipeline"] == pipeline) & (got["breakdown_value"] == group) & (got["stage"] == stage)]
        assert len(row) == 1, (pipeline, group, stage)
        row = row.iloc[0]
        assert row["stays"] == len(s) and row["censored_stays"] == (~s["event"]).sum()
        assert same(km_quantile(s["days"], s["event"], 0.5), row["median_days_in_stage"]), (pipeline, group, stage)
        assert same(km_quantile(s["days"], s["event"], 0.9), row["p90_days_in_stage"]), (pipeline, group, stage)
        finished = s.loc[s["event"], "days"]
        assert same(finished.mean() if len(finished) else None, row["mean_days_in_stage_closed"])
        checked += 1
    assert checked == len(got) and checked > 10
    assert got["censored_stays"].sum() > 0  # open stays were there to censor


def test_sales_cycle_and_speed_to_lead_match_lifelines(con, ref):
    got = mart(con, "select * from main.mart_sales_cycles where breakdown = 'all'").set_index("pipeline")
    d = ref.deals
    for pipeline, g in list(d.groupby("pipeline")) + [("all", d)]:
        row = got.loc[pipeline]
        cycle = g[g["cycle_days"].notna()]
        assert same(km_quantile(cycle["cycle_days"], cycle["status"] == "won", 0.5), row["median_sales_cycle_days"])
        assert same(km_quantile(cycle["cycle_days"], cycle["status"] == "won", 0.9), row["p90_sales_cycle_days"])
        assert same(g.loc[g["status"] == "won", "cycle_days"].mean(), row["mean_sales_cycle_days_won"])
        leads = g[g["lead_days"].notna()]
        assert row["leads_measured"] == len(leads)
        assert row["leads_never_worked"] == g["never_worked"].sum() > 0
        assert same(g["never_worked"].sum() / len(leads), row["share_never_worked"])
        assert same(km_quantile(leads["lead_days"], leads["lead_event"], 0.5), row["median_speed_to_lead_days"])


def test_win_rates_deal_size_and_velocity(con, ref):
    d = ref.deals
    closed = d[d["status"] != "open"].assign(month=lambda x: x["closed"].dt.strftime("%Y-%m"))
    got = mart(con, "select * from main.mart_win_rates where basis = 'close_period' and period_grain = 'month'")
    for (pipeline, month), g in closed.groupby(["pipeline", "month"]):
        row = got[(got["pipeline"] == pipeline) & (got["period"] == month)].iloc[0]
        won = g[g["status"] == "won"]
        assert (row["won_deals"], row["lost_deals"]) == (len(won), len(g) - len(won))
        assert same(len(won) / len(g), row["win_rate"])
        assert same(won["amount_reporting"].mean() if len(won) else None, row["avg_won_amount_reporting"], rel=1e-7)

    velocity = mart(con, "select * from main.mart_sales_velocity where breakdown = 'all'").set_index("pipeline")
    cycles = mart(con, "select * from main.mart_sales_cycles where breakdown = 'all'").set_index("pipeline")
    window = closed[closed["closed"] > AS_OF - pd.Timedelta(days=365)]
    for pipeline, g in list(window.groupby("pipeline")) + [("all", window)]:
        row = velocity.loc[pipeline]
        won = g[g["status"] == "won"]
        open_deals = (d["status"] == "open").sum() if pipeline == "all" else (
            (d["status"] == "open") & (d["pipeline"] == pipeline)).sum()
        rate, size = len(won) / len(g), won["amount_reporting"].mean()
        assert row["open_deals"] == open_deals
        assert same(rate, row["win_rate"]) and same(size, row["avg_won_amount_reporting"], rel=1e-7)
        cycle = cycles.loc[pipeline, "median_sales_cycle_days"]
        assert same(open_deals * rate * size / cycle, row["velocity_per_day_reporting"], rel=1e-7)


def test_cac_and_payback(con, ref):
    got = mart(con, "select * from main.mart_cac_payback")
    spend = ref.spend.copy()
    spend = spend[spend["month"] <= AS_OF.strftime("%Y-%m")]
    starts = pd.to_datetime(spend["month"] + "-01")
    spend["spend_reporting"] = spend["amount"].astype(float) * ref.rate(spend["currency"], starts)
    won = ref.deals[ref.deals["status"] == "won"].assign(month=lambda x: x["closed"].dt.strftime("%Y-%m"))
    assert len(got) == len(spend) + spend["month"].nunique()
    for _, s in spend.sample(40, random_state=1).iterrows():
        row = got[(got["spend_month"] == s["month"]) & (got["lead_source"] == s["lead_source"])].iloc[0]
        w = won[(won["month"] == s["month"]) & (won["lead_source"] == s["lead_source"])]
        assert same(s["spend_reporting"], row["spend_reporting"], rel=1e-7) and row["won_deals"] == len(w)
        if len(w):
            cac = s["spend_reporting"] / len(w)
            assert same(cac, row["cac_reporting"], rel=1e-7)
            assert same(cac / (w["amount_reporting"].mean() * 0.6 / 12), row["payback_months"], rel=1e-7)
        else:
            assert pd.isna(row["cac_reporting"]) and pd.isna(row["payback_months"])


def open_at(ref: Reference, moment: pd.Timestamp) -> pd.DataFrame:
    """Every deal open at `moment` with its stage then (docs/metrics.md, pipeline as of a date)."""
    d = ref.deals[ref.deals["created_at"] <= moment]
    last = ref.stays[ref.stays["entered_at"] <= moment].sort_values("stay_number").groupby("deal_key").last()
    d = d.join(last[["stage", "kind", "exited", "entered_at"]].rename(columns={"stage": "stage_at"}), on="deal_key")
    closed_then = d["closed"].notna() & (d["closed"] <= moment)
    reopened_later = d["kind"].isin(["won", "lost"]) & d["exited"].notna()
    d = d[~closed_then & ~reopened_later].copy()
    first = (ref.stages[ref.stages["kind"] == "open"].sort_values("stage_order").groupby("pipeline")["stage"].first())
    open_stages = set(map(tuple, ref.stages.loc[ref.stages["kind"] == "open", ["pipeline", "stage"]].to_numpy()))
    eventless = d["stage_at"].isna()
    current_open = [(p, s) in open_stages for p, s in zip(d["pipeline"], d["current_stage"])]
    d.loc[eventless, "stage_at"] = np.where(np.array(current_open)[eventless.to_numpy()],
                                            d.loc[eventless, "current_stage"], d.loc[eventless, "pipeline"].map(first))
    return d


def test_pipeline_as_of_and_daily_snapshots(con, ref):
    snapshot = mart(con, "select deal_key, stage, amount_reporting from main.mart_pipeline_as_of")
    want = open_at(ref, AS_OF)
    assert set(snapshot["deal_key"]) == set(want["deal_key"])
    assert dict(zip(snapshot["deal_key"], snapshot["stage"])) == dict(zip(want["deal_key"], want["stage_at"]))

    daily = mart(con, "select * from main.mart_pipeline_daily")
    assert daily["snapshot_date"].nunique() == 400
    assert pd.Timestamp(daily["snapshot_date"].max()) == AS_OF.normalize()
    for days_back in (0, 45, 200, 399):
        day = AS_OF.normalize() - days_back * DAY
        moment = min(day + DAY - pd.Timedelta(microseconds=1), AS_OF)
        d = open_at(ref, moment)
        d = d[~(d["kind"].isin(["won", "lost"]))]  # its last stay then is a won/lost stage: not open
        d = d.assign(value=d["amount"].fillna(0) * ref.rate(d["currency"], pd.Series(day, index=d.index)))
        want = d.groupby(["pipeline", "stage_at"]).agg(n=("deal_key", "size"), value=("value", "sum"))
        got = daily[pd.to_datetime(daily["snapshot_date"]) == day].set_index(["pipeline", "stage"])
        got = got[got["open_deals"] > 0]
        assert set(got.index) == set(want.index), days_back
        for key, w in want.iterrows():
            assert got.loc[key, "open_deals"] == w["n"], (days_back, key)
            assert same(w["value"], got.loc[key, "amount_reporting"], rel=1e-7), (days_back, key)


def test_pipeline_changes_waterfall(con, ref):
    start, end = open_at(ref, FROM), open_at(ref, AS_OF)
    at_from = ref.deals[ref.deals["created_at"] <= FROM]
    rate = dict(zip(ref.deals["deal_key"], ref.deals["amount"].fillna(0) * ref.rate(
        ref.deals["currency"], pd.Series(AS_OF.normalize(), index=ref.deals.index))))
    new = end[~end["deal_key"].isin(at_from["deal_key"])]
    won = start[ref.deals.set_index("deal_key").loc[start["deal_key"], "status"].to_numpy() == "won"]
    lost = start[ref.deals.set_index("deal_key").loc[start["deal_key"], "status"].to_numpy() == "lost"]
    steps = mart(con, "select * from main.mart_pipeline_waterfall where pipeline = 'all'").set_index("change_type")
    total = lambda frame: sum(rate[k] for k in frame["deal_key"])  # noqa: E731
    for step, frame, sign in (("opening", start, 1), ("closing", end, 1), ("new", new, 1),
                              ("won", won, -1), ("lost", lost, -1)):
        assert steps.loc[step, "deals"] == len(frame), step
        assert same(sign * total(frame), float(steps.loc[step, "amount_reporting"]), rel=1e-7), step
    flows = steps[steps["is_flow"]]
    assert same(float(steps.loc["opening", "amount_reporting"] + flows["amount_reporting"].sum()),
                float(steps.loc["closing", "amount_reporting"]), rel=1e-9)
    assert same(float(steps.loc["opening", "period_amount_reporting"] + flows["period_amount_reporting"].sum()),
                float(steps.loc["closing", "period_amount_reporting"]), rel=1e-9)
    both = start.merge(end, on="deal_key", suffixes=("_from", "_to"))
    order = ref.stages.set_index(["pipeline", "stage"])["stage_order"]
    moved = (both.apply(lambda r: order[(r["pipeline_to"], r["stage_at_to"])], axis=1)
             - both.apply(lambda r: order[(r["pipeline_from"], r["stage_at_from"])], axis=1))
    assert steps.loc["advanced", "deals"] == (moved > 0).sum() > 0
    assert steps.loc["moved_back", "deals"] == (moved < 0).sum()


def test_stalled_deals_are_above_the_stage_p90(con, ref):
    stalled = mart(con, "select * from main.mart_stalled_deals")
    snapshot = mart(con, "select * from main.mart_pipeline_snapshot where entered_stage_at is not null")
    stays = ref.stay_observations()
    p90 = {key: km_quantile(s["days"], s["event"], 0.9) for key, s in stays.groupby(["pipeline", "stage"])}
    want = {r.deal_key for r in snapshot.itertuples()
            if p90.get((r.pipeline, r.stage)) is not None and r.days_in_stage > p90[(r.pipeline, r.stage)]}
    assert set(stalled["deal_key"]) == want and want


def test_stage_conversion_period_over_period_z_test(con, ref):
    got = mart(con, "select * from main.mart_stage_conversion_periods where period_grain = 'month' "
                    "and previous_decided_stays > 0 and z_score is not null")
    assert len(got) > 20
    s = ref.own[ref.own["kind"] == "open"]
    advanced = (s["next_pipeline"] == s["pipeline"]) & ((s["next_kind"] == "won") | (
        (s["next_kind"] == "open") & (s["next_order"] > s["stage_order"])))
    advanced |= s["next_kind"].isna() & (s["status"] == "won")
    lost = ((s["next_pipeline"] == s["pipeline"]) & (s["next_kind"] == "lost")) | (s["next_kind"].isna() & (s["status"] == "lost"))
    decided = s[advanced | lost].assign(advanced=advanced[advanced | lost])
    decided = decided.assign(month=decided["exited"].fillna(decided["closed"]).dt.strftime("%Y-%m"))
    counts = decided.groupby(["pipeline", "stage", "month"])["advanced"].agg(["size", "sum"])
    for row in got.sample(20, random_state=2).itertuples():
        n1, a1 = counts.loc[(row.pipeline, row.stage, row.period)]
        n0, a0 = counts.loc[(row.pipeline, row.stage, row.previous_period)]
        assert (row.decided_stays, row.advanced_stays, row.previous_decided_stays) == (n1, a1, n0)
        pooled = (a1 + a0) / (n1 + n0)
        z = (a1 / n1 - a0 / n0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        assert same(z, row.z_score, rel=1e-9)
        assert abs(2 * norm.sf(abs(z)) - row.p_value) < 2e-7  # the SQL normal tail's accuracy
        assert row.is_significant == (row.p_value < 0.05)


def test_the_simulators_win_rate_per_lead_source_comes_back(company, con):
    """Deals created over a year before as_of have (nearly) all closed: their share won per lead
    source is the simulator's mean true win probability, within sampling error."""
    simulated, _ = company
    truth = simulated.truth.assign(deal_key=lambda t: t["source_system"] + ":" + t["native_id"].astype(str))
    deals = mart(con, "select deal_key, lead_source, status_as_of, created_at from main.fct_deals")
    mature = deals[deals["created_at"] < AS_OF - pd.Timedelta(days=365)].merge(
        truth[["deal_key", "p_win_true"]], on="deal_key")
    assert len(mature) > 500
    for source, g in mature.groupby("lead_source"):
        if len(g) < 40:
            continue
        p = g["p_win_true"].mean()
        observed = (g["status_as_of"] == "won").mean()
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / len(g)) + 0.02, source


# ---------------------------------------------------------------- the CLI on these marts

@pytest.fixture(scope="module")
def workspace(company, tmp_path_factory):
    """A workspace whose warehouse is the built one (the CLI reads it)."""
    import shutil

    _, run = company
    home = tmp_path_factory.mktemp("workspace")
    shutil.copy(run.warehouse, home / "warehouse.duckdb")
    return home


def cli_json(capsys, *argv):
    from voronka.cli import main

    code = main([*argv, "--format", "json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_cli_funnel_gains_time_in_stage(capsys, con, workspace):
    rows = cli_json(capsys, "funnel", "--workspace", str(workspace))
    assert rows and {"median_days_in_stage", "p90_days_in_stage", "mean_days_in_stage_closed",
                     "reached", "step_conversion"} <= set(rows[0])
    got = {(r["pipeline"], r["stage"]): r["median_days_in_stage"] for r in rows}
    want = mart(con, "select pipeline, stage, median_days_in_stage from main.mart_funnel_breakdowns "
                     "where breakdown = 'all'")
    assert all(same(m, got[(p, s)]) for p, s, m in want.itertuples(index=False))
    by_owner = cli_json(capsys, "funnel", "--workspace", str(workspace), "--by", "owner", "--pipeline", "SaaS")
    assert {r["pipeline"] for r in by_owner} == {"SaaS"} and len({r["owner"] for r in by_owner}) > 1
    cohorts = cli_json(capsys, "funnel", "--workspace", str(workspace), "--cohort", "month")
    assert {"cohort", "is_immature"} <= set(cohorts[0]) and any(r["is_immature"] for r in cohorts)


def test_cli_funnel_as_of_an_earlier_date(capsys, workspace, ref):
    """--as-of rebuilds the funnel as of that day in a scratch copy: the created counts are the
    deals created by then."""
    rows = cli_json(capsys, "funnel", "--workspace", str(workspace), "--as-of", "2025-12-31")
    cutoff = pd.Timestamp("2025-12-31 23:59:59")
    created = ref.deals[ref.deals["created_at"] <= cutoff].groupby("pipeline").size()
    first = {r["pipeline"]: r for r in rows if r["stage_order"] == 1}
    assert {p: first[p]["cumulative_conversion"] for p in first} == pytest.approx(
        {p: first[p]["reached"] / created[p] for p in first})


def test_cli_changes(capsys, con, workspace):
    built = cli_json(capsys, "changes", "--workspace", str(workspace))
    want = mart(con, "select pipeline, change_type, deals from main.mart_pipeline_waterfall")
    assert {(r["pipeline"], r["change_type"]): r["deals"] for r in built} == {
        (p, c): d for p, c, d in want.itertuples(index=False)}
    other = cli_json(capsys, "changes", "--workspace", str(workspace), "--from", "2026-03-31",
                     "--to", "2026-06-30", "--pipeline", "SaaS")
    steps = {r["change_type"]: r for r in other}
    assert {r["pipeline"] for r in other} == {"SaaS"}
    assert steps["new"]["deals"] > dict(((r["pipeline"], r["change_type"]), r["deals"]) for r in built)[("SaaS", "new")]
    assert steps["opening"]["amount_reporting"] + sum(
        r["amount_reporting"] for r in other if r["change_type"] in
        ("new", "reopened", "pulled_in", "amount_changed", "pushed", "won", "lost")) == pytest.approx(
        steps["closing"]["amount_reporting"])
    deals = cli_json(capsys, "changes", "--workspace", str(workspace), "--deals")
    assert deals and all(r["change_type"] != "unchanged" for r in deals)


def test_cli_user_errors_are_one_line(capsys, workspace):
    from voronka.cli import main

    for argv in (["funnel", "--by", "owner", "--cohort", "week"], ["changes", "--from", "2026-05-01", "--to", "2026-04-01"],
                 ["changes", "--period", "2026-13"], ["funnel", "--as-of", "yesterday"]):
        assert main([*argv, "--workspace", str(workspace)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("voronka: error:") and "\n" not in err, err
