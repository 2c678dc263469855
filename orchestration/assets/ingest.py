"""Ingest: every file in the inbox not loaded before goes into raw.* (or raw.quarantine)."""

from datetime import datetime, timezone

import dagster as dg

from orchestration.resources import WorkspaceResource
from voronka import progress
from voronka.ingest.canonical import TABLES
from voronka.ingest.loader import load_files, table_counts
from voronka.ingest.summary import (
    alert_refused,
    file_line,
    problem_lines,
    write_summary,
)

RAW_KEYS = {table: dg.AssetKey(["raw", table]) for table in TABLES}


def inbox_files(workspace: WorkspaceResource) -> list:
    inbox = workspace.workspace.inbox
    return sorted(p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if inbox.exists() else []


@dg.multi_asset(
    specs=[dg.AssetSpec(key, group_name="ingest", owners=["team:data-engineering"],
                        description=f"raw.{table}: canonical {table} "
                        "from every export in the inbox (bad rows go to raw.quarantine)")
           for table, key in RAW_KEYS.items()],
    can_subset=False,
)
def raw_tables(context: dg.AssetExecutionContext, workspace: WorkspaceResource):
    files = inbox_files(workspace)
    config = workspace.config()
    with (progress.task("ingest", total=2 * len(files), note=f"{len(files)} file(s)") as bar,
          workspace.connect() as con):
        # voronka.yaml `sources`: an export whose name matches a pattern is read with its mapping.
        results = load_files(con, files, timezone=config.timezone, progress=bar.message,
                             sources=workspace.workspace.sources(), stage_outcomes=config.stage_outcomes)
        counts = table_counts(con)
        quarantined_total = con.execute("select count(*) from raw.quarantine").fetchone()[0]
    for r in results:
        if r.status == "refused":
            context.log.warning(f"refused {r.file}: {r.message}")
        elif r.status == "loaded":
            context.log.info(file_line(r))
    # `voronka run` reads this to print refused / mostly quarantined files and exit 1.
    write_summary(workspace.workspace.home / "logs", results, config.max_quarantined_share)
    alert_refused(results, config.alerts, workspace.workspace.resolve, workspace.workspace.alerts,
                  workspace.as_of or datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))
    problems = problem_lines(results, config.max_quarantined_share)
    loaded = [r for r in results if r.status == "loaded"]
    summary = {
        "files_in_inbox": len(files),
        "files_loaded_now": len(loaded),
        "files_refused": sum(r.status == "refused" for r in results),
        "rows_read_now": sum(r.rows_read for r in loaded),
        "rows_quarantined_now": sum(r.rows_quarantined for r in loaded),
        "quarantine_rows_total": quarantined_total,
        "rows_flagged_now": sum(sum(r.flagged.values()) for r in loaded),
        "problems": dg.MetadataValue.json(problems),
    }
    for table, key in RAW_KEYS.items():
        yield dg.MaterializeResult(asset_key=key, metadata={"dagster/row_count": counts[table], **summary})


@dg.asset_check(asset=RAW_KEYS["deals"], name="every_row_accounted_for", blocking=True,
                description="For every loaded file: rows_read = rows_loaded + rows_quarantined.")
def every_row_accounted_for(workspace: WorkspaceResource) -> dg.AssetCheckResult:
    with workspace.connect() as con:
        bad = con.execute(
            "select export_file, rows_read, rows_loaded, rows_quarantined from raw.ingest_log "
            "where rows_read <> rows_loaded + rows_quarantined"
        ).fetchall()
        files = con.execute("select count(*) from raw.ingest_log").fetchone()[0]
    return dg.AssetCheckResult(
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"files_checked": files, "files_not_reconciled": len(bad),
                  "examples": dg.MetadataValue.json([list(map(str, b)) for b in bad[:5]])},
    )
