"""Time the revenue forecast's Monte Carlo and the backtest; record wall time and peak memory.

Usage:  .venv/bin/python benchmarks/forecast_benchmark.py [--sizes 100000 1000000] [--origins 3]
Writes benchmarks/results/forecast.json and prints Markdown tables.

Each task runs in its own child process, so its peak resident memory is its own:
- engine: 100k open deals x 10k draws through ml.montecarlo.simulate_won_by (four period
  boundaries, two pipelines), with the deals' P(win by boundary) resampled from the open deals
  the models scored on the 100k-deal company (so the probabilities look like real ones), and
  with the common shock (forecast_deal_correlation 0.005, the default) as the forecast runs it; plus 10k
  draws of deals not yet created. Also the whole model_forecast call on those deals.
- forecast: the forecast as the daily asset runs it on a simulated company of each size —
  models trained once (not timed), then scoring the open deals and the recent new ones,
  calibration, creation rate, and model_forecast with 10k draws.
- backtest: ml.backtest.run_backtest on each size with the newest `--origins` origins (models
  trained at the first origin, retrained every 3), 1000 draws.
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

COMMON = r"""
import json, resource, sys, time
from datetime import date
sys.path.insert(0, ROOT)
import numpy as np, pandas as pd
from voronka.simulator.company import simulate_company
from voronka.simulator.ml_frames import ml_frames

END = date(2026, 6, 30)
steps, out = {}, {}
clock = time.perf_counter()

