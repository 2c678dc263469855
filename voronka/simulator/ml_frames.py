"""The simulated company as the frames the ml/ functions take, for the ML tests and benchmarks.

The warehouse gives ml/ deals with a `deal_key` and `amount_reporting`; here they come straight
from the simulator's frames (source_system, native_id, amount in the deal's currency): the
amount in USD at the company's rate nearest the deal's creation (its own FX table, not the
warehouse's rate-on-or-before rule: close enough for the models, and no dbt run needed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from voronka.simulator.company import SimulatedCompany


def ml_frames(company: SimulatedCompany) -> dict:
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
