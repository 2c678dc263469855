"""The demo-company simulator: determinism, the export contract, and its stated rates coming back
out of its own data within sampling error."""

from __future__ import annotations

import json
import re
from datetime import date

import numpy as np
import pandas as pd
import pytest

from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import (
    DEALS_COLUMNS,
    FX_RATES_COLUMNS,
    MARKETING_SPEND_COLUMNS,
    PIPELINE_STAGES_COLUMNS,
    STAGE_EVENTS_COLUMNS,
    TARGETS_COLUMNS,
    export_as_of,
    simulate_company,
)

END = date(2026, 5, 20)
END_TS = pd.Timestamp("2026-05-20 23:59:59")
MATURE = pd.Timestamp("2025-05-20")  # deals created a year before the export have (almost) all closed


@pytest.fixture(scope="module")
def company():
    return simulate_company(n_deals=20_000, seed=7, end_date=END)


@pytest.fixture(scope="module")
def events(company):
    """Events with their stage kind/order, in file order (deal, then time)."""
    return company.stage_events.merge(company.pipeline_stages, on=["pipeline", "stage"], how="left",
                                      validate="many_to_one")


def _binomial_close(successes: float, probs: np.ndarray, sigmas: float = 4.0) -> bool:
    """Successes within `sigmas` standard errors of the sum of independent Bernoulli(probs)."""
    return abs(successes - probs.sum()) <= sigmas * np.sqrt((probs * (1 - probs)).sum())


# ---------------------------------------------------------------------------- determinism

def test_same_arguments_give_identical_frames_and_another_seed_differs():
    a = simulate_company(n_deals=600, seed=5, end_date=END)
    b = simulate_company(n_deals=600, seed=5, end_date=END)
    for name in ("deals", "stage_events", "pipeline_stages", "targets", "fx_rates", "marketing_spend", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)
    assert a.params == b.params
    c = simulate_company(n_deals=600, seed=6, end_date=END)
    assert not a.deals["created_at"].equals(c.deals["created_at"])
    assert not a.fx_rates["rate"].equals(c.fx_rates["rate"])


def test_written_files_are_byte_identical_across_runs(tmp_path):
    paths = []
    for run in ("a", "b"):
        company = simulate_company(n_deals=500, seed=9, end_date=END)
        paths.append(write_canonical(company, tmp_path / run / "inbox", tmp_path / run / "truth"))
    for first, second in zip(*paths):
        assert first.read_bytes() == second.read_bytes(), first.name
    for name in ("truth.csv", "params.json"):
        assert (tmp_path / "a/truth" / name).read_bytes() == (tmp_path / "b/truth" / name).read_bytes()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n_deals"):
        simulate_company(n_deals=0)
    with pytest.raises(ValueError, match="years"):
        simulate_company(n_deals=10, years=0)


# ---------------------------------------------------------------------------- the export contract

def test_frames_have_the_canonical_columns_in_order(company):
    assert list(company.deals.columns) == DEALS_COLUMNS
    assert list(company.stage_events.columns) == STAGE_EVENTS_COLUMNS
    assert list(company.pipeline_stages.columns) == PIPELINE_STAGES_COLUMNS
    assert list(company.targets.columns) == TARGETS_COLUMNS
    assert list(company.fx_rates.columns) == FX_RATES_COLUMNS
    assert list(company.marketing_spend.columns) == MARKETING_SPEND_COLUMNS
    assert len(company.deals) == 20_000 and company.deals["native_id"].is_unique
    assert (company.deals["source_system"] == "demo").all()
    assert (company.stage_events["origin"] == "history").all()
    assert (company.deals["exported_at"] == END_TS).all()
    assert list(company.truth["native_id"]) == list(company.deals["native_id"])


