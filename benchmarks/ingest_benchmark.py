"""Ingest throughput per export format: read + load of each CRM's native export into DuckDB.

Usage:  .venv/bin/python benchmarks/ingest_benchmark.py [--sizes 100000 1000000] [--formats amocrm ...]
Writes benchmarks/results/ingest.json and prints a Markdown table for RESULTS.md.

For each size one child process simulates the company and writes the formats (write_native,
timed per format; `--write-all` writes every format even when only some are loaded); then each
format is loaded (`load_files` into a fresh DuckDB file, with the
format's time zone) in its own child process, so its peak resident memory is measured alone:
ru_maxrss of the waited-for child (os.wait4). Seconds: the load inside the child (imports
excluded) and the child's wall time. rows read/s: every row the readers count (deals, stage
events, stage lists, targets, FX, spend; a HubSpot export's events are columns of its deal rows);
deals+events/s: the deals and stage events that land in the warehouse.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WRITE_WORKER = """
import json, sys, time
from datetime import date
from pathlib import Path
from voronka.simulator.company import simulate_company
from voronka.simulator.native_writers import write_native
base, deals, formats = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
started = time.perf_counter()
company = simulate_company(n_deals=deals, seed=1, end_date=date(2026, 11, 20))
out = {"simulate_seconds": round(time.perf_counter() - started, 1), "stage_events": len(company.stage_events),
       "write_seconds": {}, "files_mb": {}}
for crm in formats:
    started = time.perf_counter()
    files = write_native(company, base / crm / "inbox", crm, base / crm / "truth")
    out["write_seconds"][crm] = round(time.perf_counter() - started, 1)
    out["files_mb"][crm] = round(sum(f.stat().st_size for f in files) / 2**20, 1)
print(json.dumps(out))
"""

LOAD_WORKER = """
import json, sys, time
from pathlib import Path
import duckdb
from voronka.ingest.loader import load_files
from voronka.simulator.native_writers import EXPORT_TIMEZONES
base, crm = Path(sys.argv[1]), sys.argv[2]
files = [base / crm / "inbox" / name for name in json.loads((base / crm / "truth" / "export.json").read_text())["files"]]
warehouse = base / crm / "warehouse.duckdb"
warehouse.unlink(missing_ok=True)
con = duckdb.connect(str(warehouse))
started = time.perf_counter()
results = load_files(con, files, timezone=EXPORT_TIMEZONES[crm])
seconds = time.perf_counter() - started
counts = {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0]
          for t in ("deals", "stage_events", "quarantine")}
con.close()
print(json.dumps({
    "load_seconds": round(seconds, 1),
    "rows_read": sum(r.rows_read for r in results),
    "refused": [r.file for r in results if r.status != "loaded"],
    "rows_quarantined": sum(r.rows_quarantined for r in results),
    "deals": counts["deals"], "stage_events": counts["stage_events"],
}))
"""

FORMATS = ("canonical", "amocrm", "bitrix24", "hubspot", "salesforce", "pipedrive")


def run_child(code: str, *args: str) -> tuple[dict, float, float]:
    """Run a worker; returns (its JSON output, wall seconds, peak RSS MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"worker {args} failed (exit status {status})")
    return json.loads(output.strip().splitlines()[-1]), round(seconds, 1), round(usage.ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS,
                        help="formats to write and load")
    parser.add_argument("--write-all", action="store_true",
                        help="write (and time) every format, load only --formats")
    parser.add_argument("--workdir", default=str(HERE / "work" / "ingest"))
    parser.add_argument("--keep", action="store_true", help="keep the written exports")
    args = parser.parse_args()
    out_path = HERE / "results" / "ingest.json"
    stored = json.loads(out_path.read_text()) if out_path.exists() else {}
    previous, previous_writes = stored.get("results", []), stored.get("writes", [])
    results, writes = [], []
    for deals in args.sizes:
        base = Path(args.workdir) / f"deals_{deals}"
        shutil.rmtree(base, ignore_errors=True)
        to_write = FORMATS if args.write_all else args.formats
        written, write_wall, write_rss = run_child(WRITE_WORKER, str(base), str(deals), ",".join(to_write))
        writes.append({"deals": deals, **written, "process_seconds": write_wall, "peak_rss_mb": write_rss})
        print(json.dumps(writes[-1]), flush=True)
        for crm in args.formats:
            loaded, wall, rss = run_child(LOAD_WORKER, str(base), crm)
            row = {
                "format": crm, "deals": deals, "stage_events_simulated": written["stage_events"],
                "files_mb": written["files_mb"][crm], "write_seconds": written["write_seconds"][crm],
                **loaded, "process_seconds": wall, "peak_rss_mb": rss,
                "rows_per_second": round(loaded["rows_read"] / max(loaded["load_seconds"], 1e-9)),
                "deals_per_second": round(deals / max(loaded["load_seconds"], 1e-9)),
                "deals_and_events_per_second": round((loaded["deals"] + loaded["stage_events"])
                                                     / max(loaded["load_seconds"], 1e-9)),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
            (base / crm / "warehouse.duckdb").unlink(missing_ok=True)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    measured = {(r["format"], r["deals"]) for r in results}
    results = [r for r in previous if (r["format"], r["deals"]) not in measured] + results
    results.sort(key=lambda r: (r["deals"], FORMATS.index(r["format"])))
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    out_path.parent.mkdir(exist_ok=True)
    sizes = {w["deals"] for w in writes}
    writes = sorted([w for w in previous_writes if w["deals"] not in sizes] + writes, key=lambda w: w["deals"])
    out_path.write_text(json.dumps({"machine": machine, "results": results, "writes": writes}, indent=2) + "\n")
    print("\n| format | deals | stage events | files MB | write s | load s | rows read/s | deals+events/s "
          "| process s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['format']} | {r['deals']:,} | {r['stage_events']:,} | {r['files_mb']:,.0f} "
              f"| {r['write_seconds']} | {r['load_seconds']} | {r['rows_per_second']:,} "
              f"| {r['deals_and_events_per_second']:,} | {r['process_seconds']} | {r['peak_rss_mb']:,} |")


if __name__ == "__main__":
    main()
