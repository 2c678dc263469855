"""Write a simulated company as the export files of a real CRM, so the demo can start from any
format and tests can round-trip: simulate -> native export -> readers -> the same canonical data
(up to what each format can carry; docs/simulator.md has the table).

`write_native(company, inbox, crm, truth_dir)` writes, for `crm`:

- amocrm: the deals export (CSV with BOM, Russian headers, `Бюджет ` with its trailing space,
  repeated columns, local times `DD.MM.YYYY HH:MM:SS` of the account's zone, `не закрыта`), the
  API v4 pipelines JSON and the API v4 events (`lead_status_changed`, a list of pages of 100).
- bitrix24: REST `crm.category.list` (entityTypeId 2: the pipelines' names), `crm.status.list`,
  `crm.stagehistory.list` and `crm.deal.list` (lists of pages of 50); pipelines are deal
  categories (`0` the default one, `C1:` stage prefixes in category 1), named by the category list.
- hubspot: the pipelines JSON and the UI deals export with `Date entered "<Stage> (<Pipeline>)"`
  columns (local times to the minute; one time per stage: its latest entry).
- salesforce: OpportunityStage.csv, OpportunityHistory.csv and Opportunity.csv of a
  multi-currency org (Data Loader style: every field quoted, 18-character ids, UTC `...Z` times).
- pipedrive: the stages JSON, the deal flow JSON (one `/v1/deals/{id}/flow` response per deal)
  and the deals export (`Deal - …` headers, local times).
- canonical: `write_canonical`.

Each CRM's writer is its own module, voronka/simulator/writers/<crm>.py (as the readers are in
voronka/ingest/readers/), on the helpers of writers/common.py; this module dispatches and writes
what every format shares (the reference tables and the truth).

Besides the CRM files every format gets the tables no CRM exports — targets.csv, fx_rates.csv,
marketing_spend.csv — as canonical CSVs, their pipelines and lead sources named as the CRM names
them (Bitrix24: the pipelines by name, as its category list names them, and source ids;
Salesforce: its one pipeline `default`, targets summed in USD). The truth directory gets truth.csv and params.json (as `write_canonical`),
deal_keys.csv (simulator native_id -> the deal_key the warehouse will hold) and export.json (the
CRM, its time zone, the files).

Time zones: `EXPORT_TIMEZONES[crm]` is the zone the export's local times are written in; pass it
to the readers (`load_files(..., timezone=...)`, the workspace's `timezone` setting);
`voronka demo --crm` writes it into voronka.yaml.

Everything is vectorised (numpy, pandas, Arrow compute): loops run over pipelines, stages and
chunks of rows, never over deals. Each file is written under `*.partial` and renamed; stage lists
first, then histories, then deals, so a sensor never reads deals without their stage list.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from voronka.simulator.canonical_writer import write_canonical, write_csv
from voronka.simulator.company import (
    FX_RATES_COLUMNS,
    MARKETING_SPEND_COLUMNS,
    TARGETS_COLUMNS,
    SimulatedCompany,
)
from voronka.simulator.writers.amocrm import write_amocrm
from voronka.simulator.writers.bitrix24 import bitrix_source_ids, write_bitrix24
from voronka.simulator.writers.common import EXPORT_TIMEZONES, _View, _write_json
from voronka.simulator.writers.hubspot import write_hubspot
from voronka.simulator.writers.pipedrive import write_pipedrive
from voronka.simulator.writers.salesforce import write_salesforce

CRMS = ("canonical", "amocrm", "bitrix24", "hubspot", "salesforce", "pipedrive")

SALESFORCE_PIPELINE = "default"
SALESFORCE_CORPORATE_CURRENCY = "USD"


def export_timezone(crm: str) -> str:
    """The zone of the local times in `crm`'s export: pass it to the readers."""
    _check_crm(crm)
    return EXPORT_TIMEZONES[crm]


def write_native(company: SimulatedCompany, inbox: Path, crm: str, truth_dir: Path) -> list[Path]:
    """Write `company` as `crm` exports it into `inbox`, and its truth into `truth_dir`.

    Returns the inbox files in the order written. Read them with timezone=EXPORT_TIMEZONES[crm]."""
    _check_crm(crm)
    inbox, truth_dir = Path(inbox), Path(truth_dir)
    if crm == "canonical":
        written = write_canonical(company, inbox, truth_dir)
        deals = company.deals
        keys = (deals["source_system"].astype(str) + ":" + deals["native_id"].astype(str)).to_numpy(object)
        _write_export_truth(company, truth_dir, crm, written, keys, with_truth=False)
        return written
    inbox.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    view = _View.of(company)
    written, crm_ids = _WRITERS[crm](view, inbox)
    written += _write_reference_tables(view, inbox, crm)
    keys = (crm + ":" + pd.Series(crm_ids, dtype=object)).to_numpy(object)
    _write_export_truth(company, truth_dir, crm, written, keys, with_truth=True)
    return written