def done(name):
    global clock
    now = time.perf_counter()
    steps[name] = {"seconds": round(now - clock, 2),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    clock = time.perf_counter()

def company(n):
    c = ml_frames(simulate_company(n_deals=n, seed=1, end_date=END))
    return c["deals"], c["stage_events"], c["pipeline_stages"]
"""

ENGINE = COMMON + r"""
from ml.backtest import fit_models
from ml.features import prepare
from ml.forecast import PeriodGrid, model_forecast, model_won_by, score_forecast_inputs
from ml.montecarlo import simulate_won_by
from ml.new_pipeline import simulate_new_pipeline
n_open, draws = int(sys.argv[1]), int(sys.argv[2])
deals, events, stages = company(100_000)
as_of = pd.Timestamp(END) + pd.Timedelta(hours=23, minutes=59, seconds=59)
timeline = prepare(deals, events, stages, cutoff=as_of)
fitted = fit_models(timeline, seed=0)
inputs = score_forecast_inputs(timeline, fitted.win, fitted.ttc, as_of)
done("prepare (simulate, train, score; not timed)")
rng = np.random.default_rng(0)
pick = rng.choice(len(inputs.open_deals), n_open, replace=True)
open_deals = inputs.open_deals.iloc[pick].reset_index(drop=True)
cgw = inputs.close_given_win[pick]
won_by = model_won_by(open_deals["p_win"].to_numpy(), cgw)
cells = pd.factorize(open_deals["pipeline"])[0]
out.update({"open_deals": n_open, "draws": draws, "boundaries": int(won_by.shape[1]),
            "mean_p_win_by_last_boundary": float(won_by[:, -1].mean())})
done("resample")
simulate_won_by(won_by, open_deals["amount_reporting"].to_numpy(), cells, 2, draws, 1, correlation=0.0)
done("engine_independent")
simulate_won_by(won_by, open_deals["amount_reporting"].to_numpy(), cells, 2, draws, 1, correlation=0.005)
done("engine_correlated")
simulate_new_pipeline(inputs.new, inputs.grid.days, np.zeros(len(inputs.new.templates), dtype=int), 1,
                      draws, np.random.default_rng(2), correlation=0.005)
done("new_pipeline")
none = pd.DataFrame(columns=["period", "pipeline", "won_amount_reporting"])
f = model_forecast(open_deals, cgw, none, pd.DataFrame(columns=["period", "pipeline", "target_amount_reporting"]),
                   as_of, "USD", new=inputs.new, draws=draws, seed=1, correlation=0.005)
done("model_forecast")
out["steps"] = steps
print(json.dumps(out))
"""

FORECAST = COMMON + r"""
from ml.backtest import fit_models
from ml.features import prepare
from ml.forecast import model_forecast, score_forecast_inputs
n, draws = int(sys.argv[1]), int(sys.argv[2])
deals, events, stages = company(n)
as_of = pd.Timestamp(END) + pd.Timedelta(hours=23, minutes=59, seconds=59)
done("simulate")
timeline = prepare(deals, events, stages, cutoff=as_of)
fitted = fit_models(timeline, seed=0)
done("train (not part of the daily forecast)")
timeline = prepare(deals, events, stages, cutoff=as_of)
done("prepare")
inputs = score_forecast_inputs(timeline, fitted.win, fitted.ttc, as_of)
done("score_inputs")
none = pd.DataFrame(columns=["period", "pipeline", "won_amount_reporting"])
f = model_forecast(inputs.open_deals, inputs.close_given_win, none,
                   pd.DataFrame(columns=["period", "pipeline", "target_amount_reporting"]), as_of, "USD",
                   new=inputs.new, draws=draws, seed=1, correlation=0.005)
done("model_forecast")
out.update({"n_deals": n, "open_deals": len(inputs.open_deals), "templates": len(inputs.new.templates),
            "draws": draws, "steps": steps,
            "daily_forecast_seconds": round(sum(steps[s]["seconds"] for s in ("prepare", "score_inputs", "model_forecast")), 1)})
print(json.dumps(out))
"""

BACKTEST = COMMON + r"""
from ml.backtest import run_backtest
n, origins = int(sys.argv[1]), int(sys.argv[2])
deals, events, stages = company(n)
done("simulate")
bt = run_backtest(deals, events, stages, max_origins=origins, draws=1000, seed=0, correlation=0.005,
                  data_end=pd.Timestamp(END) + pd.Timedelta(hours=23, minutes=59, seconds=59))
done("backtest")
out.update({"n_deals": n, "origins": bt.origins, "info": bt.info, "steps": steps,
            "metrics": bt.metrics.to_dict("records")})
print(json.dumps(out, default=str))
"""


def run(worker: str, *args) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", f"ROOT = {str(ROOT)!r}\n" + worker, *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(f"the forecast benchmark failed: {args}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = max(s["peak_rss_mb"] for s in result["steps"].values())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--origins", type=int, default=3)
    parser.add_argument("--open-deals", type=int, default=100_000)
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["engine", "forecast", "backtest"])
    parser.add_argument("--output", default=str(HERE / "results" / "forecast.json"))
    args = parser.parse_args()
    record = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform(), "load_average_at_start": os.getloadavg()}}
    if "engine" not in args.skip:
        record["engine"] = run(ENGINE, args.open_deals, args.draws)
        print(f"engine: {record['engine']['steps']}", file=sys.stderr)
    if "forecast" not in args.skip:
        record["forecast"] = [run(FORECAST, n, args.draws) for n in args.sizes]
        print(f"forecast: {[r['steps'] for r in record['forecast']]}", file=sys.stderr)
    if "backtest" not in args.skip:
        record["backtest"] = []
        for n in args.sizes:
            record["backtest"].append(run(BACKTEST, n, args.origins))
            print(f"backtest {n}: {record['backtest'][-1]['info']}", file=sys.stderr)
    record["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")

    if "engine" in record:
        e, s = record["engine"], record["engine"]["steps"]
        print("| open deals x draws | independent s | with common shock s | new pipeline s | model_forecast s | peak MB |")
        print("|---|---|---|---|---|---|")
        print(f"| {e['open_deals']:,} x {e['draws']:,} | {s['engine_independent']['seconds']} "
              f"| {s['engine_correlated']['seconds']} | {s['new_pipeline']['seconds']} "
              f"| {s['model_forecast']['seconds']} | {e['peak_rss_mb']} |")
    if "forecast" in record:
        print("\n| deals | open deals | draws | prepare s | score inputs s | model_forecast s | daily forecast s | peak MB |")
        print("|---|---|---|---|---|---|---|---|")
        for r in record["forecast"]:
            s = r["steps"]
            print(f"| {r['n_deals']:,} | {r['open_deals']:,} | {r['draws']:,} | {s['prepare']['seconds']} "
                  f"| {s['score_inputs']['seconds']} | {s['model_forecast']['seconds']} "
                  f"| {r['daily_forecast_seconds']} | {r['peak_rss_mb']} |")
    if "backtest" in record:
        print("\n| deals | origins | backtest s | of which models s | forecasts s | peak MB |")
        print("|---|---|---|---|---|---|")
        for r in record["backtest"]:
            i = r["info"]
            print(f"| {r['n_deals']:,} | {len(r['origins'])} ({r['origins'][0]} … {r['origins'][-1]}) "
                  f"| {r['steps']['backtest']['seconds']} | {i['model_seconds']} | {i['forecast_seconds']} "
                  f"| {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
