"""A messy company: the demo company exported as a real Bitrix24 portal exports it, with the quirks
real exports have (issue 13), each switchable and recorded in the truth.

Every quirk is one name in QUIRKS. Which deals get which quirk is drawn once, the same whichever
quirks are on (each from its own seeded stream, among candidates that do not depend on the other
switches), so switching one quirk changes exactly what it says and nothing else. Bitrix24 is the
export where all of them occur: CLOSEDATE is a date field, custom final stages come without a
STAGE_SEMANTIC_ID, stage history is missing for older deals, PROBABILITY is a per-deal field,
deleted deals vanish from the next `crm.deal.list`.

    messy = simulate_messy(seed=42, end_date=date(2026, 5, 20))      # every quirk
    files = write_messy(messy, workspace / "inbox", workspace / "truth")   # messy_export.py

The truth folder gets, besides what `write_native` writes (truth.csv of every deal, deleted ones
included; deal_keys.csv; params.json; export.json), `messy_deals.csv` (one row per simulated deal:
its quirks, its true values and what the export says) and `messy.json` (the quirks that are on,
how many deals each touched, the files). docs/simulator.md ("The messy company") has the table.

A plain library like the rest of the simulator: no Dagster, no clock; the writer (messy_export.py) only rewrites
the JSON files `write_native` wrote (voronka/simulator/native_writers.py is not changed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from voronka.simulator.company import (
    DEFAULT_END_DATE,
    SimulatedCompany,
    export_as_of,
    simulate_company,
)
from voronka.simulator.native_writers import EXPORT_TIMEZONES

MESSY_CRM = "bitrix24"
# name -> what it does (the CLI and the docs list these)
QUIRKS: dict[str, str] = {
    "date_only_close": "CLOSEDATE of every closed deal is a day (local midnight); a few lost leads "
                       "close on the day they were created",
    "close_before_created": "a few closed deals carry a close date 1-30 days before their creation",
    "unknown_closed_stage": "closed deals in custom stages with no STAGE_SEMANTIC_ID: 'Выдано' (truly "
                            "won) and 'Отложенные' (truly lost)",
    "created_missing": "a few open deals have no DATE_CREATE (nor BEGINDATE)",
    "lost_without_history": "a share of lost deals (closed before the earlier export) have no stage "
                            "history",
    "amount_gaps": "amount 0 on a share of lost deals, empty on a share of open deals",
    "no_targets": "no targets file",
    "fx_missing": "a few B2B deals in KZT, a currency fx_rates has no rate for",
    "crm_probability": "PROBABILITY on every deal: the stage's, or the manager's own estimate",
    "small_young": "a small, young org: 300 deals over 4 months (unless --deals says otherwise)",
    "deleted_deals": "an export from 14 days earlier carries deals the final export no longer has",
}
ALL_QUIRKS = tuple(QUIRKS)

SMALL_YOUNG_DEALS = 300
SMALL_YOUNG_YEARS = 4 / 12
DEFAULT_DEALS = 5000
DEFAULT_YEARS = 3.0
EARLIER_EXPORT_DAYS = 14  # the earlier export is cut this many days before end_date
UNKNOWN_WON_STAGE = "Выдано"  # a default of stage_outcomes settles it: won
UNKNOWN_LOST_STAGE = "Отложенные"  # no default settles it: the outcome stays unknown
MISSING_FX_CURRENCY = "KZT"
KZT_PER_RUB = 5.6
PAGE_SIZE = 50  # Bitrix24 REST pages
LOCAL_OFFSET = pd.Timedelta(hours=5)  # the export's zone, Asia/Yekaterinburg: +05:00 all year since 2014

# (share of the candidates, minimum count) per deal-level assignment
_SHARES = {
    "same_day": (0.10, 3),
    "close_before": (0.015, 3),
    "unknown_won": (0.08, 3),
    "unknown_lost": (0.08, 3),
    "no_history": (0.20, 3),
    "created_missing": (0.05, 3),
    "amount_zero": (0.40, 3),
    "amount_empty": (0.25, 3),
    "kzt": (0.03, 3),
    "deleted": (0.02, 3),
    "probability_override": (1 / 3, 0),
}
_TIME_BLOCK = {"start": 1700000000.1, "finish": 1700000000.2, "duration": 0.1, "processing": 0.05}


def parse_quirks(text: str | None) -> tuple[str, ...]:
    """'all' (or None), 'none', 'a,b,c' (just those) or 'all,-a,-b' / '-a,-b' (all but those)."""
    if text is None or text.strip() in ("", "all"):
        return ALL_QUIRKS
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if tokens == ["none"]:
        return ()
    chosen: set[str] = set()
    if tokens[0] == "all" or all(t.startswith("-") for t in tokens):
        chosen = set(ALL_QUIRKS)
    for token in tokens:
        if token in ("all", "none"):
            continue
        name = token.lstrip("-").replace("-", "_")
        if name not in QUIRKS:
            raise ValueError(f"unknown quirk {name!r} (known: {', '.join(ALL_QUIRKS)}; or all, none, -<quirk>)")
        if token.startswith("-"):
            chosen.discard(name)
        else:
            chosen.add(name)
    return tuple(q for q in ALL_QUIRKS if q in chosen)


@dataclass
class MessyCompany:
    """company: the true company (every deal); final: what the final export is written from (amounts,
    currencies and close dates as exported, deleted deals dropped); earlier: the export EARLIER_EXPORT_DAYS
    before the end as it stood then (None without deleted_deals); deals: one row per deal of company
    with its quirks and its true and exported values; quirks: the quirks that are on."""

    company: SimulatedCompany
    final: SimulatedCompany
    earlier: SimulatedCompany | None
    deals: pd.DataFrame
    quirks: tuple[str, ...]
    earlier_cut: datetime
    params: dict
    plan: pd.DataFrame  # per deal (index native_id): the quirks drawn for it, whether on or not


def simulate_messy(n_deals: int | None = None, seed: int = 42, end_date: date = DEFAULT_END_DATE,
                   quirks=ALL_QUIRKS, years: float | None = None) -> MessyCompany:
    """The demo company with the given quirks. n_deals/years default to 300 over 4 months with
    small_young, else 5000 over 3 years."""
    unknown = [q for q in quirks if q not in QUIRKS]
    if unknown:
        raise ValueError(f"unknown quirk {unknown[0]!r} (known: {', '.join(ALL_QUIRKS)})")
    quirks = tuple(q for q in ALL_QUIRKS if q in set(quirks))
    on = set(quirks)
    if isinstance(end_date, datetime):
        end_date = end_date.date()
    small = "small_young" in on
    n = n_deals if n_deals is not None else (SMALL_YOUNG_DEALS if small else DEFAULT_DEALS)
    years = years if years is not None else (SMALL_YOUNG_YEARS if small else DEFAULT_YEARS)
    company = simulate_company(n_deals=n, seed=seed, end_date=end_date, years=years)
    cut = pd.Timestamp(end_date - timedelta(days=EARLIER_EXPORT_DAYS)) + pd.Timedelta(seconds=86_399)
    plan = _plan(company, seed, cut)

    # the true company: lost leads closed on their creation day are a true behaviour of this company
    if "date_only_close" in on:
        company = _close_on_creation_day(company, plan)
    exported = _exported_values(company, plan, on)
    final = _replace_deals(company, exported)
    earlier = export_as_of(final, cut) if "deleted_deals" in on else None
    if "deleted_deals" in on:
        final = _drop(final, set(plan.index[plan["deleted"]]))

    deals = _truth(company, plan, exported, on, earlier)
    params = {"crm": MESSY_CRM, "timezone": EXPORT_TIMEZONES[MESSY_CRM], "quirks": list(quirks),
              "n_deals": int(n), "years": years, "seed": int(seed), "end_date": end_date.isoformat(),
              "earlier_export_cut": str(cut) if earlier is not None else None,
              "counts": _counts(deals, on)}
    return MessyCompany(company=company, final=final, earlier=earlier, deals=deals, quirks=quirks,
                        earlier_cut=cut.to_pydatetime(), params=params, plan=plan)


# ---------------------------------------------------------------------------- which deal gets what

def _pick(seed: int, stream: int, candidates: np.ndarray, share: float, minimum: int) -> np.ndarray:
    """A boolean mask: round(share x candidates) of them (at least `minimum`, at most all)."""
    idx = np.flatnonzero(candidates)
    k = min(len(idx), max(minimum, round(share * len(idx))))
    chosen = np.zeros(len(candidates), bool)
    if k:
        chosen[np.random.default_rng([seed, 9000 + stream]).choice(idx, size=k, replace=False)] = True
    return chosen


def _plan(company: SimulatedCompany, seed: int, cut: pd.Timestamp) -> pd.DataFrame:
    """Per deal (index native_id): which quirk touches it. Drawn from the true company only, so the
    plan is the same whatever quirks are on."""
    d = company.deals
    t = company.truth.set_index("native_id").loc[d["native_id"]]
    ev = company.stage_events
    n_events = ev.groupby("native_id").size().reindex(d["native_id"]).fillna(0).to_numpy()
    outcome = d["outcome"].to_numpy(object)
    won, lost, open_ = outcome == "won", outcome == "lost", outcome == "open"
    created = d["created_at"]
    reopened = t["is_reopened"].to_numpy(bool)
    start = created.min()
    local = created + LOCAL_OFFSET
    left_in_day = (local.dt.normalize() + pd.Timedelta(days=1) - local).dt.total_seconds().to_numpy()

    def pick(stream: int, name: str, candidates) -> np.ndarray:
        share, minimum = _SHARES[name]
        return _pick(seed, stream, np.asarray(candidates, bool), share, minimum)

    deleted = pick(1, "deleted", (created <= cut - pd.Timedelta(days=1)).to_numpy() & ~reopened)
    keep = ~deleted & ~reopened
    same_day = pick(2, "same_day", keep & lost & t["is_unanswered"].to_numpy(bool) & (n_events == 2)
                    & (left_in_day >= 2 * 3600))
    closed_by_cut = (d["closed_at"] <= cut).to_numpy()
    close_before = pick(3, "close_before", keep & (won | lost) & ~same_day
                        & (created >= start + pd.Timedelta(days=35)).to_numpy())
    unknown_won = pick(4, "unknown_won", keep & won)
    unknown_lost = pick(5, "unknown_lost", keep & lost & ~same_day)
    no_history = pick(6, "no_history", keep & lost & ~unknown_lost & ~same_day & closed_by_cut)
    created_missing = pick(7, "created_missing", ~deleted & open_)
    amount_zero = pick(8, "amount_zero", ~deleted & lost)
    amount_empty = pick(9, "amount_empty", ~deleted & open_)
    b2b = (d["currency"] == "RUB").to_numpy()  # the B2B pipeline sells in RUB only
    kzt = pick(10, "kzt", ~deleted & b2b)
    if not (kzt & won).any() and (~deleted & b2b & won).any():  # a booked KZT deal, so bookings miss a rate
        kzt[np.flatnonzero(~deleted & b2b & won)[0]] = True
    override = pick(11, "probability_override", np.ones(len(d), bool))
    days_before = np.random.default_rng([seed, 9012]).integers(1, 31, len(d))
    same_day_secs = np.random.default_rng([seed, 9013]).uniform(300, np.maximum(left_in_day - 3600, 301))
    return pd.DataFrame({
        "deleted": deleted, "same_day_close": same_day, "close_before": close_before,
        "close_before_days": days_before, "same_day_seconds": np.floor(same_day_secs),
        "unknown_won": unknown_won, "unknown_lost": unknown_lost, "no_history": no_history,
        "created_missing": created_missing, "amount_zero": amount_zero, "amount_empty": amount_empty,
        "kzt": kzt, "probability_override": override,
    }, index=pd.Index(d["native_id"].to_numpy(object), name="native_id"))


# ---------------------------------------------------------------------------- frames

def _close_on_creation_day(company: SimulatedCompany, plan: pd.DataFrame) -> SimulatedCompany:
    """Lost leads the plan picks are closed minutes to hours after creation, the same local day."""
    seconds = plan["same_day_seconds"].where(plan["same_day_close"])
    deals = company.deals.copy()
    add = pd.to_timedelta(deals["native_id"].map(seconds).to_numpy(float), unit="s")
    sel = ~np.isnan(deals["native_id"].map(seconds).to_numpy(float))
    new_close = pd.Series(deals["created_at"].to_numpy() + add.to_numpy(), index=deals.index)
    deals.loc[sel, "closed_at"] = new_close[sel]
    close_by_id = pd.Series(deals.loc[sel, "closed_at"].to_numpy(), index=deals.loc[sel, "native_id"].to_numpy())
    events = company.stage_events.copy()
    terminal = ~events["native_id"].duplicated(keep="last") & events["native_id"].isin(close_by_id.index)
    events.loc[terminal, "entered_at"] = events.loc[terminal, "native_id"].map(close_by_id).to_numpy()
    truth = company.truth.copy()
    in_truth = truth["native_id"].isin(close_by_id.index)
    truth.loc[in_truth, "closes_at_untruncated"] = truth.loc[in_truth, "native_id"].map(close_by_id).to_numpy()
    return dataclasses.replace(company, deals=deals, stage_events=events, truth=truth)


def _exported_values(company: SimulatedCompany, plan: pd.DataFrame, on: set) -> pd.DataFrame:
    """The deals frame as the export states it (what a frame can say: close dates, amounts,
    currencies); the rest (dates only, empty fields, stage names) is written into the files."""
    deals = company.deals.copy()
    p = plan.reindex(deals["native_id"]).reset_index(drop=True)
    p.index = deals.index
    if "close_before_created" in on:
        sel = p["close_before"] & deals["closed_at"].notna()
        deals.loc[sel, "closed_at"] = (deals.loc[sel, "created_at"]
                                       - pd.to_timedelta(p.loc[sel, "close_before_days"], unit="D"))
    if "amount_gaps" in on:
        deals.loc[p["amount_zero"], "amount"] = 0.0
    if "fx_missing" in on:
        sel = p["kzt"]
        deals.loc[sel, "amount"] = np.round(deals.loc[sel, "amount"].to_numpy(float) * KZT_PER_RUB, -3)
        deals.loc[sel, "currency"] = MISSING_FX_CURRENCY
    return deals


def _replace_deals(company: SimulatedCompany, deals: pd.DataFrame) -> SimulatedCompany:
    return dataclasses.replace(company, deals=deals)


def _drop(company: SimulatedCompany, ids: set) -> SimulatedCompany:
    return dataclasses.replace(
        company,
        deals=company.deals[~company.deals["native_id"].isin(ids)].reset_index(drop=True),
        stage_events=company.stage_events[~company.stage_events["native_id"].isin(ids)].reset_index(drop=True),
        truth=company.truth[~company.truth["native_id"].isin(ids)].reset_index(drop=True))


def crm_probabilities(deals: pd.DataFrame, company: SimulatedCompany, plan: pd.DataFrame, on: set) -> pd.Series:
    """PROBABILITY (percent) per deal of an export, by native_id: the stage's default, or for a third
    of the deals the manager's own estimate (the stage's log-odds moved by what the manager knows of
    the deal); 100 won, 0 lost, none in a stage with no semantic."""
    ids = deals["native_id"].to_numpy(object)
    if "crm_probability" not in on:
        return pd.Series(np.nan, index=ids)
    stages = company.pipeline_stages.set_index(["pipeline", "stage"])["crm_probability"]
    p_stage = stages.reindex(pd.MultiIndex.from_arrays([deals["pipeline"], deals["current_stage"]])).to_numpy(float)
    t = company.truth.set_index("native_id").reindex(ids)
    known = (t["owner_effect"] + t["source_effect"] + t["segment_effect"] + t["noise_logit"]).to_numpy(float)
    clipped = np.clip(p_stage, 0.01, 0.99)
    estimate = 1 / (1 + np.exp(-(np.log(clipped / (1 - clipped)) + known)))
    estimate = np.clip(5 * np.round(20 * estimate), 5, 95)
    outcome = deals["outcome"].to_numpy(object)
    p = plan.reindex(ids)
    prob = np.where(outcome == "open", np.where(p["probability_override"].to_numpy(bool), estimate,
                                                np.round(100 * p_stage)),
                    np.where(outcome == "won", 100.0, 0.0))
    if "unknown_closed_stage" in on:
        prob[(outcome != "open") & (p["unknown_won"] | p["unknown_lost"]).to_numpy(bool)] = np.nan
    return pd.Series(prob, index=ids)


# ---------------------------------------------------------------------------- truth

def _truth(company: SimulatedCompany, plan: pd.DataFrame, exported: pd.DataFrame, on: set,
           earlier: SimulatedCompany | None) -> pd.DataFrame:
    """One row per deal of the true company: its quirks, its true values and what its last export says."""
    d = company.deals.reset_index(drop=True)
    ids = d["native_id"].to_numpy(object)
    p = plan.reindex(ids)
    x = exported.set_index("native_id").reindex(ids)
    deleted = p["deleted"].to_numpy(bool) & ("deleted_deals" in on)
    in_final = ~deleted
    in_earlier = (np.isin(ids, earlier.deals["native_id"].to_numpy(object)) if earlier is not None
                  else np.zeros(len(ids), bool))
    # the export that carries the deal last: the final one, or the earlier one for a deleted deal
    last = x.copy()
    if earlier is not None:
        e = earlier.deals.set_index("native_id")
        rows = ids[deleted]
        for col in ("current_stage", "outcome", "closed_at", "lost_reason", "exported_at"):
            last.loc[rows, col] = e.loc[rows, col].to_numpy()
    last_deals = last.reset_index()
    outcome_export = last["outcome"].to_numpy(object)
    closed = outcome_export != "open"
    unknown_on = "unknown_closed_stage" in on
    unknown_won = unknown_on & closed & p["unknown_won"].to_numpy(bool)
    unknown_lost = unknown_on & closed & p["unknown_lost"].to_numpy(bool)
    expected = np.where(unknown_lost, "unknown", outcome_export)
    unknown_stage = np.where(unknown_won, UNKNOWN_WON_STAGE, np.where(unknown_lost, UNKNOWN_LOST_STAGE, None))
    close_exported = pd.to_datetime(last["closed_at"])
    close_local_day = (close_exported + LOCAL_OFFSET).dt.normalize()
    created_local_day = (pd.to_datetime(d["created_at"]) + LOCAL_OFFSET).dt.normalize()
    same_day = closed & (close_local_day.to_numpy() == created_local_day.to_numpy())
    date_only = ("date_only_close" in on) & closed
    amount_empty = ("amount_gaps" in on) & p["amount_empty"].to_numpy(bool) & (outcome_export == "open")
    amount_exported = x["amount"].to_numpy(float).copy()
    amount_exported[amount_empty] = np.nan
    probability = crm_probabilities(last_deals, company, plan, on).to_numpy(float)
    return pd.DataFrame({
        "native_id": ids,
        "deal_key": MESSY_CRM + ":" + pd.Series(ids, dtype=object),
        "pipeline": d["pipeline"].to_numpy(object),
        "outcome_true": d["outcome"].to_numpy(object),
        "outcome_expected": expected,
        "current_stage_exported": np.where(unknown_stage != None, unknown_stage,
                                           last["current_stage"].to_numpy(object)),
        "unknown_stage": unknown_stage,
        "is_deleted_in_crm": deleted,  # gone from the final export (raw.deals: missing_since_export)
        "in_final_export": in_final,
        "in_earlier_export": in_earlier,
        "created_at": d["created_at"].to_numpy(),
        "closed_at": d["closed_at"].to_numpy(),
        "closed_at_exported": close_exported.to_numpy(),
        "close_date_local": close_local_day.where(closed).to_numpy(),
        "is_close_date_only": date_only,
        # the exported close is on the local creation day (the quirk adds a few; some deals close fast)
        "is_closed_same_day": same_day,
        "is_closed_before_created": (("close_before_created" in on) & closed
                                     & p["close_before"].to_numpy(bool)),
        "is_created_at_missing": ("created_missing" in on) & p["created_missing"].to_numpy(bool),
        "has_no_history": ("lost_without_history" in on) & p["no_history"].to_numpy(bool),
        "amount_true": d["amount"].to_numpy(float),
        "currency_true": d["currency"].to_numpy(object),
        "amount_exported": amount_exported,
        "currency_exported": x["currency"].to_numpy(object),
        "is_amount_zeroed": ("amount_gaps" in on) & p["amount_zero"].to_numpy(bool),
        "is_amount_empty": amount_empty,
        "is_fx_missing": ("fx_missing" in on) & p["kzt"].to_numpy(bool),
        "crm_probability": probability / 100,
    })


_COUNTED = {
    "date_only_close": "is_close_date_only", "close_before_created": "is_closed_before_created",
    "created_missing": "is_created_at_missing", "lost_without_history": "has_no_history",
    "fx_missing": "is_fx_missing", "deleted_deals": "is_deleted_in_crm",
}


def _counts(deals: pd.DataFrame, on: set) -> dict:
    counts = {q: int(deals[col].sum()) for q, col in _COUNTED.items() if q in on}
    if "date_only_close" in on:
        counts["closed_same_day"] = int((deals["is_closed_same_day"] & deals["is_close_date_only"]).sum())
    if "unknown_closed_stage" in on:
        counts[UNKNOWN_WON_STAGE] = int((deals["unknown_stage"] == UNKNOWN_WON_STAGE).sum())
        counts[UNKNOWN_LOST_STAGE] = int((deals["unknown_stage"] == UNKNOWN_LOST_STAGE).sum())
    if "amount_gaps" in on:
        counts["amount_zero"] = int(deals["is_amount_zeroed"].sum())
        counts["amount_empty"] = int(deals["is_amount_empty"].sum())
    if "crm_probability" in on:
        counts["crm_probability"] = int(deals["crm_probability"].notna().sum())
    return counts
