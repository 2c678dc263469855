"""What the leadership report shows, read from the warehouse into a plain dict (no Dagster).

`report_data(con, ...)` is the only place the report gets numbers: the renderer formats what is
here and computes nothing. Every figure comes from a mart (or, where the marts do not hold it yet,
from the dbt staging/intermediate models and raw tables the marts are built from), and a section
whose inputs are missing says so instead of failing:

- headline: this quarter's forecast (method 'model' when the forecast has it, else the weighted
  pipeline), target, booked, P(hit target); coverage for this and next quarter with its status.
- fan: months of actual bookings and targets, with the forecast's P10/P50/P90 for the months it
  covers.
- funnels: per pipeline, the stages with reached counts, step conversion, time in stage (median
  and p90) when known, deals lost at each stage and the main lost reasons.
- changes: the open pipeline a week before as_of and now, with what moved in between (new,
  advanced, moved back, won, lost, pushed) — from a dbt waterfall mart when there is one, else
  computed from the deals and stage transitions; pushed needs close-date history.
- attention: stalled deals, the biggest deals at risk and deals pushed repeatedly, with owners.
- quality: the backtest's WAPE by method and the models' hold-out metrics from their cards.

The sections live beside this module: forecast_sections (headline, fan), pipeline_sections
(funnels, changes, attention), quality_sections (backtest, model cards); reads holds the small
warehouse reads they share.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from voronka.report.forecast_sections import _reporting_currency, fan, headline
from voronka.report.pipeline_sections import attention, changes, funnels
from voronka.report.quality_sections import quality
from voronka.report.reads import report_as_of

if TYPE_CHECKING:
    from ml.registry import ModelStore

__all__ = ["STATUS_ORDER", "attention", "changes", "fan", "funnels", "headline", "quality", "report_as_of",
           "report_data"]

STATUS_ORDER = {"ok": 0, "warn": 1, "error": 2}


# ---------------------------------------------------------------- everything

def report_data(con: duckdb.DuckDBPyConnection, model_store: ModelStore | Path | str | None = None,
                as_of: datetime | None = None, top_n: int = 8, change_days: int = 7) -> dict:
    """Everything the report shows, as plain Python values (see the module doc). model_store: the
    workspace's ModelStore (only its own model versions), or a path (every version), or None."""
    as_of = as_of or report_as_of(con)
    day = as_of.date()
    data = {
        "as_of": as_of,
        "currency": _reporting_currency(con),
        "headline": headline(con, day),
        "fan": fan(con, day),
        "funnel": funnels(con),
        "changes": changes(con, as_of, change_days),
        "attention": attention(con, top_n),
        "quality": quality(con, model_store),
    }
    data["currency"] = data["currency"] or data["headline"].get("currency") or ""
    data["missing"] = [name for name in ("headline", "fan", "funnel", "changes", "attention")
                       if not data[name].get("available")]
    return data
