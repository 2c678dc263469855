"""Voronka's speed and memory at 5k, 100k and 1M deals, beside plain-DuckDB and pandas floors on
the same files, with each goal of issue 14 reported as a figure and a ratio.

Usage:  .venv/bin/python benchmarks/run_pipeline_benchmark.py [--sizes 5000 100000 1000000]
            [--workdir benchmarks/work] [--read-sizes 5000] [--no-backtest-above 1000000]
Writes benchmarks/results/pipeline.json and the "Speed" section of benchmarks/RESULTS.md.

Per size, on a simulated company (seed 1) whose exports are written twice, as of 2026-11-20 (day
0) and as of a day later (day 1: new deals, moves and closings):
1. floors: floors.py on day 0 (load + transitions + funnel) in DuckDB and in pandas, and after
   the cold dbt build the dbt project's own models run as bare SQL (floors.py dbt-sql);
2. cold: day 0 through ingest, dbt, model training, then scores + forecast + checks + alerts +
   report, each stage its own process (so each has its own peak memory; the start-up of four
   processes is counted: pessimistic); then the backtest alone (the weekly job's);
3. daily: day 1's files into the inbox and `voronka run` as a user runs it; then `voronka run`
   again with nothing new (the no-op run);
4. read commands (at --read-sizes): each `voronka <command>` 3 times, the median.
Peak memory is that of the whole process tree (the sum of the RSS of the process and its children,
dbt's subprocess included, sampled every 50 ms, and never below the largest single process's
ru_maxrss). Timings are measured, never asserted: the machine is noisy, so each Voronka figure is
also given as a ratio to the floors measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from read_commands import COMMANDS, checkout_env  # noqa: E402  (a sibling script, not a package)

DAY0 = date(2026, 11, 20)
COLD_STAGES = ("ingest", "dbt", "training", "score_and_forecast")
# (job of orchestration/definitions.py, the assets to run of it or None for the whole job)
STAGE_JOBS = {
    "ingest": ("ingest", None),
    "dbt": ("transform", None),
    "training": ("train_models", ["win_model", "time_to_close_model"]),
    "backtest": ("train_models", ["forecast_backtest"]),
    "score_and_forecast": ("score_and_forecast", None),
}
# The assets whose time goal 5 counts (deal scores and the forecast).
SCORE_AND_FORECAST_STEPS = ("deal_scores", "revenue_forecast")
RESULTS_BEGIN, RESULTS_END = "<!-- speed:begin -->", "<!-- speed:end -->"


# ------------------------------------------------------------------ measuring a child process

def _tree_rss_bytes(root: int) -> int:
    """The summed resident memory of `root` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry.name}/statm", "rb") as fh:
                rss[int(entry.name)] = int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue  # the process ended while being read
        children.setdefault(int(stat[1]), []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total


def measure(argv: list[str], log: Path) -> dict:
    """Run `argv` (stdout and stderr to `log`); its wall seconds, peak tree MB and exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = [0]
    with open(log, "w", encoding="utf-8") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=checkout_env())
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    peak_bytes = max(peak[0], usage.ru_maxrss * 1024)  # a spike between samples
    return {"seconds": round(seconds, 2), "peak_mb": round(peak_bytes / 2**20),
            "exit": os.waitstatus_to_exitcode(status)}


def _worker(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", *args]


def _checked(step: dict, what: str, log: Path) -> dict:
    if step["exit"] not in (0, 1):  # 1: the run finished with failing checks (the demo's targets are high)
        raise SystemExit(f"benchmark: {what} failed (exit {step['exit']}); see {log}")
    return step


# ------------------------------------------------------------------ the steps, in child processes

def worker_simulate(home: Path, deals: int) -> None:
    """Day 1's company, and its export as it stood a day earlier (day 0)."""
    import pandas as pd

    from voronka.simulator.canonical_writer import write_canonical
    from voronka.simulator.company import export_as_of, simulate_company

    company = simulate_company(n_deals=deals, seed=1, end_date=DAY0.fromordinal(DAY0.toordinal() + 1))
    cut = pd.Timestamp(f"{DAY0.isoformat()} 23:59:59")
    write_canonical(company, home / "day1", home / "truth")
    write_canonical(export_as_of(company, cut), home / "day0", home / "truth_day0")


def worker_stage(home: Path, stage: str, out: Path) -> None:
    """One stage's job (or some of its assets) in this process; its per-asset step times to `out`."""
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.runner import QUIET_LOGS, workspace_instance
    from voronka.config import Workspace

    workspace = Workspace(home)
    instance = workspace_instance(workspace)
    job_name, assets = STAGE_JOBS[stage]
    job = build_definitions(str(home)).resolve_job_def(job_name)
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    result = job.execute_in_process(run_config=QUIET_LOGS, instance=instance, raise_on_error=False,
                                    asset_selection=selection)
    steps = {s.step_key: round(s.end_time - s.start_time, 2)
             for s in instance.get_run_step_stats(result.run_id) if s.end_time and s.start_time}
    failed = [e.step_key for e in result.all_events if e.is_step_failure]
    out.write_text(json.dumps({"steps": steps, "failed_steps": failed}), encoding="utf-8")
    if failed:
        raise SystemExit(f"{stage}: steps failed: {failed}")


# ------------------------------------------------------------------ one size

def bench_size(deals: int, workdir: Path, read_commands: bool, backtest: bool) -> dict:
    home = workdir / f"deals_{deals}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    logs = home / "logs_benchmark"
    row: dict = {"deals": deals}
    _say(f"{deals:,} deals: simulating day 0 and day 1")
    row["simulate"] = _checked(measure(_worker("simulate", str(home), str(deals)), logs / "simulate.log"),
                               "simulate", logs / "simulate.log")
    day0, day1 = home / "day0", home / "day1"
    row["events_day0"] = sum(1 for _ in open(day0 / "stage_events.csv", "rb")) - 1
    row["files_mb_day0"] = round(sum(p.stat().st_size for p in day0.iterdir()) / 2**20, 1)

    for floor in ("duckdb", "pandas"):
        _say(f"{deals:,} deals: {floor} floor")
        log = logs / f"floor_{floor}.log"
        step = measure([sys.executable, str(HERE / "floors.py"), floor, str(day0), "--db",
                        str(home / "floor.duckdb")], log)
        row[f"floor_{floor}"] = {**_checked(step, f"{floor} floor", log),
                                 **json.loads(log.read_text().strip().splitlines()[-1])}

    workspace = home / "workspace"
    (workspace / "inbox").mkdir(parents=True)
    for p in day0.iterdir():
        shutil.copy2(p, workspace / "inbox" / p.name)
    for stage in (*COLD_STAGES, "backtest"):
        if stage == "backtest" and not backtest:
            continue
        _say(f"{deals:,} deals: cold {stage}")
        log, steps_file = logs / f"cold_{stage}.log", logs / f"cold_{stage}.json"
        step = _checked(measure(_worker("stage", str(workspace), stage, str(steps_file)), log),
                        f"cold {stage}", log)
        row[f"cold_{stage}"] = {**step, **json.loads(steps_file.read_text())}
        if stage == "dbt":  # the same models as bare SQL, on a copy of what dbt built
            log = logs / "floor_dbt_sql.log"
            step = measure([sys.executable, str(HERE / "floors.py"), "dbt-sql", str(workspace / "warehouse.duckdb")],
                           log)
            row["floor_dbt_sql"] = {**_checked(step, "dbt-sql floor", log),
                                    **json.loads(log.read_text().strip().splitlines()[-1])}
    row["cold_total_seconds"] = round(sum(row[f"cold_{s}"]["seconds"] for s in COLD_STAGES), 1)
    row["cold_peak_mb"] = max(row[f"cold_{s}"]["peak_mb"] for s in COLD_STAGES)

    cli = [sys.executable, "-m", "voronka.cli"]
    for p in day1.iterdir():
        shutil.copy2(p, workspace / "inbox" / p.name)
    for name in ("daily", "noop"):
        _say(f"{deals:,} deals: {name} run")
        log = logs / f"{name}.log"
        step = _checked(measure([*cli, "run", "--workspace", str(workspace)], log), f"{name} run", log)
        row[name] = {**step, "stages": _stage_times(log)}
    row["warehouse_mb"] = round((workspace / "warehouse.duckdb").stat().st_size / 2**20, 1)

    if read_commands:
        row["read_commands"] = {}
        for name, args in COMMANDS:
            args = [a.replace("{tmp}", str(home)) for a in args]
            runs = [measure([*cli, *args, "--workspace", str(workspace)], logs / f"read_{name}.log")
                    for _ in range(3)]
            row["read_commands"][name] = {"seconds": statistics.median(r["seconds"] for r in runs),
                                          "peak_mb": max(r["peak_mb"] for r in runs),
                                          "exit": max(r["exit"] for r in runs)}
    return row


def _stage_times(log: Path) -> dict:
    """The runner's '[2/3] dbt build done in 4.1 s' lines: {stage: seconds}."""
    times = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("[") and " done in " in line:
            name, _, seconds = line.split("] ", 1)[1].rpartition(" done in ")
            times[name] = float(seconds.split()[0])
    return times


def _say(text: str) -> None:
    print(f"{datetime.now():%H:%M:%S} {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ goals and the report

def goals(rows: list[dict]) -> list[dict]:
    """Each goal of issue 14: the figure measured, the goal, and the ratio of the two (≤ 1: met)."""
    by = {r["deals"]: r for r in rows}
    out = []

    def add(goal: str, deals: int, figure, target: float, unit: str, floor_ratio=None):
        if figure is None:
            return
        out.append({"goal": goal, "deals": deals, "figure": figure, "target": target, "unit": unit,
                    "ratio_to_goal": round(figure / target, 2), "met": figure <= target,
                    "ratio_to_floor": floor_ratio})

    small = by.get(5000) or (by[min(by)] if by else None)
    if small:
        d = small["deals"]
        add("1. daily run, a new day of exports", d, small["daily"]["seconds"], 10, "s")
        add("1. daily run, nothing new", d, small["noop"]["seconds"], 5, "s")
        if "read_commands" in small:
            slowest = max(small["read_commands"].items(), key=lambda kv: kv[1]["seconds"])
            add(f"1. slowest read command ({slowest[0]})", d, slowest[1]["seconds"], 1, "s")
    big = by.get(1_000_000)
    if big:
        add("2. cold run (ingest → dbt → training → forecast → checks)", 10**6, big["cold_total_seconds"], 120, "s")
        add("2. cold run peak memory (process tree)", 10**6, big["cold_peak_mb"], 4096, "MB")
        add("2. daily run", 10**6, big["daily"]["seconds"], 30, "s")
        add("3. ingest", 10**6, big["cold_ingest"]["seconds"], 30, "s",
            _ratio(big["cold_ingest"]["seconds"], big["floor_duckdb"]["load_seconds"]))
        add("3. ingest peak memory", 10**6, big["cold_ingest"]["peak_mb"], 2048, "MB")
        if "cold_backtest" in big:
            add("5. backtest", 10**6, big["cold_backtest"]["seconds"], 120, "s")
        steps = big["cold_score_and_forecast"]["steps"]
        add("5. deal scores + forecast", 10**6,
            round(sum(steps.get(s, 0) for s in SCORE_AND_FORECAST_STEPS), 1), 20, "s")
    for r in rows:
        # the floor's own figure is its SQL alone; dbt's includes its process start-up
        add("4. dbt build within 2× of its models run as bare SQL", r["deals"],
            _ratio(r["cold_dbt"]["seconds"], r["floor_dbt_sql"]["seconds"]), 2, "× bare SQL")
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 1) if b else None


def markdown(rows: list[dict], goal_rows: list[dict], machine: dict) -> str:
    lines = [f"## Speed (`benchmarks/run_pipeline_benchmark.py`) — {machine['date']}", "",
             f"Machine: {machine['cpus']} cores, Python {machine['python']}, load average "
             f"{machine['load_before']} before the run. Each cold stage runs in its own process (its "
             "start-up counted); MB is the peak resident memory of the process tree (dbt included).", "",
             "### Goals (issue 14)", "", "| goal | deals | figure | goal | figure / goal | met |",
             "|---|---:|---:|---:|---:|:---:|"]
    for g in goal_rows:
        lines.append(f"| {g['goal']} | {g['deals']:,} | {g['figure']:,} {g['unit']} | {g['target']:,} {g['unit']} "
                     f"| {g['ratio_to_goal']} | {'yes' if g['met'] else 'no'} |")
    lines += ["", "### Stages and floors", "",
              "| deals | events | files MB | DuckDB floor s (MB) | pandas floor s (MB) | ingest s (MB) | dbt s (MB) "
              "| dbt models as bare SQL s (MB) "
              "| training s (MB) | scores+forecast+checks s (MB) | cold total s | backtest s (MB) | daily s (MB) "
              "| no-op s (MB) | (ingest+dbt) / DuckDB floor | (ingest+dbt) / pandas floor |",
              "|" + "---:|" * 16]
    cell = lambda step: f"{step['seconds']} ({step['peak_mb']:,})" if step else "–"  # noqa: E731
    for r in rows:
        ingest_dbt = r["cold_ingest"]["seconds"] + r["cold_dbt"]["seconds"]
        lines.append(
            f"| {r['deals']:,} | {r['events_day0']:,} | {r['files_mb_day0']} | {cell(r['floor_duckdb'])} "
            f"| {cell(r['floor_pandas'])} | {cell(r['cold_ingest'])} | {cell(r['cold_dbt'])} | {cell(r['floor_dbt_sql'])} "
            f"| {cell(r['cold_training'])} | {cell(r['cold_score_and_forecast'])} | {r['cold_total_seconds']} "
            f"| {cell(r.get('cold_backtest'))} | {cell(r['daily'])} | {cell(r['noop'])} "
            f"| {_ratio(ingest_dbt, r['floor_duckdb']['seconds'])} | {_ratio(ingest_dbt, r['floor_pandas']['seconds'])} |")
    lines += ["", "Inside the runs (seconds per stage of `voronka run`, and per asset of the cold "
              "scores+forecast stage):", ""]
    for r in rows:
        steps = ", ".join(f"{k} {v}" for k, v in r["cold_score_and_forecast"]["steps"].items())
        lines.append(f"- {r['deals']:,}: daily {r['daily']['stages']}; no-op {r['noop']['stages']}; "
                     f"scores+forecast stage: {steps}")
    for r in rows:
        if "read_commands" in r:
            lines += ["", f"Read commands at {r['deals']:,} deals (median of 3, s / peak MB): " + ", ".join(
                f"{k} {v['seconds']} / {v['peak_mb']}" for k, v in r["read_commands"].items())]
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict], goal_rows: list[dict], machine: dict) -> None:
    out = HERE / "results" / "pipeline.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "goals": goal_rows, "results": rows}, indent=2) + "\n")
    section = f"{RESULTS_BEGIN}\n{markdown(rows, goal_rows, machine)}{RESULTS_END}"
    results_md = HERE / "RESULTS.md"
    text = results_md.read_text(encoding="utf-8") if results_md.exists() else "# Benchmark results\n"
    if RESULTS_BEGIN in text:
        before, _, rest = text.partition(RESULTS_BEGIN)
        text = before + section + rest.partition(RESULTS_END)[2]
    else:  # first time: the section goes right after the title
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{section}\n{rest}"
    results_md.write_text(text, encoding="utf-8")
    print(markdown(rows, goal_rows, machine))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        step, home, *rest = sys.argv[2:]
        if step == "simulate":
            worker_simulate(Path(home), int(rest[0]))
        else:
            worker_stage(Path(home), rest[0], Path(rest[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 100_000, 1_000_000])
    parser.add_argument("--read-sizes", type=int, nargs="*", default=[5000],
                        help="the sizes whose read commands are timed")
    parser.add_argument("--no-backtest-above", type=int, default=None,
                        help="skip the backtest above this many deals (it is the slowest step)")
    parser.add_argument("--workdir", type=Path, default=HERE / "work")
    parser.add_argument("--keep", action="store_true", help="keep each size's workspace and files")
    args = parser.parse_args()
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
               "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
               "load_before": round(os.getloadavg()[0], 1)}
    rows = []
    for deals in args.sizes:
        backtest = args.no_backtest_above is None or deals <= args.no_backtest_above
        rows.append(bench_size(deals, args.workdir, deals in args.read_sizes, backtest))
        print(json.dumps(rows[-1]), flush=True)
        if not args.keep:
            shutil.rmtree(args.workdir / f"deals_{deals}", ignore_errors=True)
    machine["load_after"] = round(os.getloadavg()[0], 1)
    write_results(rows, goals(rows), machine)


if __name__ == "__main__":
    main()
