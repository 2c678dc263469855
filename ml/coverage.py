"""Pipeline coverage against targets (DESIGN.md, "Coverage").

coverage = open pipeline expected to close in the period / max(target − booked, 0).
Status: ok at or above the required coverage; warn between the critical and the required
coverage; error below the critical one (default 1.0: even winning every open deal would not
close the gap). A period whose target is already booked has no gap: coverage is undefined
(None) and the status is ok.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from ml.forecast import ALL, assign_period
from ml.periods import current_and_next

# What coverage says when there is nothing to cover (a real export carries no targets): the run
# goes on, the coverage checks pass, and this line tells how to add one.
NO_TARGET = ("no target loaded: coverage needs revenue targets; add a targets CSV to the inbox "
             "(period,scope_pipeline,scope_owner,scope_segment,target_amount,currency; "
             "docs/crm-exports.md#targets-fx-rates-and-marketing-spend) and run `voronka run`")

COVERAGE_COLUMNS = [
    "period", "period_grain", "pipeline", "currency", "target", "booked", "open_pipeline", "gap",
    "coverage", "required_coverage", "shortfall", "status",
]


def coverage_status(coverage: float | None, required: float, critical: float) -> str:
    if coverage is None:
        return "ok"
    if coverage >= required:
        return "ok"
    return "warn" if coverage >= critical else "error"


def pipeline_coverage(open_deals: pd.DataFrame, bookings: pd.DataFrame, targets: pd.DataFrame,
                      as_of: date, currency: str, required: float = 3.0,
                      critical: float = 1.0) -> pd.DataFrame:
    """One row per period (this and next month and quarter) and pipeline that has a target.

    shortfall is the open pipeline still missing to reach the required coverage (money).
    """
    booked = bookings.set_index(["period", "pipeline"])["won_amount_reporting"]
    amounts = open_deals["amount_reporting"].fillna(0).to_numpy(dtype=float)
    rows = []
    for period in current_and_next(as_of):
        in_period = assign_period(open_deals["expected_close_date"], period, as_of)
        for t in targets[targets["period"] == period.label].itertuples():
            mask = in_period if t.pipeline == ALL else \
                in_period & (open_deals["pipeline"] == t.pipeline).to_numpy()
            open_pipeline = float(amounts[mask].sum())
            booked_amount = float(booked.get((period.label, t.pipeline), 0.0))
            target_amount = float(t.target_amount_reporting)
            gap = max(target_amount - booked_amount, 0.0)
            coverage = open_pipeline / gap if gap > 0 else None
            rows.append({
                "period": period.label,
                "period_grain": period.grain,
                "pipeline": t.pipeline,
                "currency": currency,
                "target": target_amount,
                "booked": booked_amount,
                "open_pipeline": open_pipeline,
                "gap": gap,
                "coverage": coverage,
                "required_coverage": required,
                "shortfall": max(required * gap - open_pipeline, 0.0),
                "status": coverage_status(coverage, required, critical),
            })
    return pd.DataFrame(rows, columns=COVERAGE_COLUMNS)
