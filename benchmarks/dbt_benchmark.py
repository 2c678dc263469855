"""Time `dbt build` (models, data tests, unit tests) of the dbt project on simulated companies.

Usage:  .venv/bin/python benchmarks/dbt_benchmark.py [--sizes 100000 1000000] [--reuse]
Appends the run to benchmarks/results/dbt.json and prints a Markdown table for RESULTS.md.

For each size a company is simulated (seed 1, history up to 2026-11-20), written as canonical
CSV exports and loaded by the loader into benchmarks/work/dbt_<deals>/warehouse.duckdb (--reuse
keeps a warehouse already there). Then `dbt build` runs in its own process as of the end of the
history, reporting in USD; its wall time and peak resident memory are measured (ru_maxrss of the
waited-for child), and dbt's run_results.json gives each node's time.
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
PROJECT = ROOT / "dbt_project"
END_DATE = "2026-11-20"
AS_OF = f"{END_DATE} 23:59:59"

LOAD = """
import sys
from datetime import date
from pathlib import Path
import duckdb
from voronka.ingest.loader import load_files
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company
home, deals = Path(sys.argv[1]), int(sys.argv[2])
company = simulate_company(n_deals=deals, seed=1, end_date=date.fromisoformat(sys.argv[3]))
files = write_canonical(company, home / "inbox", home / "truth")
con = duckdb.connect(str(home / "warehouse.duckdb"))
try:
    results = load_files(con, files)
finally:
    con.close()
bad = [r.as_dict() for r in results if r.status != "loaded"]
if bad:
    raise SystemExit(f"load failed: {bad}")
"""


def timed(command: list[str], env: dict | None = None) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed (exit status {status})")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def build(home: Path) -> dict:
    dbt = str(Path(sys.executable).with_name("dbt"))
    target = home / "target"
    command = [dbt, "build", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
               "--target-path", str(target), "--log-path", str(home / "logs"), "--quiet",
               "--vars", json.dumps({"as_of": AS_OF, "reporting_currency": "USD"})]
    result = timed(command, {**os.environ, "VORONKA_WAREHOUSE": str(home / "warehouse.duckdb")})
    runs = json.loads((target / "run_results.json").read_text())["results"]
    kinds: dict[str, list] = {}
    for r in runs:
        kind = r["unique_id"].split(".")[0]
        kinds.setdefault(kind, []).append(r["execution_time"])
    result["nodes"] = {kind: {"count": len(times), "seconds": round(sum(times), 1)} for kind, times in kinds.items()}
    models = sorted((r for r in runs if r["unique_id"].startswith("model.")), key=lambda r: -r["execution_time"])
    result["slowest_models"] = {r["unique_id"].split(".")[-1]: round(r["execution_time"], 1) for r in models[:8]}
    result["statuses"] = sorted({str(r["status"]) for r in runs})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir", default=str(HERE / "work"))
    parser.add_argument("--reuse", action="store_true", help="keep a warehouse already loaded for a size")
    args = parser.parse_args()
    results = []
    for deals in args.sizes:
        home = Path(args.workdir) / f"dbt_{deals}"
        row = {"deals": deals}
        if not (args.reuse and (home / "warehouse.duckdb").exists()):
            subprocess.run(["rm", "-rf", str(home)], check=True)
            home.mkdir(parents=True)
            row["simulate_and_load"] = timed([sys.executable, "-c", LOAD, str(home), str(deals), END_DATE])
        import duckdb

        con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        try:
            row["stage_events"] = con.execute("select count(*) from raw.stage_events").fetchone()[0]
        finally:
            con.close()
        row["dbt_build"] = build(home)
        row["warehouse_mb"] = round((home / "warehouse.duckdb").stat().st_size / 2**20, 1)
        results.append(row)
        print(json.dumps(row), flush=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
               "load_average_at_end": [round(x, 1) for x in os.getloadavg()]}
    out = HERE / "results" / "dbt.json"
    out.parent.mkdir(exist_ok=True)
    # Every run is kept (the machine is shared: the load average says how quiet it was).
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    runs.append({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine, "as_of": AS_OF, "results": results})
    out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    print("\n| deals | stage events | dbt build s (MB) | models s | data tests s (n) | unit tests s (n) | "
          "slowest models (s) |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        b, nodes = r["dbt_build"], r["dbt_build"]["nodes"]
        slow = ", ".join(f"{k} {v}" for k, v in list(b["slowest_models"].items())[:5])
        print(f"| {r['deals']:,} | {r['stage_events']:,} | {b['seconds']} ({b['peak_rss_mb']}) | "
              f"{nodes['model']['seconds']} | {nodes['test']['seconds']} ({nodes['test']['count']}) | "
              f"{nodes['unit_test']['seconds']} ({nodes['unit_test']['count']}) | {slow} |")


if __name__ == "__main__":
    main()