def test_pipeline_stages_are_ordered_with_terminal_stages_last(company):
    stages = company.pipeline_stages
    assert {"Продажи B2B", "SaaS"} <= set(stages["pipeline"])
    b2b = stages[stages["pipeline"] == "Продажи B2B"].sort_values("stage_order")
    assert list(b2b["stage"]) == ["Новый лид", "Взяли в работу", "Квалифицирован", "Отправлено КП",
                                  "Реквизиты получены", "Договор/счет отправлен", "Оплата получена",
                                  "Успешно реализовано", "Закрыто и не реализовано"]
    for _, pstages in stages.groupby("pipeline"):
        pstages = pstages.sort_values("stage_order")
        n = len(pstages) - 2
        assert list(pstages["stage_order"]) == list(range(1, n + 3))
        assert list(pstages["kind"]) == ["open"] * n + ["won", "lost"]
        probs = pstages["crm_probability"].to_numpy()
        assert (np.diff(probs[:n]) > 0).all() and probs[n] == 1.0 and probs[n + 1] == 0.0


def test_every_event_lies_between_creation_and_the_export(company, events):
    created = events["native_id"].map(company.deals.set_index("native_id")["created_at"])
    assert (events["entered_at"] <= END_TS).all()
    assert (events["entered_at"] >= created).all()
    assert (company.deals["created_at"] <= END_TS).all()
    assert events["kind"].notna().all(), "an event's stage is not a stage of its pipeline"


def test_each_deal_starts_in_its_first_stage_at_created_at_and_time_moves_forward(company, events):
    first = events.groupby("native_id", sort=False).first()
    deals = company.deals.set_index("native_id")
    assert len(first) == len(deals)
    assert (first["entered_at"] == deals.loc[first.index, "created_at"]).all()
    assert (first["stage_order"] == 1).all()
    same_deal = events["native_id"].eq(events["native_id"].shift())
    assert (events["entered_at"].diff()[same_deal] > pd.Timedelta(0)).all()


def test_closed_and_open_deals_are_consistent_with_their_last_event(company, events):
    deals = company.deals.set_index("native_id")
    last = events.groupby("native_id", sort=False).last().loc[deals.index]
    kind = deals.merge(company.pipeline_stages, left_on=["pipeline", "current_stage"],
                       right_on=["pipeline", "stage"], how="left")["kind"].to_numpy()
    closed = deals["outcome"] != "open"
    assert (kind == deals["outcome"].to_numpy()).all()  # won -> won stage, lost -> lost, open -> open
    assert (last["stage"] == deals["current_stage"]).all()
    assert deals.loc[closed, "closed_at"].notna().all()
    assert (last.loc[closed, "entered_at"] == deals.loc[closed, "closed_at"]).all()
    assert deals.loc[~closed, "closed_at"].isna().all()
    lost = deals["outcome"] == "lost"
    assert deals.loc[lost, "lost_reason"].notna().all() and deals.loc[~lost, "lost_reason"].isna().all()
    assert {"won", "lost", "open"} == set(deals["outcome"])


def test_export_as_of_a_day_earlier_shows_each_deal_as_it_stood_then(company):
    cut = END_TS - pd.Timedelta(days=1)
    earlier = export_as_of(company, cut)
    now = company.deals.set_index("native_id")
    then = earlier.deals.set_index("native_id")
    assert set(then.index) == set(now.index[now["created_at"] <= cut])
    assert (earlier.stage_events["entered_at"] <= cut).all()
    assert len(earlier.stage_events) == int(((company.stage_events["entered_at"] <= cut)
                                             & company.stage_events["native_id"].isin(then.index)).sum())
    assert (then["exported_at"] == cut).all()
    # A deal closed on the last day is open a day earlier, in the stage it was in then.
    closed_late = now.index[(now["closed_at"] > cut) & (now["created_at"] <= cut)]
    assert len(closed_late) > 0
    assert (then.loc[closed_late, "outcome"] == "open").all()
    assert then.loc[closed_late, "closed_at"].isna().all()
    last_stage = (earlier.stage_events.sort_values("entered_at", kind="stable")
                  .groupby("native_id")["stage"].last())
    assert (then.loc[closed_late, "current_stage"] == last_stage.reindex(closed_late)).all()
    # A deal closed before the cut is exported unchanged.
    closed_before = now.index[now["closed_at"] <= cut]
    columns = ["outcome", "closed_at", "current_stage", "lost_reason"]
    pd.testing.assert_frame_equal(then.loc[closed_before, columns].fillna({"lost_reason": ""}),
                                  now.loc[closed_before, columns].fillna({"lost_reason": ""}))


