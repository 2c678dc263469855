"""A small simulated company with known truth, for the ML tests (and the ML benchmark).

The real demo simulator lives at voronka/simulator/company.py; `company_frames` uses it
when it is importable and falls back to `simulate_small_company` otherwise. Both return frames in
the simulator's shape (source_system, native_id, ...), which `canonical` turns into the inputs
the ML code takes (deal_key, amount_reporting).

Ground truth here: P(won) at creation is a logistic function of the owner's skill, the lead
source's quality, the segment and the amount; won deals pass every open stage, lost deals drop
out at some stage after a longer stay (stalling is a signal), 8% of deals move back once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

PIPELINES = {
    "sales": ["Lead", "Qualified", "Proposal", "Negotiation"],
    "partners": ["Новая", "Переговоры", "Договор"],
}
STAY_DAYS = {"sales": [4.0, 10.0, 18.0, 12.0], "partners": [6.0, 15.0, 20.0]}
SOURCES = {"web": 0.0, "referral": 1.0, "outbound": -0.9, "partner": 0.5, "event": -0.3}
SEGMENTS = {"SMB": (0.4, 4_000.0, 0.7), "Mid": (0.0, 30_000.0, 1.0),
            "Enterprise": (-0.5, 200_000.0, 1.8)}  # effect on logit, median amount, slowness
CURRENCIES = {"USD": 1.0, "EUR": 1.1, "RUB": 0.011}


@dataclass
class SmallCompany:
    deals: pd.DataFrame
    stage_events: pd.DataFrame
    pipeline_stages: pd.DataFrame
    fx_rates: pd.DataFrame
    truth: pd.DataFrame


def simulate_small_company(n_deals: int, seed: int, end_date: date,
                           years: float = 3.0) -> SmallCompany:
    rng = np.random.default_rng(seed)
    end = pd.Timestamp(end_date)
    n = n_deals
    owners = np.array([f"owner_{i:02d}" for i in range(14)])
    skill = rng.normal(0.0, 0.6, len(owners))
    pipe_names = np.array(list(PIPELINES))
    pipeline = rng.choice(pipe_names, n, p=[0.7, 0.3])
    owner_i = rng.integers(0, len(owners), n)
    src_names = np.array(list(SOURCES))
    source = rng.choice(src_names, n, p=[0.35, 0.15, 0.25, 0.15, 0.10])
    seg_names = np.array(list(SEGMENTS))
    segment = rng.choice(seg_names, n, p=[0.5, 0.35, 0.15])
    seg_idx = pd.Index(seg_names).get_indexer(segment)
    seg_eff = np.array([SEGMENTS[s][0] for s in seg_names])[seg_idx]
    seg_amt = np.array([SEGMENTS[s][1] for s in seg_names])[seg_idx]
    slow = np.array([SEGMENTS[s][2] for s in seg_names])[seg_idx]
    amount_usd = seg_amt * np.exp(rng.normal(0, 0.6, n))
    currency = rng.choice(np.array(list(CURRENCIES)), n, p=[0.5, 0.2, 0.3])
    rate = np.array([CURRENCIES[c] for c in CURRENCIES])[pd.Index(list(CURRENCIES)).get_indexer(currency)]
    amount = np.round(amount_usd / rate, 2)

    logit = (-0.5 + skill[owner_i] + np.array([SOURCES[s] for s in src_names])[
        pd.Index(src_names).get_indexer(source)] + seg_eff
        - 0.35 * (np.log(amount_usd) - np.log(seg_amt)) + np.where(pipeline == "partners", 0.3, 0.0))
    p_win = 1.0 / (1.0 + np.exp(-logit))
    will_win = rng.random(n) < p_win

    span = years * 365.0
    created = end - pd.to_timedelta(span * (1 - np.sqrt(rng.random(n))) * 86400, unit="s")
    created = created.to_numpy().astype("datetime64[s]")

    n_stages = np.where(pipeline == "sales", 4, 3)
    # Lost deals drop out at a stage (earlier more likely); won deals pass all open stages.
    drop = np.minimum((rng.exponential(1.2, n)).astype(int), n_stages - 1)
    last = np.where(will_win, n_stages - 1, drop)
    back = (rng.random(n) < 0.08) & (last >= 1)
    back_at = np.where(back, rng.integers(1, np.maximum(last, 1) + 1), -1)

    ev_deal, ev_stage, ev_time = [], [], []
    t = created.astype("datetime64[s]").astype(np.int64).astype(float)
    for k in range(4):
        active = k <= last
        idx = np.flatnonzero(active)
        ev_deal.append(idx)
        ev_stage.append(np.full(len(idx), k))
        ev_time.append(t[idx].copy())
        means = np.array([STAY_DAYS[p][min(k, len(STAY_DAYS[p]) - 1)] for p in pipeline[idx]])
        means = means * slow[idx] * np.where((k == last[idx]) & ~will_win[idx], 2.0, 1.0)
        stay = rng.gamma(1.5, means / 1.5) * 86400
        b = idx[back_at[idx] == k]
        if len(b):  # move back one stage for a while, then return
            tb = t[b] + stay[back_at[idx] == k] * 0.5
            ev_deal.append(b)
            ev_stage.append(np.full(len(b), k - 1))
            ev_time.append(tb)
            tb2 = tb + rng.gamma(1.5, 4.0 / 1.5, len(b)) * 86400
            ev_deal.append(b)
            ev_stage.append(np.full(len(b), k))
            ev_time.append(tb2)
            stay[back_at[idx] == k] += (tb2 - tb)
        t[idx] = t[idx] + stay
    close = t
    ev_deal.append(np.arange(n))
    ev_stage.append(np.where(will_win, 100, 101))
    ev_time.append(close)

    deal = np.concatenate(ev_deal)
    stage_i = np.concatenate(ev_stage)
    etime = np.concatenate(ev_time).astype(np.int64).astype("datetime64[s]").astype("datetime64[ns]")
    close_ts = close.astype(np.int64).astype("datetime64[s]").astype("datetime64[ns]")
    is_closed = close_ts <= end.to_datetime64()
    keep = etime <= end.to_datetime64()
    deal, stage_i, etime = deal[keep], stage_i[keep], etime[keep]

    def stage_name(p, k):
        return "Won" if k == 100 else "Lost" if k == 101 else PIPELINES[p][k]

    names = np.array([stage_name(p, k) for p, k in zip(pipeline[deal], stage_i)])
    native = np.array([f"D{i:07d}" for i in range(n)])
    events = pd.DataFrame({"source_system": "sim", "native_id": native[deal],
                           "pipeline": pipeline[deal], "stage": names, "entered_at": etime})
    events = events.sort_values(["native_id", "entered_at"], kind="stable").reset_index(drop=True)
    current = events.groupby("native_id")["stage"].last().reindex(native).to_numpy()

    total_mean = np.array([sum(STAY_DAYS[p]) for p in pipeline]) * slow
    expected_close = (created.astype("datetime64[ns]")
                      + (total_mean * np.exp(rng.normal(0, 0.3, n)) * 86400e9).astype("timedelta64[ns]"))
    outcome = np.where(is_closed, np.where(will_win, "won", "lost"), "open")
    deals = pd.DataFrame({
        "source_system": "sim", "native_id": native, "pipeline": pipeline,
        "title": native, "owner": owners[owner_i], "lead_source": source, "segment": segment,
        "region": rng.choice(np.array(["EU", "US", "RU"]), n), "product": rng.choice(
            np.array(["core", "pro"]), n), "amount": amount, "currency": currency,
        "created_at": created.astype("datetime64[ns]"),
        "expected_close_date": pd.to_datetime(expected_close).normalize(),
        "closed_at": np.where(is_closed, close_ts, np.datetime64("NaT")),
        "outcome": outcome, "current_stage": current,
    })
    rows = []
    for p, stages in PIPELINES.items():
        for k, s in enumerate(stages):
            rows.append((p, s, k + 1, "open", round((k + 1) / (len(stages) + 1), 2)))
        rows += [(p, "Won", len(stages) + 1, "won", 1.0), (p, "Lost", len(stages) + 2, "lost", 0.0)]
    stages = pd.DataFrame(rows, columns=["pipeline", "stage", "stage_order", "kind",
                                         "crm_probability"])
    months = pd.date_range(end - pd.Timedelta(days=int(span) + 40), end, freq="MS")
    fx = pd.DataFrame([(m.date(), c, "USD", r * (1 + 0.03 * np.sin(i / 5)))
                       for i, m in enumerate(months) for c, r in CURRENCIES.items() if c != "USD"],
                      columns=["rate_date", "currency", "quote_currency", "rate"])
    truth = pd.DataFrame({"source_system": "sim", "native_id": native, "p_win_true": p_win,
                          "will_win": will_win})
    return SmallCompany(deals, events, stages, fx, truth)


def company_frames(n_deals: int, seed: int, end_date: date, years: float = 3.0,
                   prefer_simulator: bool = True):
    """The demo simulator's company when it exists, else the small one above."""
    if prefer_simulator:
        try:
            from voronka.simulator.company import simulate_company
        except ImportError:
            pass
        else:
            return simulate_company(n_deals=n_deals, seed=seed, end_date=end_date, years=years)
    return simulate_small_company(n_deals, seed, end_date, years)


