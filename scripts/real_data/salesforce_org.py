"""Prepare a Salesforce Data Export (Opportunity.csv, OpportunityHistory.csv, optionally
CurrencyType.csv) for Voronka, optionally as the org stood on a past date.

No network: point it at the folder of the export (docs/real-data.md names a public one).

    python scripts/real_data/salesforce_org.py SRC_DIR OUT_DIR [--as-of 2023-06-01] [--no-fx]

Voronka reads Opportunity.csv and OpportunityHistory.csv natively (no mapping). This script
- copies them (Windows-1252, as Salesforce writes them) and, unless --no-fx, turns
  CurrencyType.csv (the org's static conversion rates: 1 USD = ConversionRate X) into a
  canonical fx_rates.csv (1 X = 1/ConversionRate USD), since Voronka reads FX only that way;
- with --as-of D rebuilds both files as they would have been exported just before D:
  history rows created on or after D are dropped; opportunities created on or after D are
  dropped; every other opportunity takes StageName, Amount, Probability, CloseDate and
  ForecastCategoryName from its last history row before D (or, with none before D, from the
  "previous" values of its first later row); IsClosed/IsWon follow the stage; the modification
  stamps become that row's time. So a deal won in July is an open deal in its June stage in
  the 2023-07-01 cut, with the probability the CRM showed then.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ENC = "cp1252"
WON, LOST = "Closed Won", "Closed Lost"


def _read(src: Path, name: str) -> pd.DataFrame:
    hits = sorted(src.rglob(name))
    if not hits:
        raise SystemExit(f"{name} not found under {src}")
    return pd.read_csv(hits[0], dtype=str, keep_default_na=False, encoding=ENC)


def usd_rates(src: Path) -> dict[str, float]:
    """Currency -> USD per unit, from CurrencyType.csv (corporate currency USD)."""
    ct = _read(src, "CurrencyType.csv")
    return {r.IsoCode: 1.0 / float(r.ConversionRate) for r in ct.itertuples()}


def truth(src: Path) -> pd.DataFrame:
    o = _read(src, "Opportunity.csv")
    rates = usd_rates(src)
    outcome = o["StageName"].map({WON: "won", LOST: "lost"}).fillna("open")
    amount = pd.to_numeric(o["Amount"], errors="coerce") * o["CurrencyIsoCode"].map(rates)
    return pd.DataFrame({"native_id": o["Id"], "created": pd.to_datetime(o["CreatedDate"]),
                         "closed": pd.to_datetime(o["CloseDate"]).where(outcome != "open"),
                         "outcome": outcome, "amount": amount, "stage": o["StageName"],
                         "probability": pd.to_numeric(o["Probability"], errors="coerce") / 100})


def history_state(src: Path, as_of: str) -> pd.DataFrame:
    """Per opportunity created before D: stage, probability, amount (USD) as the CRM showed at D."""
    o = _read(src, "Opportunity.csv")
    h = _read(src, "OpportunityHistory.csv")
    cut = pd.Timestamp(as_of)
    o = o[pd.to_datetime(o["CreatedDate"]) < cut].copy()
    h = h.assign(_t=pd.to_datetime(h["CreatedDate"])).sort_values(["OpportunityId", "_t", "Id"])
    before = h[h["_t"] < cut].groupby("OpportunityId").tail(1).set_index("OpportunityId")
    after = h[h["_t"] >= cut].groupby("OpportunityId").head(1).set_index("OpportunityId")
    stage_prob = (o.groupby("StageName")["Probability"].agg(lambda s: s.mode().iloc[0]).to_dict())
    rows = []
    for r in o.itertuples(index=False):
        d = r._asdict()
        if r.Id in before.index:
            b = before.loc[r.Id]
            d.update(StageName=b["StageName"], Amount=b["Amount"], Probability=b["Probability"],
                     CloseDate=b["CloseDate"], ForecastCategoryName=b["ForecastCategory"],
                     ForecastCategory=b["ForecastCategory"], _stamp=b["CreatedDate"])
        elif r.Id in after.index:
            a = after.loc[r.Id]
            stage = a["FromOpportunityStageName"] or a["StageName"]
            d.update(StageName=stage, Amount=a["PrevAmount"] or a["Amount"],
                     CloseDate=a["PrevCloseDate"] or a["CloseDate"],
                     Probability=stage_prob.get(stage, a["Probability"]), _stamp=r.CreatedDate)
        else:
            d["_stamp"] = r.CreatedDate if pd.Timestamp(r.LastModifiedDate) >= cut else r.LastModifiedDate
        rows.append(d)
    return pd.DataFrame(rows, columns=list(o.columns) + ["_stamp"])


def prepare(src: Path, out_dir: Path, as_of: str | None = None, fx: bool = True) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    o = _read(src, "Opportunity.csv")
    h = _read(src, "OpportunityHistory.csv")
    if as_of:
        cut = pd.Timestamp(as_of)
        h = h[pd.to_datetime(h["CreatedDate"]) < cut]
        s = history_state(src, as_of)
        s["IsClosed"] = s["StageName"].isin([WON, LOST]).map({True: "1", False: "0"})
        s["IsWon"] = (s["StageName"] == WON).map({True: "1", False: "0"})
        for col in ("LastModifiedDate", "SystemModstamp", "LastStageChangeDate"):
            s[col] = s["_stamp"]
        late = pd.to_datetime(s["LastActivityDate"], errors="coerce") >= cut
        s.loc[late, "LastActivityDate"] = ""
        o = s.drop(columns="_stamp")
    paths = [out_dir / "Opportunity.csv", out_dir / "OpportunityHistory.csv"]
    o.to_csv(paths[0], index=False, encoding=ENC, quoting=1)
    h.to_csv(paths[1], index=False, encoding=ENC, quoting=1)
    if fx:
        ct = _read(src, "CurrencyType.csv")
        fxr = pd.DataFrame({"rate_date": pd.to_datetime(ct["CreatedDate"]).dt.strftime("%Y-%m-%d"),
                            "currency": ct["IsoCode"], "quote_currency": "USD",
                            "rate": [1.0 / float(v) for v in ct["ConversionRate"]]})
        fxr = fxr[fxr["currency"] != "USD"]
        paths.append(out_dir / "fx_rates.csv")
        fxr.to_csv(paths[-1], index=False)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--as-of", default=None)
    ap.add_argument("--no-fx", action="store_true")
    args = ap.parse_args()
    for p in prepare(args.src, args.out, args.as_of, fx=not args.no_fx):
        print(p)


if __name__ == "__main__":
    main()
