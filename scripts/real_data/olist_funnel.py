"""Prepare the public Olist "Marketing Funnel" dataset (marketing-qualified leads and the deals
closed from them, a Brazilian marketplace's seller acquisition, 2017-06 .. 2018-12) for Voronka,
optionally as it was known on a past date.

No network: point it at the folder with olist_marketing_qualified_leads_dataset.csv and
olist_closed_deals_dataset.csv (docs/real-data.md says where to get them).

    python scripts/real_data/olist_funnel.py SRC_DIR OUT_DIR [--as-of 2018-04-01] [--lost-after 180]

Writes OUT_DIR/leads.csv for docs/examples/real_data/olist_funnel_prepared.yaml. The dataset is
two tables no CRM exports as one, so this joins them: one deal per lead (mql_id), created at
first_contact_date, in stage MQL; a lead in the closed-deals table is Won at won_date. The
dataset has no lost leads: a lead not won --lost-after days (default 180) after first contact is
taken as Lost on that day (what a CRM's stale-lead rule would do); say --lost-after 0 to keep
them open. Amount is 1 per deal (declared_monthly_revenue is 0 for most), so money figures are
counts of won deals. --as-of D keeps leads first contacted before D, with only what was known
before D (won/lost on or after D -> still open).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def _read(src: Path, name: str) -> pd.DataFrame:
    hits = sorted(src.rglob(name))
    if not hits:
        raise SystemExit(f"{name} not found under {src}")
    return pd.read_csv(hits[0], dtype=str, keep_default_na=False)


def _dt(s: pd.Series) -> pd.Series:
    iso = s.str.match(r"^\d{4}-")
    out = pd.to_datetime(s.where(iso), errors="coerce", format="mixed")
    return out.fillna(pd.to_datetime(s.where(~iso), errors="coerce", dayfirst=True, format="mixed"))


def load(src: Path, lost_after: int = 180) -> pd.DataFrame:
    mql = _read(src, "olist_marketing_qualified_leads_dataset.csv")
    won = _read(src, "olist_closed_deals_dataset.csv")
    d = mql.merge(won, on="mql_id", how="left")
    d["created"] = _dt(d["first_contact_date"])
    d["won_at"] = _dt(d["won_date"].fillna(""))
    d["outcome"] = d["won_at"].notna().map({True: "won", False: "open"})
    d["closed"] = d["won_at"]
    if lost_after:
        lost = d["won_at"].isna()
        d.loc[lost, "closed"] = d.loc[lost, "created"] + pd.Timedelta(days=lost_after)
        d.loc[lost, "outcome"] = "lost"
        # a "lost" day after the data end is not known yet: still open
        end = d["won_at"].max()
        still = lost & (d["closed"] > end)
        d.loc[still, ["outcome", "closed"]] = ["open", pd.NaT]
    return d


def truth(src: Path, lost_after: int = 180) -> pd.DataFrame:
    d = load(src, lost_after)
    return pd.DataFrame({"native_id": d["mql_id"], "created": d["created"], "closed": d["closed"],
                         "outcome": d["outcome"], "amount": 1.0})


def prepare(src: Path, out_dir: Path, as_of: str | None = None, lost_after: int = 180) -> list[Path]:
    d = load(src, lost_after)
    if as_of:
        cut = pd.Timestamp(as_of)
        d = d[d["created"] < cut].copy()
        reopen = d["closed"].isna() | (d["closed"] >= cut)
        d.loc[reopen, "outcome"] = "open"
        d.loc[reopen, "closed"] = pd.NaT
    stage = d["outcome"].map({"won": "Won", "lost": "Lost"}).fillna("MQL")
    leads = pd.DataFrame({
        "mql_id": d["mql_id"], "first_contact": d["created"].dt.strftime("%Y-%m-%d %H:%M:%S"),
        "closed": d["closed"].dt.strftime("%Y-%m-%d %H:%M:%S"), "stage": stage,
        "origin": d["origin"], "business_segment": d["business_segment"].fillna(""),
        "sr_id": d["sr_id"].fillna(""), "landing_page_id": d["landing_page_id"],
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "leads.csv"
    leads.to_csv(path, index=False)
    return [path]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--as-of", default=None)
    ap.add_argument("--lost-after", type=int, default=180)
    args = ap.parse_args()
    for p in prepare(args.src, args.out, args.as_of, args.lost_after):
        print(p)


if __name__ == "__main__":
    main()
