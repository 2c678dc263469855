"""The floors Voronka's ingest + dbt are measured against: the same canonical CSV files loaded and
turned into stage transitions and a funnel by a plain script, once in DuckDB and once in pandas.

Both compute, from deals.csv, stage_events.csv and pipeline_stages.csv:
- transitions: every stage event with the deal's next event (to_stage, hours in the stage);
- funnel: per pipeline and stage, the deals that reached it (their furthest stage in the list's
  order is at or past it), how many went further, and how many were won;
- time in stage: per pipeline and stage, the median and mean hours spent there.
That is the core of what Voronka's marts hold (fct_stage_transitions, mart_funnel_conversion,
mart_time_in_stage) without the rest (as-of restating, currencies, targets, data tests), so a
ratio to it is an upper bound on Voronka's overhead, not a like-for-like race.

The like-for-like floor of the dbt build is `dbt-sql`: every model of Voronka's dbt project,
compiled by dbt (untimed, `--full-refresh` so incremental models compile to their full query),
then executed as plain `create or replace` statements in dependency order on a copy of a built
warehouse, in one DuckDB connection: the same marts without dbt's start-up, parsing, tests and
events.

Usage:  python benchmarks/floors.py duckdb|pandas INBOX [--db FILE]
        python benchmarks/floors.py dbt-sql WAREHOUSE
Prints one JSON line: {"floor", "seconds", ...}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def duckdb_floor(inbox: Path, db_path: Path) -> dict:
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(str(db_path))
    con.execute(f"""
        create or replace table deals as select * from read_csv('{inbox / 'deals.csv'}', header = true,
            types = {{'created_at': 'timestamp', 'closed_at': 'timestamp', 'amount': 'double'}});
        create or replace table stage_events as select * from read_csv('{inbox / 'stage_events.csv'}',
            header = true, types = {{'entered_at': 'timestamp'}});
        create or replace table pipeline_stages as select * from read_csv('{inbox / 'pipeline_stages.csv'}',
            header = true)""")
    loaded = time.perf_counter()
    con.execute("""
        create or replace table transitions as
        select source_system, native_id, pipeline, stage as from_stage, entered_at,
               lead(stage) over deal as to_stage,
               date_diff('second', entered_at, lead(entered_at) over deal) / 3600.0 as hours_in_stage
        from stage_events
        window deal as (partition by source_system, native_id order by entered_at, stage)""")
    con.execute("""
        create or replace table funnel as
        with furthest as (
            select t.source_system, t.native_id, t.pipeline, max(s.stage_order) as furthest_order
            from transitions t join pipeline_stages s on s.pipeline = t.pipeline and s.stage = t.from_stage
            where s.kind = 'open'
            group by all
        )
        select s.pipeline, s.stage, s.stage_order,
               count(f.native_id) as reached,
               count(f.native_id) filter (where f.furthest_order > s.stage_order) as went_further,
               count(f.native_id) filter (where d.outcome = 'won') as won
        from pipeline_stages s
        left join furthest f on f.pipeline = s.pipeline and f.furthest_order >= s.stage_order
        left join deals d on d.source_system = f.source_system and d.native_id = f.native_id
        where s.kind = 'open'
        group by all""")
    con.execute("""
        create or replace table time_in_stage as
        select pipeline, from_stage, median(hours_in_stage) as median_hours, avg(hours_in_stage) as mean_hours
        from transitions where to_stage is not null group by all""")
    transitions = con.execute("select count(*) from transitions").fetchone()[0]
    funnel_rows = con.execute("select count(*) from funnel").fetchone()[0]
    con.close()
    return {"floor": "duckdb", "seconds": round(time.perf_counter() - started, 2),
            "load_seconds": round(loaded - started, 2), "transitions": transitions, "funnel_rows": funnel_rows}


def pandas_floor(inbox: Path) -> dict:
    import pandas as pd

    started = time.perf_counter()
    deals = pd.read_csv(inbox / "deals.csv", parse_dates=["created_at", "closed_at"], dtype={"native_id": str})
    events = pd.read_csv(inbox / "stage_events.csv", parse_dates=["entered_at"], dtype={"native_id": str})
    stages = pd.read_csv(inbox / "pipeline_stages.csv")
    loaded = time.perf_counter()
    events = events.sort_values(["source_system", "native_id", "entered_at", "stage"], kind="stable")
    by_deal = events.groupby(["source_system", "native_id"], sort=False)
    transitions = events.assign(
        to_stage=by_deal["stage"].shift(-1),
        hours_in_stage=(by_deal["entered_at"].shift(-1) - events["entered_at"]).dt.total_seconds() / 3600)
    open_stages = stages[stages["kind"] == "open"]
    reached = transitions.merge(open_stages, on=["pipeline", "stage"])
    furthest = reached.groupby(["source_system", "native_id", "pipeline"], as_index=False)["stage_order"].max()
    furthest = furthest.merge(deals[["source_system", "native_id", "outcome"]], on=["source_system", "native_id"],
                              how="left")
    rows = []
    for stage in open_stages.itertuples():  # a handful of stages: one vectorised pass each
        f = furthest[(furthest["pipeline"] == stage.pipeline) & (furthest["stage_order"] >= stage.stage_order)]
        rows.append({"pipeline": stage.pipeline, "stage": stage.stage, "reached": len(f),
                     "went_further": int((f["stage_order"] > stage.stage_order).sum()),
                     "won": int((f["outcome"] == "won").sum())})
    funnel = pd.DataFrame(rows)
    moved = transitions[transitions["to_stage"].notna()]
    time_in_stage = moved.groupby(["pipeline", "stage"])["hours_in_stage"].agg(["median", "mean"])
    assert len(time_in_stage) > 0
    return {"floor": "pandas", "seconds": round(time.perf_counter() - started, 2),
            "load_seconds": round(loaded - started, 2), "transitions": len(transitions),
            "funnel_rows": len(funnel)}


def dbt_sql_floor(warehouse: Path) -> dict:
    """The dbt project's models as bare SQL on a copy of `warehouse` (see the module's docstring)."""
    import graphlib
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    import duckdb

    project = Path(__file__).resolve().parents[1] / "dbt_project"
    dbt = Path(sys.executable).parent / "dbt"
    with tempfile.TemporaryDirectory() as tmp:
        copy, target = Path(tmp) / "warehouse.duckdb", Path(tmp) / "target"
        shutil.copy2(warehouse, copy)
        subprocess.run([str(dbt), "compile", "--full-refresh", "--quiet", "--project-dir", str(project),
                        "--profiles-dir", str(project), "--target-path", str(target)],
                       env={**os.environ, "VORONKA_WAREHOUSE": str(copy)}, check=True, stdout=subprocess.DEVNULL)
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
        models = {key: node for key, node in manifest["nodes"].items() if node["resource_type"] == "model"}
        order = graphlib.TopologicalSorter(
            {key: [d for d in node["depends_on"]["nodes"] if d in models] for key, node in models.items()})
        started = time.perf_counter()
        con = duckdb.connect(str(copy))
        for key in order.static_order():
            node = models[key]
            kind = "view" if node["config"]["materialized"] == "view" else "table"
            con.execute(f'create schema if not exists "{node["schema"]}"')
            existing = con.execute("select table_type from information_schema.tables where table_schema = ? "
                                   "and table_name = ?", [node["schema"], node["name"]]).fetchone()
            if existing:
                dropped = "view" if existing[0] == "VIEW" else "table"
                con.execute(f'drop {dropped} "{node["schema"]}"."{node["name"]}" cascade')
            con.execute(f'create {kind} "{node["schema"]}"."{node["name"]}" as {node["compiled_code"]}')
        con.close()
        return {"floor": "dbt-sql", "seconds": round(time.perf_counter() - started, 2), "models": len(models)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("floor", choices=["duckdb", "pandas", "dbt-sql"])
    parser.add_argument("path", type=Path, help="the inbox (duckdb, pandas) or the warehouse (dbt-sql)")
    parser.add_argument("--db", type=Path, default=Path("floor.duckdb"))
    args = parser.parse_args()
    if args.floor == "dbt-sql":
        result = dbt_sql_floor(args.path)
    else:
        result = duckdb_floor(args.path, args.db) if args.floor == "duckdb" else pandas_floor(args.path)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
