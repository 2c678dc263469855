"""The inbox sensor: a new or changed export file in the inbox starts the daily job."""


import hashlib
import json

import dagster as dg

from orchestration.resources import WorkspaceResource


def inbox_fingerprint(workspace: WorkspaceResource) -> dict[str, str]:
    inbox = workspace.workspace.inbox
    if not inbox.exists():
        return {}
    return {p.name: f"{p.stat().st_size}:{p.stat().st_mtime_ns}"
            for p in sorted(inbox.iterdir()) if p.is_file() and not p.name.startswith(".")}


def build_inbox_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
               description="Starts the daily job when a new or changed file lands in the inbox.")
    def inbox_sensor(context: dg.SensorEvaluationContext, workspace: WorkspaceResource):
        seen = json.loads(context.cursor) if context.cursor else {}
        now = inbox_fingerprint(workspace)
        new = sorted(name for name, stamp in now.items() if seen.get(name) != stamp)
        if not new:
            return dg.SkipReason("no new files in the inbox")
        context.update_cursor(json.dumps(now))
        run_key = hashlib.sha1(json.dumps({n: now[n] for n in new}).encode()).hexdigest()[:16]
        return dg.RunRequest(run_key=run_key, tags={"voronka/new_files": ", ".join(new)[:200]})

    return inbox_sensor