def canonical(company) -> dict:
    """deals (with deal_key, amount_reporting in USD at the creation-month rate), stage_events
    (with deal_key), pipeline_stages and truth (with deal_key)."""
    deals = company.deals.copy()
    deals["deal_key"] = deals["source_system"].astype(str) + ":" + deals["native_id"].astype(str)
    events = company.stage_events.copy()
    events["deal_key"] = events["source_system"].astype(str) + ":" + events["native_id"].astype(str)
    fx = company.fx_rates.copy()
    fx = fx[fx["quote_currency"] == "USD"]
    fx["rate_date"] = pd.to_datetime(fx["rate_date"]).astype("datetime64[ns]")
    fx = fx.sort_values("rate_date")
    left = pd.DataFrame({"i": np.arange(len(deals)), "currency": deals["currency"].astype(str),
                         "at": pd.to_datetime(deals["created_at"]).astype("datetime64[ns]")})
    left = left.sort_values("at")
    got = pd.merge_asof(left, fx[["rate_date", "currency", "rate"]], left_on="at",
                        right_on="rate_date", by="currency", direction="nearest")
    rate = got.set_index("i")["rate"].reindex(np.arange(len(deals))).to_numpy()
    rate = np.where(deals["currency"].astype(str).to_numpy() == "USD", 1.0, rate)
    deals["amount_reporting"] = pd.to_numeric(deals["amount"], errors="coerce").to_numpy(float) * rate
    truth = company.truth.copy()
    truth["deal_key"] = truth["source_system"].astype(str) + ":" + truth["native_id"].astype(str)
    return {"deals": deals, "stage_events": events, "pipeline_stages": company.pipeline_stages,
            "truth": truth}
