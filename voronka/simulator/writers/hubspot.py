"""HubSpot: the pipelines JSON and the UI deals export with `Date entered "<Stage> (<Pipeline>)"`
columns (local times to the minute).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from voronka.simulator.writers.common import (
    EXPORT_TIMEZONES,
    _constant,
    _days,
    _int_text,
    _plain_number,
    _text,
    _times,
    _View,
    _where,
    _write_csv,
    _write_json,
)


def write_hubspot(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["hubspot"]
    kind = v.kind
    pipeline_ids = ["default"] + [str(31_224_100 + 7 * p) for p in range(1, len(v.pipelines))]
    stage_ids = []
    for g, row in v.stages.iterrows():
        if row["pipe"] == 0 and row["kind"] in ("won", "lost"):
            stage_ids.append("closed" + row["kind"])
        else:
            stage_ids.append(str(107_000_000 + 1000 * int(row["pipe"]) + int(row["local"])))

    # Pipelines (GET /crm/v3/pipelines/deals)
    results = []
    for p, name in enumerate(v.pipelines):
        st = v.stages[v.stages["pipe"] == p]
        results.append({
            "label": name, "displayOrder": p, "id": pipeline_ids[p], "archived": False,
            "createdAt": "2021-03-01T09:00:00.000Z", "updatedAt": "2024-01-15T12:00:00.000Z",
            "stages": [{
                "label": row["stage"], "displayOrder": int(row["local"]),
                "metadata": {"isClosed": "true" if row["kind"] != "open" else "false",
                             "probability": _probability_text(row)},
                "id": stage_ids[g], "archived": False, "createdAt": "2021-03-01T09:00:00.000Z",
                "updatedAt": "2024-01-15T12:00:00.000Z", "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            } for g, row in st.iterrows()],
        })
    written = [_write_json(inbox / "hubspot_pipelines_deals.json", {"results": results})]

    # Deals export ("all properties"); times are the portal's wall clock, to the minute
    minute = "%Y-%m-%d %H:%M"
    n = v.n
    closed = v.closed >= 0
    won = kind[v.deal_g] == "won"
    lost = kind[v.deal_g] == "lost"
    close = _where(closed, _times(v.closed, minute, tz), _days(v.expected_day, "%Y-%m-%d 00:00"))
    columns = [
        ("Record ID", _int_text(v.native_int)),
        ("Deal Name", _text(v.column("title"))),
        ("Deal Stage", _text(v.column("current_stage"))),
        ("Pipeline", _text(v.column("pipeline"))),
        ("Amount", _plain_number(v.deals["amount"].to_numpy(float))),
        ("Currency", _text(v.column("currency"))),
        ("Close Date", close),
        ("Create Date", _times(v.created, minute, tz)),
        ("Last Modified Date", _times(v.last_change, minute, tz)),
        ("Deal owner", _text(v.column("owner"))),
        ("Deal Type", _constant("New Business", n)),
        ("Is Closed Won", _where(won, "true", "false")),
        ("Is closed", _where(closed, "true", "false")),
        ("Closed Lost Reason", _text(np.where(lost, v.column("lost_reason"), None))),
        ("Source", _text(v.column("lead_source"))),
        ("Segment", _text(v.column("segment"))),
        ("Region", _text(v.column("region"))),
        ("Product", _text(v.column("product"))),
    ]
    # One "Date entered" per stage: the latest time the deal entered it.
    latest = np.full((n, len(v.stages)), -1, np.int64)
    np.maximum.at(latest, (v.ev_deal, v.ev_g), v.ev_t)
    for g, row in v.stages.iterrows():
        columns.append((f'Date entered "{row["stage"]} ({row["pipeline"]})"', _times(latest[:, g], minute, tz)))
    written.append(_write_csv(inbox / f"hubspot-crm-exports-all-deals-{v.company.end_date:%Y-%m-%d}.csv", columns))
    return written, v.native_int.astype(str)


def _probability_text(row) -> str:
    if row["kind"] == "won":
        return "1.0"
    if row["kind"] == "lost":
        return "0.0"
    p = row["crm_probability"]
    return "" if pd.isna(p) else repr(round(float(p), 4))
