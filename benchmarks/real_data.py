"""Voronka on public real CRM datasets, as a new user would run it, measured.

    python benchmarks/real_data.py --data DATA_DIR [--work /tmp/voronka_real] \
        [--only crm_opportunities,salesforce_org,olist_funnel] [--out benchmarks/results/real_data]
    python benchmarks/real_data.py --from-json a.json b.json --out benchmarks/results/real_data

DATA_DIR holds one folder per dataset, downloaded by you (docs/real-data.md says from where):
  crm_opportunities/  sales_pipeline.csv, products.csv, accounts.csv, sales_teams.csv
  salesforce_org/     Opportunity.csv, OpportunityHistory.csv, CurrencyType.csv
  olist_funnel/       olist_marketing_qualified_leads_dataset.csv, olist_closed_deals_dataset.csv
No network. Each run is a fresh workspace under --work, driven through the `voronka` CLI.

Per dataset:
1. "as exported": the files as the CRM wrote them (a mapping where the format needs one):
   `voronka ingest`, `voronka run`; rows read / loaded / quarantined, the top quarantine
   reasons, the exit status and last line, funnel counts against the raw file (pandas), the win
   model's card (hold-out AUC, Brier, top feature).
2. "prepared" full run (scripts/real_data/<name>.py: amounts and FX a user would add).
3. Past origins: the prepared data cut as it was known at each origin D, `voronka run --as-of D`;
   the month starting at D: model P10/P50/P90 against what was actually booked (bias, P10-P90
   coverage); the deals open at D: Voronka's p_win, its stage baseline and the CRM's own
   probability (where the export has one) against how they finally closed (AUC, Brier).
Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples" / "real_data"

DATASETS = {
    "crm_opportunities": {
        "module": "crm_opportunities",
        "raw_files": ["sales_pipeline.csv"],
        "raw_mapping": "crm_sales_opportunities.yaml",
        "prepared_mapping": {"deals.csv": "crm_opportunities_prepared.yaml",
                             "stage_events.csv": "crm_opportunities_events.yaml"},
        "source": "crmopps",
        "origins": ["2017-06-01", "2017-08-01", "2017-10-01", "2017-12-01"],
    },
    "salesforce_org": {
        "module": "salesforce_org",
        "raw_files": ["Opportunity.csv", "OpportunityHistory.csv"],
        "raw_mapping": None,
        "prepared_mapping": None,
        "source": "salesforce",
        "origins": ["2023-05-01", "2023-06-01", "2023-07-01", "2023-08-01"],
    },
    "olist_funnel": {
        "module": "olist_funnel",
        "raw_files": None,             # two tables that no CRM export joins: prepared only
        "raw_mapping": None,
        "prepared_mapping": "olist_funnel_prepared.yaml",
        "source": "olist",
        "origins": ["2018-03-01", "2018-04-01", "2018-05-01", "2018-06-01"],
    },
}


def _module(name: str):
    path = REPO / "scripts" / "real_data" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"real_data_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def voronka(*args: str, timeout: int = 1800) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "voronka.cli", *args]
    t0 = time.time()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    err = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    out = [ln for ln in p.stdout.strip().splitlines() if ln.strip()]
    return {"command": "voronka " + " ".join(args), "exit": p.returncode,
            "seconds": round(time.time() - t0, 1), "stdout": p.stdout,
            "last_line": (err[-1] if err else (out[-1] if out else "")),
            "traceback": "Traceback (most recent call last)" in p.stderr}


def _own_models(ws: Path) -> None:
    """Keep trained models inside the workspace (the default was the repository's models/,
    shared by every workspace: issue 13, item 4)."""
    cfg = ws / "voronka.yaml"
    if cfg.exists():
        text = cfg.read_text(encoding="utf-8")
        cfg.write_text(text.replace('models_dir: ""', "models_dir: models"), encoding="utf-8")


def _ingest_prepared(ws: Path, files: list[Path], mapping) -> dict:
    """Ingest prepared files, one call per mapping (a dict maps file names to mappings)."""
    if not isinstance(mapping, dict):
        return _ingest(ws, files, EXAMPLES / mapping if mapping else None)
    merged: dict = {"files": []}
    for f in files:
        m = mapping.get(f.name)
        r = _ingest(ws, [f], EXAMPLES / m if m else None)
        merged["files"] += r.pop("files") or []
        if r["exit"] != 0 or not merged.get("command"):
            merged.update(r)
    return merged


def _ingest(ws: Path, files: list[Path], mapping: Path | None) -> dict:
    args = ["ingest", "--workspace", str(ws), "--quiet", "--format", "json"]
    if mapping:
        args += ["--mapping", str(mapping)]
    res = voronka(*args, *map(str, files))
    try:
        res["files"] = json.loads(res["stdout"])
    except (ValueError, TypeError):
        res["files"] = None
    res.pop("stdout")
    return res


def _q(con, sql: str) -> pd.DataFrame | None:
    try:
        return con.execute(sql).df()
    except duckdb.Error:
        return None


def _warehouse_figures(ws: Path, truth: pd.DataFrame) -> dict:
    path = ws / "warehouse.duckdb"
    if not path.exists():
        return {"error": "no warehouse"}
    con = duckdb.connect(str(path), read_only=True)
    try:
        fig: dict = {}
        q = _q(con, "select reason from raw.quarantine")
        if q is not None:
            reasons = q["reason"].map(lambda r: re.sub(r"'[^']*'", "'…'", re.sub(r"\d[\d:. -]*", "#", str(r))))
            fig["quarantine_top"] = reasons.value_counts().head(5).to_dict()
        d = _q(con, "select outcome, count(*) n from raw.deals group by 1")
        if d is not None:
            fig["loaded_by_outcome"] = dict(zip(d["outcome"], d["n"].astype(int)))
        fig["raw_by_outcome"] = truth["outcome"].value_counts().to_dict()
        f = _q(con, "select * from mart_funnel_conversion")
        st = _q(con, "select pipeline, stage, kind from raw.pipeline_stages")
        if f is not None and st is not None:
            f = f.merge(st, on=["pipeline", "stage"], how="left")
            fig["funnel_won_reached"] = int(f.loc[f["kind"] == "won", "reached"].sum())
            fig["funnel_lost_here"] = int(f["lost_here"].fillna(0).sum())
            fig["funnel_first_stage_reached"] = int(
                f.sort_values("stage_order").groupby("pipeline").head(1)["reached"].sum())
        return fig
    finally:
        con.close()


def _model_cards(ws: Path) -> dict:
    cards = {}
    # the newest card per model, wherever the workspace keeps its store
    for card in sorted(ws.rglob("card.json"), key=lambda c: c.parent.name):
        c = json.loads(card.read_text())
        imp = (c.get("curves") or {}).get("feature_importance") or []
        top = max(imp, key=lambda r: r.get("importance", 0), default={})
        cards[c["name"]] = {"version": c.get("version"), "metrics": c.get("metrics"),
                            "baseline_metrics": c.get("baseline_metrics"),
                            "gate": c.get("gate"), "top_feature": top.get("feature"),
                            "top_importance": top.get("importance")}
    return cards


def _forecast_at(ws: Path, as_of: str) -> dict:
    period = as_of[:7]
    con = duckdb.connect(str(ws / "warehouse.duckdb"), read_only=True)
    try:
        fc = _q(con, f"""select method, booked, expected, from_open_pipeline, from_new_pipeline,
                                p10, p50, p90, open_deals from revenue_forecast
                         where pipeline = 'all' and period_grain = 'month' and period = '{period}'""")
        scores = _q(con, "select deal_key, p_win, p_win_baseline from deal_scores")
    finally:
        con.close()
    out = {"forecast": {} if fc is None else {r.method: {k: (None if pd.isna(v) else float(v))
                                                        for k, v in r._asdict().items() if k not in ("Index", "method")}
                                             for r in fc.itertuples()}}
    out["scores"] = scores
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score
    ok = ~np.isnan(p)
    if ok.sum() < 2 or len(set(y[ok])) < 2:
        return None
    return float(roc_auc_score(y[ok], p[ok]))


def _brier(y: np.ndarray, p: np.ndarray) -> float | None:
    ok = ~np.isnan(p)
    return float(np.mean((p[ok] - y[ok]) ** 2)) if ok.any() else None


def run_dataset(name: str, src: Path, work: Path, as_exported: bool = True) -> dict:
    spec = DATASETS[name]
    mod = _module(spec["module"])
    truth = mod.truth(src)
    res: dict = {"dataset": name, "deals_in_file": int(len(truth)),
                 "raw_by_outcome": truth["outcome"].value_counts().to_dict(), "failures": []}

    def note_failure(step: str, r: dict) -> None:
        if r["exit"] != 0 or r.get("traceback"):
            res["failures"].append({"step": step, "command": r["command"], "exit": r["exit"],
                                    "error": r["last_line"], "traceback": r.get("traceback")})

    # 1. as exported
    if spec["raw_files"] and as_exported:
        ws = work / f"{name}_as_exported"
        shutil.rmtree(ws, ignore_errors=True)
        files = [next(iter(sorted(src.rglob(f)))) for f in spec["raw_files"]]
        mapping = EXAMPLES / spec["raw_mapping"] if spec["raw_mapping"] else None
        ing = _ingest(ws, files, mapping)
        note_failure("as exported: ingest", ing)
        _own_models(ws)
        run = voronka("run", "--workspace", str(ws), "--quiet")
        run.pop("stdout")
        note_failure("as exported: run", run)
        ev = voronka("evaluate", "--workspace", str(ws), "--format", "json")
        ev.pop("stdout")
        note_failure("as exported: evaluate", ev)
        qc = voronka("quarantine", "--workspace", str(ws), "--format", "json")
        qc.pop("stdout")
        note_failure("as exported: quarantine", qc)
        res["as_exported"] = {"ingest": ing, "run": run, "quarantine_command": qc,
                              "warehouse": _warehouse_figures(ws, truth), "models": _model_cards(ws)}

    # 2. prepared, full
    ws = work / f"{name}_prepared"
    shutil.rmtree(ws, ignore_errors=True)
    files = mod.prepare(src, work / f"{name}_prepared_files")
    mapping = spec["prepared_mapping"]
    ing = _ingest_prepared(ws, files, mapping)
    note_failure("prepared: ingest", ing)
    _own_models(ws)
    run = voronka("run", "--workspace", str(ws), "--quiet")
    run.pop("stdout")
    note_failure("prepared: run", run)
    res["prepared"] = {"ingest": ing, "run": run, "warehouse": _warehouse_figures(ws, truth),
                       "models": _model_cards(ws)}

    # 3. past origins
    origins, pooled = [], []
    for d in spec["origins"]:
        ws = work / f"{name}_asof_{d}"
        shutil.rmtree(ws, ignore_errors=True)
        files = mod.prepare(src, work / f"{name}_files_{d}", as_of=d)
        ing = _ingest_prepared(ws, files, mapping)
        note_failure(f"as of {d}: ingest", ing)
        _own_models(ws)
        run = voronka("run", "--workspace", str(ws), "--quiet", "--as-of", d)
        run.pop("stdout")
        note_failure(f"as of {d}: run", run)
        start = pd.Timestamp(d)
        end = start + pd.offsets.MonthBegin(1)
        won = truth[(truth["outcome"] == "won") & (truth["closed"] >= start) & (truth["closed"] < end)]
        o = {"as_of": d, "ingest_files": ing.get("files"), "run_exit": run["exit"],
             "run_last_line": run["last_line"], "actual": float(won["amount"].sum()),
             "actual_deals": int(len(won)), "models": _model_cards(ws)}
        if (ws / "warehouse.duckdb").exists():
            f = _forecast_at(ws, d)
            o["forecast"] = f["forecast"]
            m = f["forecast"].get("model")
            if m and m.get("p50") is not None:
                o["p50_over_actual"] = (m["p50"] / o["actual"]) if o["actual"] else None
                o["inside_p10_p90"] = bool(m["p10"] <= o["actual"] <= m["p90"])
            sc = f["scores"]
            if sc is not None and len(sc):
                sc = sc.assign(native_id=sc["deal_key"].str.split(":", n=1).str[1])
                j = sc.merge(truth, on="native_id", how="inner")
                j = j[j["outcome"].isin(["won", "lost"])].copy()
                j["y"] = (j["outcome"] == "won").astype(int)
                if hasattr(mod, "history_state"):
                    hs = mod.history_state(src, d)[["Id", "Probability"]]
                    hs = hs.rename(columns={"Id": "native_id", "Probability": "crm_p"})
                    hs["crm_p"] = pd.to_numeric(hs["crm_p"], errors="coerce") / 100
                    j = j.merge(hs, on="native_id", how="left")
                j["origin"] = d
                pooled.append(j)
                o["scored_deals_closed_later"] = int(len(j))
        origins.append(o)
    res["origins"] = origins
    fs = [o for o in origins if o.get("forecast", {}).get("model", {}).get("p50") is not None and o["actual"] > 0]
    if fs:
        p50 = np.array([o["forecast"]["model"]["p50"] for o in fs])
        act = np.array([o["actual"] for o in fs])
        res["forecast_summary"] = {
            "origins": len(fs), "bias": float((p50 - act).sum() / act.sum()),
            "p50_over_actual": [round(float(x), 2) for x in p50 / act],
            "inside_p10_p90": int(sum(o["inside_p10_p90"] for o in fs)),
        }
        wp = [o for o in fs if o["forecast"].get("weighted_pipeline", {}).get("p50") is not None]
        if wp:
            wp50 = np.array([o["forecast"]["weighted_pipeline"]["p50"] for o in wp])
            wact = np.array([o["actual"] for o in wp])
            res["forecast_summary"]["weighted_pipeline_bias"] = float((wp50 - wact).sum() / wact.sum())
    if pooled:
        j = pd.concat(pooled, ignore_index=True)
        y = j["y"].to_numpy()
        win = {"deals_scored": int(len(j)), "won_share": float(y.mean())}
        for col, label in (("p_win", "voronka"), ("p_win_baseline", "stage_baseline"), ("crm_p", "crm_probability")):
            if col in j:
                p = pd.to_numeric(j[col], errors="coerce").to_numpy(dtype=float)
                win[label] = {"auc": _auc(y, p), "brier": _brier(y, p)}
        res["win_model_at_origins"] = win
    return res


def _fmt(x, nd=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def markdown(results: list[dict]) -> str:
    lines = ["# Voronka on public real CRM datasets", "",
             f"Measured by `benchmarks/real_data.py` at commit `{_git_head()}`.", ""]
    for r in results:
        lines += [f"## {r['dataset']}", "", f"Deals in the file: {r['deals_in_file']} "
                  f"({', '.join(f'{k} {v}' for k, v in r['raw_by_outcome'].items())}).", ""]
        for part in ("as_exported", "prepared"):
            if part not in r:
                continue
            p = r[part]
            lines.append(f"**{part.replace('_', ' ')}**: ingest exit {p['ingest']['exit']}, "
                         f"run exit {p['run']['exit']} ({p['run']['seconds']} s)"
                         + (f": `{p['run']['last_line']}`" if p["run"]["exit"] else ""))
            for f in p["ingest"].get("files") or []:
                lines.append(f"- {f.get('file')}: read {f.get('rows_read')}, loaded {f.get('rows_loaded')}, "
                             f"quarantined {f.get('rows_quarantined')}"
                             + (f", flagged {f.get('rows_flagged')}" if "rows_flagged" in f else ""))
            w = p["warehouse"]
            if w.get("quarantine_top"):
                lines.append("- top quarantine reasons: " + "; ".join(f"{k} ({v})" for k, v in w["quarantine_top"].items()))
            if "funnel_won_reached" in w:
                lines.append(f"- funnel: won reached {w['funnel_won_reached']} (raw {r['raw_by_outcome'].get('won', 0)}), "
                             f"lost_here {w['funnel_lost_here']} (raw {r['raw_by_outcome'].get('lost', 0)}), "
                             f"first stage reached {w['funnel_first_stage_reached']}; loaded {w.get('loaded_by_outcome')}")
            wm = p["models"].get("win_model")
            if wm:
                lines.append(f"- win model hold-out: AUC {_fmt(wm['metrics'].get('auc'))} (stage baseline "
                             f"{_fmt((wm['baseline_metrics'] or {}).get('auc'))}), Brier {_fmt(wm['metrics'].get('brier'), 3)} "
                             f"(baseline {_fmt((wm['baseline_metrics'] or {}).get('brier'), 3)}); top feature "
                             f"{wm['top_feature']} ({_fmt(wm['top_importance'])}); gate: {(wm['gate'] or {}).get('reason')}")
            lines.append("")
        if r.get("origins"):
            lines += ["| origin | deals open | model P10 | P50 | P90 | weighted pipeline | actual | P50/actual | in P10–P90 | run exit |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for o in r["origins"]:
                m = o.get("forecast", {}).get("model", {})
                wp = o.get("forecast", {}).get("weighted_pipeline", {})
                lines.append(f"| {o['as_of']} | {_fmt(m.get('open_deals'), 0)} | {_fmt(m.get('p10'), 0)} | {_fmt(m.get('p50'), 0)} | "
                             f"{_fmt(m.get('p90'), 0)} | {_fmt(wp.get('p50'), 0)} | {_fmt(o['actual'], 0)} | "
                             f"{_fmt(o.get('p50_over_actual'))} | {o.get('inside_p10_p90', '–')} | {o['run_exit']} |")
            lines.append("")
        if r.get("forecast_summary"):
            s = r["forecast_summary"]
            lines.append(f"Forecast of the month ahead at {s['origins']} origins: bias {s['bias']:+.0%} "
                         f"(P50/actual {s['p50_over_actual']}), actual inside P10–P90 at {s['inside_p10_p90']} of {s['origins']}"
                         + (f"; weighted pipeline bias {s['weighted_pipeline_bias']:+.0%}" if "weighted_pipeline_bias" in s else "") + ".")
        if r.get("win_model_at_origins"):
            w = r["win_model_at_origins"]
            parts = [f"{k} AUC {_fmt(v['auc'])} / Brier {_fmt(v['brier'], 3)}" for k, v in w.items() if isinstance(v, dict)]
            lines.append(f"Deals open at the origins that closed later ({w['deals_scored']}, {w['won_share']:.0%} won): " + "; ".join(parts) + ".")
        if r["failures"]:
            lines += ["", "Failures:"]
            lines += [f"- {f['step']}: `{f['command']}` exit {f['exit']}: {f['error']}" for f in r["failures"]]
        lines.append("")
    return "\n".join(lines)


def _git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description="Voronka on public real CRM datasets")
    ap.add_argument("--data", type=Path, help="folder with one subfolder per dataset")
    ap.add_argument("--from-json", type=Path, nargs="*", default=None,
                    help="no runs: merge earlier JSON results into --out (.json and .md)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/voronka_real"))
    ap.add_argument("--only", default=",".join(DATASETS))
    ap.add_argument("--no-as-exported", action="store_true", help="skip step 1 (the files as exported)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "real_data")
    args = ap.parse_args()
    if args.from_json:
        results = [r for f in args.from_json for r in json.loads(f.read_text(encoding="utf-8"))]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        args.out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
        print(markdown(results))
        return
    if not args.data:
        ap.error("--data is required (or --from-json)")
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        src = args.data / name
        if not src.exists():
            print(f"{name}: {src} not found, skipped", file=sys.stderr)
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        r = run_dataset(name, src, args.work, as_exported=not args.no_as_exported)
        results.append(r)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        args.out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))


if __name__ == "__main__":
    main()