def test_amounts_are_positive_in_the_pipelines_currencies(company):
    deals = company.deals
    assert (deals["amount"] > 0).all()
    b2b = deals["pipeline"] == "Продажи B2B"
    assert set(deals.loc[b2b, "currency"]) == {"RUB"}
    saas = deals[deals["pipeline"] == "SaaS"]
    assert ((saas["currency"] == "EUR") == (saas["region"] == "Europe")).all()
    assert set(saas["currency"]) == {"USD", "EUR"}
    assert (deals["expected_close_date"] >= deals["created_at"].dt.normalize()).all()


def test_lost_reasons_speak_the_pipelines_language(company):
    deals = company.deals
    ru = set(deals.loc[(deals["pipeline"] == "Продажи B2B") & (deals["outcome"] == "lost"), "lost_reason"])
    en = set(deals.loc[(deals["pipeline"] == "SaaS") & (deals["outcome"] == "lost"), "lost_reason"])
    assert {"Дорого", "Выбрали конкурента", "Нет ответа", "Нет бюджета"} <= ru
    assert {"Price", "Competitor", "No response", "No budget", "Timing"} <= en


# ---------------------------------------------------------------------------- stated rates come back

def test_win_rate_by_lead_source_matches_the_true_probabilities(company):
    deals, truth = company.deals, company.truth
    mature = (deals["created_at"] < MATURE) & (deals["outcome"] != "open")
    assert mature.sum() / (deals["created_at"] < MATURE).sum() > 0.99
    won = (deals["outcome"] == "won")[mature]
    by_source = pd.DataFrame({"won": won, "p": truth["p_win_true"][mature],
                              "source": deals["lead_source"][mature]}).groupby("source")
    for source, g in by_source:
        assert _binomial_close(g["won"].sum(), g["p"].to_numpy()), source
    rates = by_source["won"].mean()
    assert rates["Рекомендация"] > rates["Сайт"] > rates["Холодный звонок"]
    assert rates["Referral"] > rates["Website"] > rates["Outbound"]


def test_win_rate_by_owner_follows_the_stated_skill(company):
    deals, truth, params = company.deals, company.truth, company.params
    mature = (deals["created_at"] < MATURE) & (deals["outcome"] != "open")
    b2b = params["pipelines"][0]
    skill = {o["name"]: o["skill"] for o in b2b["owners"]}
    answered = mature & ~truth["is_unanswered"] & (deals["pipeline"] == b2b["name"])
    rate = (deals["outcome"] == "won")[answered].groupby(deals["owner"][answered]).mean()
    best, worst = max(skill, key=skill.get), min(skill, key=skill.get)
    assert rate[best] > rate[worst] + 0.1
    assert (truth["owner_effect"] == truth["owner"].map({o["name"]: o["skill"] for p in params["pipelines"]
                                                         for o in p["owners"]})).all()


def test_p_win_true_is_the_sigmoid_of_the_stated_effects(company):
    t = company.truth
    logit = t["base_logit"] + t["owner_effect"] + t["source_effect"] + t["segment_effect"] + t["noise_logit"]
    share = t["pipeline"].map({p["name"]: p["unanswered_share"] for p in company.params["pipelines"]})
    np.testing.assert_allclose(t["p_win_true"], (1 - share) / (1 + np.exp(-logit)), rtol=1e-12)
    assert not (t["will_win"] & t["is_unanswered"]).any()
    assert _binomial_close(t["will_win"].sum(), t["p_win_true"].to_numpy())


def test_unanswered_share_matches_the_parameter(company, events):
    deals = company.deals.set_index("native_id")
    furthest = events[events["kind"] == "open"].groupby("native_id")["stage_order"].max()
    never_moved = (deals["outcome"] == "lost") & (furthest.loc[deals.index] == 1)
    mature = deals["created_at"] < MATURE
    for p in company.params["pipelines"]:
        rows = mature & (deals["pipeline"] == p["name"])
        share = p["unanswered_share"]
        assert _binomial_close(never_moved[rows].sum(), np.full(rows.sum(), share)), p["name"]
        assert set(deals.loc[rows & never_moved, "lost_reason"]) == {p["no_answer_reason"]}
    shares = {p["name"]: p["unanswered_share"] for p in company.params["pipelines"]}
    assert shares["Продажи B2B"] > 0.25 > 0.1 > shares["SaaS"]


