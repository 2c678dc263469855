"""What a load tells the user: one line per file that needs a look, an alert for inbox files
refused, and the summary `voronka run` reads after the ingest asset ran (no Dagster here).

A file is a problem when it was refused (nothing of it loaded) or when more than
`max_quarantined_share` of its rows were quarantined (the rest did load). Either makes
`voronka ingest` and `voronka run` exit 1 with these lines.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from voronka.ingest.loader import FileResult

SUMMARY_FILE = "last_ingest.json"  # under <workspace>/logs/


def problem_lines(results: list[FileResult], max_share: float) -> list[str]:
    """One line per refused file and per file with too much of it quarantined."""
    lines = []
    for r in results:
        if r.status == "refused":
            message = r.message.removeprefix(f"file {r.file}: ")  # ExportFormatError names the file
            lines.append(f"refused {r.file}: {message}")
        elif r.status == "loaded" and r.rows_read and r.quarantined_share > max_share:
            reasons = "; ".join(f"{reason} ({n})" for reason, n in r.top_reasons)
            lines.append(f"{r.file}: {r.rows_quarantined} of {r.rows_read} rows quarantined "
                         f"({r.quarantined_share:.0%}, above the {max_share:.0%} allowed), the other "
                         f"{r.rows_loaded} loaded; top reasons: {reasons}; see `voronka quarantine --file {r.file}`")
    return lines


def file_line(r: FileResult) -> str:
    """'deals.csv: read 100, loaded 98, quarantined 2; flagged: is_close_date_only 12'."""
    line = f"{r.file}: read {r.rows_read}, loaded {r.rows_loaded}, quarantined {r.rows_quarantined}"
    flagged = r.flagged_text()
    return line + (f"; flagged: {flagged}" if flagged else "")


def write_summary(logs_dir: Path, results: list[FileResult], max_share: float) -> Path:
    """The ingest asset's results for `voronka run`: every file's counts and the problem lines."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    path = logs_dir / SUMMARY_FILE
    path.write_text(json.dumps({
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": [r.as_dict() for r in results],
        "problems": problem_lines(results, max_share),
    }, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return path


def read_summary(logs_dir: Path) -> dict | None:
    try:
        return json.loads((logs_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def alert_refused(results: list[FileResult], sinks, resolve_path, alerts_dir: Path, as_of: str) -> int:
    """An alert to the file sinks (JSON lines; the default alerts/alerts.jsonl when none is
    configured) for each inbox file refused, once per file content; returns alerts written."""
    from voronka.alerts import Alert, deliver, record_deliveries

    refused = [r for r in results if r.status == "refused"]
    if not refused:
        return 0
    seen_path = alerts_dir / "refused_files.json"
    try:
        seen = set(json.loads(seen_path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        seen = set()
    new = [r for r in refused if f"{r.file}|{r.message}" not in seen]
    if not new:
        return 0
    alert = Alert(kind="inbox_file_refused", severity="error", as_of=as_of,
                  title=f"{len(new)} inbox file(s) refused: nothing of them was loaded",
                  lines=[f"{r.file}: {r.message}" for r in new],
                  rows=[{"file": r.file, "reason": r.message} for r in new])
    file_sinks = [s for s in sinks if s.get("type") == "file"] or [{"type": "file"}]
    deliveries = deliver(alert, file_sinks, resolve_path, attempts=1)
    record_deliveries(alerts_dir / "deliveries.jsonl", alert, deliveries)
    seen_path.parent.mkdir(parents=True, exist_ok=True)
    seen_path.write_text(json.dumps(sorted(seen | {f"{r.file}|{r.message}" for r in new}), ensure_ascii=False),
                         encoding="utf-8")
    return len(new)
