"""Wall time of the read commands (`voronka funnel`, `forecast`, `coverage`, ... `report`), each
run as the user runs it: a fresh `python -m voronka.cli <command> --workspace W` process.

Usage:  .venv/bin/python benchmarks/read_commands.py [--workspace W] [--deals 5000] [--runs 5]
                                                     [--commands funnel deals ...] [--label after]
Without --workspace a demo workspace is built (`voronka demo --deals N --quiet`, a few minutes)
in a temporary folder; with --workspace an existing one is reused (built first when it has no
warehouse yet). Writes benchmarks/results/read_commands.json and prints a Markdown table.

Per command: median and max wall seconds over --runs runs, and the peak resident memory of the
process (ru_maxrss of the waited-for child, os.wait4). Then `python -X importtime -c "import
voronka.cli"`: the modules that cost most to import (cumulative microseconds). Timings are
measured, never asserted: the numbers depend on the machine and its load (noted in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (name, arguments after `voronka`); --workspace W is appended. Outputs go to the temporary folder.
COMMANDS = [
    ("funnel", ["funnel"]),
    ("forecast", ["forecast"]),
    ("coverage", ["coverage"]),
    ("deals", ["deals"]),
    ("changes", ["changes"]),
    ("quarantine", ["quarantine"]),
    ("evaluate", ["evaluate"]),
    ("backtest", ["backtest"]),
    ("export", ["export", "--table", "mart_bookings", "--out", "{tmp}/mart_bookings.csv"]),
    ("report", ["report", "--out", "{tmp}/report.html", "--quiet"]),
]


def checkout_env() -> dict:
    # The checkout being measured wins over any installed copy of voronka.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("COLUMNS", "120")  # the same table width whether or not a terminal is attached
    return env


def build_workspace(workspace: Path, deals: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "voronka.cli", "demo", "--workspace", str(workspace),
                    "--deals", str(deals), "--quiet"], check=True, env=checkout_env(), stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_once(argv: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=checkout_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss // 1024
    return wall, round(rss_kib / 1024), proc.returncode


def import_profile(top: int) -> list[dict]:
    """The modules with the largest cumulative import time under `import voronka.cli`."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import voronka.cli"],
                          env=checkout_env(), capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line.replace("import time:", "").split("|")
        rows.append({"module": name.strip(), "self_ms": int(self_us) / 1000,
                     "cumulative_ms": int(cumulative_us) / 1000})
    total = next((r["cumulative_ms"] for r in reversed(rows) if r["module"] == "voronka.cli"), None)
    top_rows = sorted((r for r in rows if r["module"] != "voronka.cli"), key=lambda r: -r["cumulative_ms"])[:top]
    return [{"module": "voronka.cli", "cumulative_ms": total}] + top_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", help="reuse (or build into) this demo workspace")
    parser.add_argument("--deals", type=int, default=5000, help="deals of the demo workspace built (default 5000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument("--commands", nargs="+", choices=[name for name, _ in COMMANDS],
                        help="only these commands (default: all)")
    parser.add_argument("--top-imports", type=int, default=15)
    parser.add_argument("--label", default="", help="a label stored in the JSON (e.g. before, after)")
    parser.add_argument("--out", default=str(HERE / "results" / "read_commands.json"))
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="voronka-read-bench-"))
    workspace = Path(args.workspace).resolve() if args.workspace else tmp / "workspace"
    build_seconds = None
    if not (workspace / "warehouse.duckdb").exists():
        print(f"building a demo workspace of {args.deals} deals at {workspace} ...", file=sys.stderr)
        build_seconds = round(build_workspace(workspace, args.deals), 1)

    load_before = os.getloadavg()
    results = []
    chosen = [(n, a) for n, a in COMMANDS if not args.commands or n in args.commands]
    for name, command in chosen:
        argv_ = [sys.executable, "-m", "voronka.cli", *[a.format(tmp=tmp) for a in command],
                 "--workspace", str(workspace)]
        runs = [run_once(argv_) for _ in range(args.runs)]
        walls = [w for w, _, _ in runs]
        results.append({"command": name, "argv": argv_[3:], "runs": args.runs,
                        "median_s": round(statistics.median(walls), 3), "max_s": round(max(walls), 3),
                        "min_s": round(min(walls), 3), "peak_rss_mib": max(r for _, r, _ in runs),
                        "exit_codes": sorted({c for _, _, c in runs})})
        print(f"{name}: median {results[-1]['median_s']:.3f}s", file=sys.stderr)
    imports = import_profile(args.top_imports)
    out = {"label": args.label, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
           "python": platform.python_version(), "cpus": os.cpu_count(),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()],
           "workspace": str(workspace), "deals": args.deals, "workspace_build_seconds": build_seconds,
           "commands": results, "import_voronka_cli": imports}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")

    print("| command | median s | max s | peak RSS MiB | exit |\n|---|---:|---:|---:|---|")
    for r in results:
        print(f"| `{' '.join(['voronka', *r['argv'][:1]])}` | {r['median_s']:.2f} | {r['max_s']:.2f} | "
              f"{r['peak_rss_mib']} | {','.join(map(str, r['exit_codes']))} |")
    print(f"\n`import voronka.cli`: {imports[0]['cumulative_ms']:.0f} ms; costliest imports (cumulative ms):")
    print("\n| module | cumulative ms |\n|---|---:|")
    for r in imports[1:]:
        print(f"| {r['module']} | {r['cumulative_ms']:.1f} |")
    print(f"\nload average before/after: {out['load_average_before']} / {out['load_average_after']} "
          f"({out['cpus']} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
