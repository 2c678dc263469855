"""The inbox sensor: a file in the inbox whose content was never loaded starts the daily job.

Files are known by their sha256, as the loader knows them (raw.ingest_log): a file already
loaded — by `voronka run`, `voronka ingest` or an earlier run — starts nothing, whatever its
name or modification time, so opening `voronka ui` on a loaded workspace runs nothing."""


import hashlib
import json
from pathlib import Path

import dagster as dg

from orchestration.resources import WorkspaceResource
from voronka.errors import WarehouseBusyError
from voronka.ingest.loader import file_sha256
from voronka.warehouse_access import open_warehouse
from voronka.warehouse_reads import table_exists


def inbox_hashes(inbox: Path, known: dict[str, list]) -> dict[str, list]:
    """name -> [size:mtime stamp, sha256] of each inbox file; a file is hashed again only when
    its stamp changed since `known` (the last tick's answer)."""
    if not inbox.exists():
        return {}
    hashes = {}
    for path in sorted(inbox.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        stamp = f"{path.stat().st_size}:{path.stat().st_mtime_ns}"
        before = known.get(path.name)
        hashes[path.name] = before if before and before[0] == stamp else [stamp, file_sha256(path)]
    return hashes


def loaded_hashes(warehouse: Path) -> set[str]:
    """sha256 of every file the loader has loaded (raw.ingest_log). Read-only and without
    waiting: WarehouseBusyError while a run holds the warehouse (the next tick looks again)."""
    if not warehouse.exists():
        return set()
    con = open_warehouse(warehouse, read_only=True, wait_seconds=0)
    try:
        if not table_exists(con, "raw.ingest_log"):
            return set()
        return {sha for (sha,) in con.execute("select distinct file_sha256 from raw.ingest_log").fetchall()}
    finally:
        con.close()


def files_to_load(hashes: dict[str, list], loaded: set[str], requested: set[str]) -> list[str]:
    """Names of the inbox files whose content is neither loaded nor already asked to be."""
    return sorted(name for name, (_, sha) in hashes.items() if sha not in loaded and sha not in requested)


def build_inbox_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Starts the daily job when a file whose content was never loaded lands in the "
                           "inbox (files are known by their sha256, as the loader knows them).")
    def inbox_sensor(context: dg.SensorEvaluationContext, workspace: WorkspaceResource):
        cursor = json.loads(context.cursor) if context.cursor else {}
        hashes = inbox_hashes(workspace.workspace.inbox, cursor.get("files", {}))
        present = {sha for _, sha in hashes.values()}
        requested = set(cursor.get("requested", [])) & present
        try:
            loaded = loaded_hashes(workspace.workspace.warehouse)
        except WarehouseBusyError:
            context.update_cursor(json.dumps({"files": hashes, "requested": sorted(requested)}))
            return dg.SkipReason("a run holds the warehouse; the inbox is looked at again on the next tick")
        new = files_to_load(hashes, loaded, requested)
        context.update_cursor(json.dumps({"files": hashes,
                                          "requested": sorted(requested | {hashes[n][1] for n in new})}))
        if not new:
            return dg.SkipReason("no new files in the inbox (every file is loaded or its run requested)")
        run_key = hashlib.sha1(json.dumps(sorted(hashes[n][1] for n in new)).encode()).hexdigest()[:16]
        return dg.RunRequest(run_key=run_key, tags={"voronka/new_files": ", ".join(new)[:200]})

    return inbox_sensor
