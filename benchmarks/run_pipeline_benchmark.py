"""Time the full pipeline and each stage on simulated companies; record wall time and peak memory.

Usage:  .venv/bin/python benchmarks/run_pipeline_benchmark.py [--sizes 10000 100000 1000000]
Writes benchmarks/results/pipeline.json and prints a Markdown table for RESULTS.md.

Each step runs in its own child process, so its peak resident memory (including dbt's
subprocess) is measured separately: ru_maxrss of a waited-for child covers its descendants.
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
import sys, json
from datetime import date
from pathlib import Path
from voronka.config import Workspace
step, home, deals = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
workspace = Workspace(home).create()
(home / "voronka.yaml").write_text("models_dir: models\n")
if step == "simulate":
    from voronka.simulator.company import simulate_company
    from voronka.simulator.canonical_writer import write_canonical
    company = simulate_company(n_deals=deals, seed=1, end_date=date(2026, 11, 20))
    write_canonical(company, workspace.inbox, home / "truth")
else:
    from orchestration.definitions import build_definitions
    from orchestration.runner import pipeline_stages, run_stage, workspace_instance
    defs = build_definitions(str(home))
    job_name, name = pipeline_stages()[int(step)]
    run_stage(defs, workspace_instance(workspace), job_name, name)
"""


STEPS = ("ingest", "dbt", "models", "scores_forecast_checks_alerts")


def run_step(step: str, home: Path, deals: int) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, step, str(home), str(deals)], cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"step {step} failed for {deals} deals (exit status {status})")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workdir", default=str(HERE / "work"))
    args = parser.parse_args()
    results = []
    for deals in args.sizes:
        home = Path(args.workdir) / f"deals_{deals}"
        subprocess.run(["rm", "-rf", str(home)], check=True)
        row = {"deals": deals, "simulate": run_step("simulate", home, deals)}
        for index, name in enumerate(STEPS):
            row[name] = run_step(str(index), home, deals)
        row["pipeline_seconds"] = round(sum(row[k]["seconds"] for k in STEPS), 1)
        row["warehouse_mb"] = round((home / "warehouse.duckdb").stat().st_size / 2**20, 1)
        results.append(row)
        print(json.dumps(row), flush=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    out = HERE / "results" / "pipeline.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print("\n| deals | simulate s (MB) | ingest s (MB) | dbt build s (MB) | model training s (MB) "
          "| scores+forecast+checks+alerts s (MB) | full run s | warehouse MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cell = lambda k: f"{r[k]['seconds']} ({r[k]['peak_rss_mb']:.0f})"
        print(f"| {r['deals']:,} | {cell('simulate')} | {cell('ingest')} | {cell('dbt')} | {cell('models')} | "
              f"{cell('scores_forecast_checks_alerts')} | {r['pipeline_seconds']} | {r['warehouse_mb']} |")


if __name__ == "__main__":
    main()