def test_pipeline_shares_match_the_parameters(company):
    counts = company.deals["pipeline"].value_counts()
    n = len(company.deals)
    for p in company.params["pipelines"]:
        assert _binomial_close(counts[p["name"]], np.full(n, p["share"])), p["name"]
        assert company.params["derived"][p["name"]]["deals"] == counts[p["name"]]


def test_backward_moves_and_reopened_deals_appear_at_their_stated_rates(company, events):
    t = company.truth
    answered = ~t["is_unanswered"]
    assert _binomial_close(t["has_backward_move"].sum(),
                           np.full(answered.sum(), company.params["backward_share"]))
    assert _binomial_close(t["is_reopened"].sum(), np.full(answered.sum(), company.params["reopen_share"]))
    # in the events: a move to a lower open stage, and an open stage after a lost one
    prev_order = events.groupby("native_id")["stage_order"].shift()
    prev_kind = events.groupby("native_id")["kind"].shift()
    back = events[(events["kind"] == "open") & (prev_kind == "open") & (events["stage_order"] < prev_order)]
    reopen = events[(events["kind"] == "open") & (prev_kind == "lost")]
    backward_ids = set(t.loc[t["has_backward_move"], "native_id"])
    reopened_ids = set(t.loc[t["is_reopened"], "native_id"])
    assert set(back["native_id"]) <= backward_ids and len(set(back["native_id"])) > 0.8 * len(backward_ids)
    assert set(reopen["native_id"]) <= reopened_ids and len(set(reopen["native_id"])) > 0.8 * len(reopened_ids)


def test_creation_grows_and_dips_on_weekends_and_holidays(company):
    deals = company.deals
    created = deals["created_at"]
    b2b = deals["pipeline"] == "Продажи B2B"
    last_year = (created > END_TS - pd.Timedelta(days=365)).sum()
    first_year = (created <= created.min() + pd.Timedelta(days=365)).sum()
    assert last_year > 1.15 * first_year
    weekend = created.dt.weekday >= 5
    assert weekend.mean() < 0.1
    jan_holidays = b2b & (created.dt.month == 1) & (created.dt.day <= 8)
    feb_same_days = b2b & (created.dt.month == 2) & (created.dt.day <= 8)
    assert jan_holidays.sum() < 0.5 * feb_same_days.sum()


# ---------------------------------------------------------------------------- reference tables

def test_targets_cover_every_quarter_and_stretch_expected_bookings(company):
    targets = company.targets
    quarterly = targets[targets["period"].str.contains("Q")]
    monthly = targets[~targets["period"].str.contains("Q")]
    assert targets[["scope_owner", "scope_segment"]].isna().all().all()
    currency = {p["name"]: p["currency"] for p in company.params["pipelines"]}
    assert (targets["currency"] == targets["scope_pipeline"].map(currency)).all()
    first = pd.Period(company.deals["created_at"].min(), "Q")
    expected_quarters = [str(q).replace("Q", "-Q") for q in pd.period_range(first, pd.Period(END, "Q") + 2)]
    low, high = company.params["target_multiplier"]
    for pipeline, rows in quarterly.groupby("scope_pipeline"):
        assert list(rows["period"]) == expected_quarters
        expected = company.params["derived"][pipeline]["expected_bookings_by_quarter"]
        ratio = rows.set_index("period")["target_amount"] / pd.Series(expected)
        assert ratio.between(low * 0.99, high * 1.01).all(), ratio
        months = monthly[monthly["scope_pipeline"] == pipeline]
        by_quarter = months.groupby(pd.PeriodIndex(months["period"], freq="M").asfreq("Q").astype(str)
                                    .str.replace("Q", "-Q"))["target_amount"].sum()
        later = rows[rows["period"] != expected_quarters[0]].set_index("period")["target_amount"]
        np.testing.assert_allclose(by_quarter.loc[later.index], later)


