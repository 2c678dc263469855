"""The forecast sections of the leadership report: the headline and the fan chart (no Dagster).

- headline: this quarter's forecast (method 'model' when the forecast has it, else the weighted
  pipeline), target, booked, P(hit target); coverage for this and next quarter with its status.
- fan: months of actual bookings and targets, with the forecast's P10/P50/P90 for the months it
  covers.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from ml.periods import month_of, quarter_of
from voronka.report.reads import (
    ALL,
    _columns,
    _company_wide,
    _df,
    _exists,
    _float,
    _missing,
    _records,
)

MONTHS_OF_HISTORY = 12


# ---------------------------------------------------------------- headline

def _forecast(con) -> tuple[pd.DataFrame, str | None]:
    """The forecast rows of the preferred method ('model' when present) and that method."""
    if not _exists(con, "main.revenue_forecast"):
        return pd.DataFrame(), None
    forecast = _company_wide(_df(con, "select * from main.revenue_forecast"))
    if forecast.empty:
        return forecast, None
    methods = forecast["method"].dropna().unique().tolist() if "method" in forecast else []
    method = "model" if "model" in methods else ("weighted_pipeline" if "weighted_pipeline" in methods
                                                 else (methods[0] if methods else None))
    if method is not None:
        chosen = forecast[forecast["method"] == method]
    else:
        chosen = forecast
    return chosen.reset_index(drop=True), method


FORECAST_FIELDS = ["period", "period_grain", "pipeline", "currency", "target", "booked", "expected", "p10",
                   "p50", "p90", "prob_hit_target", "open_deals", "from_open_pipeline", "from_new_pipeline",
                   "method"]
COVERAGE_FIELDS = ["period", "period_grain", "pipeline", "target", "booked", "open_pipeline", "gap",
                   "coverage", "required_coverage", "shortfall", "status"]


def headline(con, as_of: date) -> dict:
    this_q, next_q = quarter_of(as_of).label, quarter_of(as_of, 1).label
    forecast, method = _forecast(con)
    out: dict = {"period": this_q, "next_period": next_q, "method": method}
    if forecast.empty:
        out.update(_missing("main.revenue_forecast is not built yet: run `voronka run`"))
        out["coverage"], out["pipelines"] = [], []
    else:
        rows = forecast[(forecast["period"] == this_q) & (forecast["pipeline"] == ALL)]
        if rows.empty:
            out.update(_missing(f"the forecast has no row for {this_q}"))
        else:
            out.update({"available": True, "note": None,
                        **{k: v for k, v in _records(rows, FORECAST_FIELDS)[0].items()
                           if k not in ("pipeline", "period_grain", "period")}})
            if method == "model":
                full = _company_wide(_df(con, "select * from main.revenue_forecast where period = ? and "
                                              "pipeline = ? and method = 'weighted_pipeline'", [this_q, ALL]))
                out["baseline_p50"] = _float(full["p50"].iloc[0]) if len(full) else None
        per_pipeline = forecast[(forecast["period"] == this_q) & (forecast["pipeline"] != ALL)]
        out["pipelines"] = _records(per_pipeline.sort_values("pipeline"), FORECAST_FIELDS)
    coverage = pd.DataFrame()
    if _exists(con, "main.pipeline_coverage"):
        coverage = _company_wide(_df(con, "select * from main.pipeline_coverage"))
    out["coverage"] = []
    for label in (this_q, next_q):
        row = coverage[(coverage["period"] == label) & (coverage["pipeline"] == ALL)] if len(coverage) else coverage
        if len(row):
            out["coverage"].append(_records(row, COVERAGE_FIELDS)[0])
        else:
            out["coverage"].append({"period": label, "pipeline": ALL, "status": None, "coverage": None,
                                    "missing": True})
    by_pipeline = {}
    if len(coverage):
        for r in _records(coverage[(coverage["period"] == this_q) & (coverage["pipeline"] != ALL)],
                          COVERAGE_FIELDS):
            by_pipeline[r["pipeline"]] = r
    for p in out.get("pipelines", []):
        c = by_pipeline.get(p["pipeline"], {})
        p["coverage"], p["coverage_status"] = c.get("coverage"), c.get("status")
    out["currency"] = (out.get("currency") or _reporting_currency(con))
    return out


def _reporting_currency(con) -> str | None:
    for table, column in (("main.revenue_forecast", "currency"), ("main.mart_pipeline_snapshot", "reporting_currency"),
                          ("main.mart_bookings", "reporting_currency")):
        if _exists(con, table) and column in _columns(con, table):
            value = con.execute(f"select max({column}) from {table}").fetchone()[0]
            if value:
                return str(value)
    return None


# ---------------------------------------------------------------- fan chart

def fan(con, as_of: date, months_back: int = MONTHS_OF_HISTORY) -> dict:
    """Monthly actual bookings and targets (company-wide) with the forecast's fan."""
    if not _exists(con, "main.mart_bookings"):
        return _missing("main.mart_bookings is not built yet")
    first = month_of(as_of, -(months_back - 1)).label
    bookings = _df(con, "select period, won_amount_reporting as actual from main.mart_bookings "
                        "where period_grain = 'month' and pipeline = ? and period >= ?", [ALL, first])
    forecast, method = _forecast(con)
    if len(forecast):
        forecast = forecast[(forecast["period_grain"] == "month") & (forecast["pipeline"] == ALL)]
    last = max([month_of(as_of).label] + forecast.get("period", pd.Series(dtype=str)).tolist())
    targets = pd.DataFrame(columns=["period", "target"])
    if _exists(con, "main.mart_targets"):
        targets = _df(con, "select period, target_amount_reporting as target from main.mart_targets "
                           "where period_grain = 'month' and pipeline = ? and period between ? and ?",
                      [ALL, first, last])
    periods, label, i = [], first, 0
    while label <= last:
        periods.append(label)
        i += 1
        label = month_of(as_of, -(months_back - 1) + i).label
    actual = bookings.set_index("period")["actual"]
    target = targets.set_index("period")["target"] if len(targets) else pd.Series(dtype=float)
    fc = forecast.set_index("period") if len(forecast) else pd.DataFrame()
    current = month_of(as_of).label
    points = []
    for p in periods:
        row = fc.loc[p] if len(fc) and p in fc.index else None
        points.append({
            "period": p,
            "is_current": p == current,
            "is_future": p > current,
            "actual": _float(actual.get(p)) if p <= current else None,
            "target": _float(target.get(p)),
            "p10": None if row is None else _float(row["p10"]),
            "p50": None if row is None else _float(row["p50"]),
            "p90": None if row is None else _float(row["p90"]),
        })
    return {"available": True, "note": None, "method": method, "points": points,
            "has_forecast": any(pt["p50"] is not None for pt in points)}
