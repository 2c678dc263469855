"""Time the ML steps on simulated companies; record wall time, peak memory and the metrics.

Usage:  .venv/bin/python benchmarks/ml_benchmark.py [--sizes 100000 1000000]
Writes benchmarks/results/ml.json and prints a Markdown table.

Each company size runs in its own child process, so its peak resident memory is its own. Steps:
simulate (the demo simulator, not counted in the ML time), as-of training examples (at most four
per deal, for the win model; every weekly as-of date, for time to close — as the daily asset), the win
model (temporal hold-out evaluation + the final fit), scoring the open deals (features as of the
end date, P(win), top drivers), the time-to-close model (evaluation + final fit) and its scores
(P(won within 30/90 days), expected close date). Scoring = features as of the day after the
end date + P(win) for every open deal; drivers = the top three drivers of every open deal.
`peak_rss_mb` after a step is the peak so far (the simulator's frames included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = r"""
import json, resource, sys, time
from datetime import date
sys.path.insert(0, ROOT)
import numpy as np, pandas as pd
from voronka.simulator.company import simulate_company
from voronka.simulator.ml_frames import ml_frames
from ml.features import build_scoring_features, build_training_examples, prepare, build_features
from ml.survival import train_time_to_close
from ml.win_model import train_win_model

n_deals, seed = int(sys.argv[1]), int(sys.argv[2])
end = date(2026, 6, 30)
steps, out = {}, {"n_deals": n_deals}
clock = time.perf_counter()

def done(name):
    global clock
    now = time.perf_counter()
    steps[name] = {"seconds": round(now - clock, 1),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    clock = time.perf_counter()

company = ml_frames(simulate_company(n_deals=n_deals, seed=seed, end_date=end))
deals, events, stages = company["deals"], company["stage_events"], company["pipeline_stages"]
out["stage_events"] = len(events)
done("simulate")

examples = build_training_examples(deals, events, stages, seed=0)
out["examples"] = len(examples)
done("features")

win, win_report = train_win_model(examples, seed=0)
done("win_train")

as_of = pd.Timestamp(end) + pd.Timedelta(days=1)
open_deals = build_scoring_features(deals, events, stages, as_of)
p_win = win.predict_proba(open_deals)[:, 1]
out["open_deals"] = len(open_deals)
done("win_score")

drivers = win.top_drivers(open_deals, k=3)
done("win_drivers")

# As the daily model (ml.scoring.train_models): time to close on every weekly as-of date.
ttc_examples = build_training_examples(deals, events, stages, seed=0, cap_per_deal=None)
out["ttc_examples"] = len(ttc_examples)
done("features_ttc")

ttc, ttc_report = train_time_to_close(ttc_examples, seed=0)
done("survival_train")

won_within = ttc.predict_won_within(open_deals, [30, 90])
close_dates = ttc.expected_close_date(open_deals)
done("survival_score")

# Against the truth: deals created after the hold-out split, scored the day they appear.
split = pd.Timestamp(win_report["split_date"])
tl = prepare(deals, events, stages)
new = np.flatnonzero((tl.deals["created_at"] >= split).to_numpy())
X = build_features(tl, new, tl.deals["created_at"].to_numpy()[new])
truth = company["truth"].set_index("deal_key").loc[X["deal_key"], "p_win_true"].to_numpy()
p_new = win.predict_proba(X)[:, 1]

keep = ("auc", "brier", "ece", "log_loss", "baseline_auc", "baseline_brier", "baseline_ece",
        "baseline_log_loss", "n_train", "n_test", "n_fit", "split_date", "maturity_days")
out["win_model"] = {k: win_report[k] for k in keep}
out["win_model"]["truth_correlation_at_creation"] = float(np.corrcoef(p_new, truth)[0, 1])
out["win_model"]["mean_p_at_creation"] = float(p_new.mean())
out["win_model"]["mean_true_p"] = float(truth.mean())
out["win_model"]["calibration"] = win.calibration_method_
out["time_to_close"] = {k: ttc_report[k] for k in ("c_index", "baseline_c_index", "ibs",
                                                   "baseline_ibs", "n_train", "n_test", "n_fit")}
out["steps"] = steps
ml = [s for s in steps if s != "simulate"]
out["ml_seconds"] = round(sum(steps[s]["seconds"] for s in ml), 1)
out["peak_rss_mb"] = max(s["peak_rss_mb"] for s in steps.values())
print(json.dumps(out))
"""


def run_size(n_deals: int, seed: int) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", f"ROOT = {str(ROOT)!r}\n" + WORKER,
                           str(n_deals), str(seed)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"the ML benchmark failed for {n_deals} deals")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=str(HERE / "results" / "ml.json"))
    args = parser.parse_args()
    results = []
    for n in args.sizes:
        started = time.perf_counter()
        result = run_size(n, args.seed)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        print(f"{n} deals: ML {result['ml_seconds']} s, peak {result['peak_rss_mb']} MB",
              file=sys.stderr)
    record = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print("| deals | examples (win / ttc) | features s (win / ttc) | win train s | win score s | drivers s "
          "| survival train s | survival score s | ML total s | peak MB | AUC (baseline) "
          "| c-index (baseline) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s, w, t = r["steps"], r["win_model"], r["time_to_close"]
        print(f"| {r['n_deals']:,} | {r['examples']:,} / {r['ttc_examples']:,} "
              f"| {s['features']['seconds']} / {s['features_ttc']['seconds']} "
              f"| {s['win_train']['seconds']} | {s['win_score']['seconds']} "
              f"| {s['win_drivers']['seconds']} "
              f"| {s['survival_train']['seconds']} | {s['survival_score']['seconds']} "
              f"| {r['ml_seconds']} | {r['peak_rss_mb']} | {w['auc']:.3f} ({w['baseline_auc']:.3f}) "
              f"| {t['c_index']:.3f} ({t['baseline_c_index']:.3f}) |")


if __name__ == "__main__":
    main()