def test_fx_rates_cover_every_day_up_to_the_export_and_stay_in_band(company):
    fx = company.fx_rates
    days = pd.date_range(company.deals["created_at"].min().normalize(), END)
    for currency, rows in fx.groupby("currency"):
        assert list(rows["rate_date"]) == list(days), currency
    assert (fx["quote_currency"] == "USD").all()
    rub, eur = fx[fx["currency"] == "RUB"]["rate"], fx[fx["currency"] == "EUR"]["rate"]
    assert rub.between(1 / 100.5, 1 / 74.5).all() and eur.between(1.049, 1.151).all()
    assert (fx[fx["currency"] == "USD"]["rate"] == 1.0).all()
    assert rub.nunique() > 100  # a walk, not a constant


def test_marketing_spend_every_month_and_source_in_its_currency(company):
    spend = company.marketing_spend
    months = pd.period_range(company.deals["created_at"].min(), END, freq="M").astype(str)
    sources = {s["name"]: p["currency"] for p in company.params["pipelines"] for s in p["lead_sources"]}
    assert set(spend["month"]) == set(months)
    assert len(spend) == len(months) * len(sources)
    assert (spend["currency"] == spend["lead_source"].map(sources)).all()
    assert (spend["amount"] > 0).all()


# ---------------------------------------------------------------------------- the files

def test_write_canonical_round_trips_through_pandas(company, tmp_path):
    small = simulate_company(n_deals=3_000, seed=2, end_date=END)
    paths = write_canonical(small, tmp_path / "inbox", tmp_path / "truth")
    assert [p.name for p in paths] == ["deals.csv", "stage_events.csv", "pipeline_stages.csv", "targets.csv",
                                       "fx_rates.csv", "marketing_spend.csv"]
    assert not list((tmp_path / "inbox").glob("*.partial"))
    for path, attr in zip(paths, ["deals", "stage_events", "pipeline_stages", "targets", "fx_rates",
                                  "marketing_spend"]):
        original = getattr(small, attr)
        text = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        assert list(text.columns) == list(original.columns), path.name
        assert len(text) == len(original), path.name
        back = _parse_like(text, original)
        pd.testing.assert_frame_equal(back, original, check_dtype=False, obj=path.name)

    raw = (tmp_path / "inbox" / "deals.csv").read_text(encoding="utf-8")
    deals = pd.read_csv(paths[0], dtype=str, keep_default_na=False)
    tricky = deals["title"].str.contains(",") & deals["title"].str.contains('"') & deals["title"].str.contains("\n")
    assert tricky.any(), "no title with a comma, a quote and a newline to exercise quoting"
    assert set(deals.loc[deals["outcome"] == "open", "closed_at"]) == {""}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", deals["created_at"].iloc[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", deals["expected_close_date"].iloc[0])
    assert (deals["exported_at"] == "2026-05-20 23:59:59").all()
    assert raw.startswith(",".join(DEALS_COLUMNS) + "\n")

    truth = pd.read_csv(tmp_path / "truth" / "truth.csv", keep_default_na=False)
    assert list(truth["native_id"].astype(str)) == list(small.truth["native_id"])
    np.testing.assert_allclose(truth["p_win_true"], small.truth["p_win_true"])
    assert json.loads((tmp_path / "truth" / "params.json").read_text(encoding="utf-8")) == small.params


def _parse_like(text: pd.DataFrame, original: pd.DataFrame) -> pd.DataFrame:
    """Strings read from a CSV back to the original frame's types ('' -> missing)."""
    out = {}
    for col in original.columns:
        s = text[col]
        if pd.api.types.is_datetime64_any_dtype(original[col]):
            out[col] = pd.to_datetime(s.replace("", None), format="ISO8601")
        elif pd.api.types.is_numeric_dtype(original[col]):
            out[col] = pd.to_numeric(s)
        else:
            out[col] = s.where(s != "", None)
    return pd.DataFrame(out)