def _check_crm(crm: str) -> None:
    if crm not in CRMS:
        raise ValueError(f"unknown CRM {crm!r} (known: {', '.join(CRMS)})")


_WRITERS = {"amocrm": write_amocrm, "bitrix24": write_bitrix24, "hubspot": write_hubspot,
            "salesforce": write_salesforce, "pipedrive": write_pipedrive}


# ---------------------------------------------------------------------------- tables no CRM exports

def _write_reference_tables(v: _View, inbox: Path, crm: str) -> list[Path]:
    """targets, fx_rates and marketing_spend as canonical CSVs, named as the CRM names things."""
    targets = v.company.targets.copy()
    spend = v.company.marketing_spend.copy()
    if crm == "bitrix24":  # pipelines by name (the category list names them), sources by id
        spend["lead_source"] = spend["lead_source"].map(bitrix_source_ids(v))
    elif crm == "salesforce":
        targets = _salesforce_targets(targets, v.company.fx_rates)
    con = duckdb.connect()
    try:
        out = []
        for name, frame, columns in (("targets.csv", targets, TARGETS_COLUMNS),
                                     ("fx_rates.csv", v.company.fx_rates, FX_RATES_COLUMNS),
                                     ("marketing_spend.csv", spend, MARKETING_SPEND_COLUMNS)):
            write_csv(con, frame, columns, inbox / name)
            out.append(inbox / name)
    finally:
        con.close()
    return out


def _salesforce_targets(targets: pd.DataFrame, fx: pd.DataFrame) -> pd.DataFrame:
    """Salesforce has one pipeline: the pipeline targets summed per period in the corporate
    currency, each converted at its period's first day's rate (the nearest day of the history)."""
    rows = targets[targets["scope_owner"].isna() & targets["scope_segment"].isna()].copy()
    period = rows["period"].astype(str)
    quarter = period.str.extract(r"-Q([1-4])$")[0]
    month = period.str.extract(r"-(\d{2})$")[0].fillna(((quarter.fillna("1").astype(int) - 1) * 3 + 1)
                                                        .astype(str).str.zfill(2))
    start = pd.to_datetime(period.str[:4] + "-" + month + "-01").to_numpy("datetime64[ns]")
    rate = np.ones(len(rows))
    for ccy, group in fx[fx["quote_currency"] == SALESFORCE_CORPORATE_CURRENCY].groupby("currency"):
        group = group.sort_values("rate_date")
        dates = group["rate_date"].to_numpy("datetime64[ns]")
        sel = (rows["currency"] == ccy).to_numpy()
        # the latest rate on or before the period's first day; the first rate for earlier periods
        pos = np.clip(np.searchsorted(dates, start[sel], side="right") - 1, 0, len(dates) - 1)
        rate[sel] = group["rate"].to_numpy(float)[pos]
    rows["target_amount"] = rows["target_amount"].to_numpy(float) * rate
    out = rows.groupby("period", sort=False, as_index=False)["target_amount"].sum()
    out["target_amount"] = out["target_amount"].round(2)
    out["scope_pipeline"] = SALESFORCE_PIPELINE
    out["scope_owner"] = None
    out["scope_segment"] = None
    out["currency"] = SALESFORCE_CORPORATE_CURRENCY
    return out[TARGETS_COLUMNS]


# ---------------------------------------------------------------------------- truth

def _write_export_truth(company: SimulatedCompany, truth_dir: Path, crm: str, written: list[Path],
                        deal_keys: np.ndarray, with_truth: bool) -> None:
    truth_dir.mkdir(parents=True, exist_ok=True)
    if with_truth:  # write_canonical wrote these for the canonical format
        con = duckdb.connect()
        try:
            write_csv(con, company.truth, list(company.truth.columns), truth_dir / "truth.csv")
        finally:
            con.close()
        _write_json(truth_dir / "params.json", company.params)
    keys = pd.DataFrame({"native_id": company.deals["native_id"].astype(str).to_numpy(object),
                         "deal_key": deal_keys})
    con = duckdb.connect()
    try:
        write_csv(con, keys, ["native_id", "deal_key"], truth_dir / "deal_keys.csv")
    finally:
        con.close()
    _write_json(truth_dir / "export.json", {"crm": crm, "timezone": EXPORT_TIMEZONES[crm],
                                            "files": [p.name for p in written]})
