"""Prepare the public "CRM Sales Opportunities" dataset (sales_pipeline.csv, products.csv,
accounts.csv, sales_teams.csv) for Voronka, optionally as it was known on a past date.

No network: point it at the folder you downloaded (docs/real-data.md says where from).

    python scripts/real_data/crm_opportunities.py SRC_DIR OUT_DIR [--as-of 2017-08-01]

Writes OUT_DIR/deals.csv for the mapping docs/examples/real_data/crm_opportunities_prepared.yaml
and OUT_DIR/stage_events.csv for crm_opportunities_events.yaml.
What it changes, and why (the raw file maps as it is with crm_sales_opportunities.yaml; this
variant is what the backtest at past origins uses):
- amount = the product's list price (products.csv sales_price) for every deal. The export only
  has close_value, which is 0 on lost deals and empty on open ones: a final-state field that
  tells the outcome (leakage) and leaves the open pipeline worth nothing. List price is within
  1% of close_value on average for won deals (ratio 0.996, sd 0.10).
- region = sales_teams.regional_office, segment = accounts.sector (joined by agent / account).
- Prospecting deals have no date at all (engage_date is when Engaging began): kept in the full
  file with an empty created_at; left out of an --as-of cut (nobody can tell if they existed).
- stage_events.csv: the history the file implies (engage_date is when Engaging began, the
  data dictionary says): Engaging entered at engage_date, Won/Lost at close_date. Without it
  Voronka only sees each deal enter its current stage on the export day.
- --as-of D: deals engaged on or after D are removed; deals closed on or after D are reopened as
  open in Engaging with no close date; nothing dated on or after D remains in the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

FILES = ("sales_pipeline.csv", "products.csv", "accounts.csv", "sales_teams.csv")


def _find(src: Path, name: str) -> Path:
    hits = sorted(src.rglob(name))
    if not hits:
        raise SystemExit(f"{name} not found under {src}")
    return hits[0]


def load(src: Path) -> pd.DataFrame:
    """The raw opportunities with list price, region and segment joined (no cut)."""
    pipe = pd.read_csv(_find(src, "sales_pipeline.csv"), dtype=str)
    products = pd.read_csv(_find(src, "products.csv"), dtype=str)
    teams = pd.read_csv(_find(src, "sales_teams.csv"), dtype=str)
    accounts = pd.read_csv(_find(src, "accounts.csv"), dtype=str)
    # the pipeline spells "GTX Pro" as "GTXPro"
    products["key"] = products["product"].str.replace(" ", "", regex=False)
    pipe["key"] = pipe["product"].str.replace(" ", "", regex=False)
    out = pipe.merge(products[["key", "sales_price"]], on="key", how="left")
    out = out.merge(teams[["sales_agent", "regional_office"]], on="sales_agent", how="left")
    out = out.merge(accounts[["account", "sector"]], on="account", how="left")
    out["engage_date"] = pd.to_datetime(out["engage_date"], errors="coerce")
    out["close_date"] = pd.to_datetime(out["close_date"], errors="coerce")
    out["close_value"] = pd.to_numeric(out["close_value"], errors="coerce")
    out["list_price"] = pd.to_numeric(out["sales_price"], errors="coerce")
    return out.drop(columns=["key", "sales_price"])


def truth(src: Path) -> pd.DataFrame:
    """One row per deal as finally known: id, created, closed, outcome, amount (list price)."""
    d = load(src)
    outcome = d["deal_stage"].map({"Won": "won", "Lost": "lost"}).fillna("open")
    return pd.DataFrame({"native_id": d["opportunity_id"], "created": d["engage_date"],
                         "closed": d["close_date"], "outcome": outcome,
                         "amount": d["list_price"], "close_value": d["close_value"],
                         "stage": d["deal_stage"]})


def prepare(src: Path, out_dir: Path, as_of: str | None = None) -> list[Path]:
    d = load(src)
    if as_of:
        cut = pd.Timestamp(as_of)
        d = d[d["engage_date"].notna() & (d["engage_date"] < cut)].copy()
        reopen = d["close_date"].isna() | (d["close_date"] >= cut)
        d.loc[reopen, "deal_stage"] = "Engaging"
        d.loc[reopen, "close_date"] = pd.NaT
    deals = pd.DataFrame({
        "opportunity_id": d["opportunity_id"],
        "sales_agent": d["sales_agent"],
        "product": d["product"],
        "account": d["account"],
        "deal_stage": d["deal_stage"],
        "engage_date": d["engage_date"].dt.strftime("%Y-%m-%d"),
        "close_date": d["close_date"].dt.strftime("%Y-%m-%d"),
        "amount": d["list_price"],
        "regional_office": d["regional_office"],
        "sector": d["sector"],
    })
    engaged = d[d["engage_date"].notna()]
    closed = d[d["close_date"].notna() & d["deal_stage"].isin(["Won", "Lost"])]
    events = pd.concat([
        pd.DataFrame({"opportunity_id": engaged["opportunity_id"], "stage": "Engaging",
                      "entered_at": engaged["engage_date"].dt.strftime("%Y-%m-%d")}),
        pd.DataFrame({"opportunity_id": closed["opportunity_id"], "stage": closed["deal_stage"],
                      "entered_at": closed["close_date"].dt.strftime("%Y-%m-%d")}),
    ], ignore_index=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "deals.csv"
    deals.to_csv(path, index=False)
    events_path = out_dir / "stage_events.csv"
    events.to_csv(events_path, index=False)
    return [path, events_path]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--as-of", default=None)
    args = ap.parse_args()
    for p in prepare(args.src, args.out, args.as_of):
        print(p)


if __name__ == "__main__":
    main()
