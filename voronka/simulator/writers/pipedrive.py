"""Pipedrive: the stages JSON, the deal flow JSON (one `/v1/deals/{id}/flow` response per deal)
and the deals export (`Deal - …` headers, local times).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from voronka.simulator.writers.common import (
    EXPORT_TIMEZONES,
    _constant,
    _days,
    _int_text,
    _jobjects,
    _jquote,
    _jstr,
    _lookup,
    _nulls,
    _plain_number,
    _take,
    _text,
    _times,
    _View,
    _where,
    _write_csv,
    _write_json,
    _write_json_pages,
)


def write_pipedrive(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["pipedrive"]
    kind = v.kind
    is_open = kind == "open"
    stage_id = np.full(len(kind), -1, np.int64)
    stage_id[is_open] = 1 + np.arange(int(is_open.sum()))
    users = {name: 12_843_000 + 11 * i for i, name in enumerate(v.all_names("owners"))}
    user_id = _lookup(users, v.column("owner")).astype(np.int64)

    # Stages (GET /v1/stages): open stages only; won and lost are statuses in Pipedrive
    data = []
    for g, row in v.stages[is_open].iterrows():
        p = row["crm_probability"]
        data.append({
            "id": int(stage_id[g]), "order_nr": int(row["local"]) + 1, "name": row["stage"], "active_flag": True,
            "deal_probability": None if pd.isna(p) else int(round(100 * float(p))),
            "pipeline_id": int(row["pipe"]) + 1, "rotten_flag": False, "rotten_days": None,
            "add_time": "2021-03-01 09:00:00", "update_time": "2024-01-15 12:00:00",
            "pipeline_name": row["pipeline"], "pipeline_deal_probability": True,
        })
    written = [_write_json(inbox / "pipedrive_stages.json", {
        "success": True, "data": data,
        "additional_data": {"pagination": {"start": 0, "limit": 500, "more_items_in_collection": False}},
    })]

    # Flow (GET /v1/deals/{id}/flow, newest first), one response per deal: a move between open
    # stages is a stage_id change; into won/lost a status change; out of lost a reopening (the
    # deal is reopened in the stage it was lost in, as Pipedrive does).
    moves = np.flatnonzero(~v.ev_first)
    deal = v.ev_deal[moves]
    g, prev = v.ev_g[moves], v.ev_prev_g[moves]
    is_stage = is_open[g] & is_open[prev]
    moves_by_deal = np.lexsort((-moves, deal))  # per deal, newest first
    moves, deal, g, prev, is_stage = (a[moves_by_deal] for a in (moves, deal, g, prev, is_stage))
    t = v.ev_t[moves]
    status_new = np.where(kind[g] == "won", "won", np.where(kind[g] == "lost", "lost", "open")).astype(object)
    status_old = np.where(kind[prev] == "lost", "lost", "open").astype(object)
    old = _where(is_stage, _jquote(_int_text(stage_id[prev])), _jquote(status_old))
    new = _where(is_stage, _jquote(_int_text(stage_id[g])), _jquote(status_new))
    when = _jquote(_times(t, "%Y-%m-%d %H:%M:%S"))
    item_id = np.empty(len(t), np.int64)
    item_id[np.argsort(t, kind="stable")] = 1 + np.arange(len(t))  # ids grow with time
    change = [
        ("id", _int_text(80_000_000 + item_id)),
        ("item_id", _int_text(v.native_int[deal])),
        ("user_id", _int_text(user_id[deal])),
        ("field_key", _jquote(_where(is_stage, "stage_id", "status"))),
        ("old_value", old),
        ("new_value", new),
        ("is_bulk_update_flag", "null"),
        ("log_time", when),
        ("change_source", '"app"'),
        ("change_source_user_agent", "null"),
        ("additional_data", "{}"),
    ]

    def items(lo: int, hi: int) -> pa.Array:
        data = _jobjects(change, lo, hi)
        return _jobjects([("object", '"dealChange"'), ("timestamp", when.slice(lo, hi - lo)), ("data", data)])

    counts = np.bincount(deal, minlength=v.n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    status = np.where(kind[v.deal_g] == "won", "won", np.where(kind[v.deal_g] == "lost", "lost", "open"))
    # related_objects.deal: the deal as it is now (its open stage, pipeline, status, value)
    related = [
        '],"additional_data":{"pagination":{"start":0,"limit":100,"more_items_in_collection":false}},'
        '"related_objects":{"deal":{"', _int_text(v.native_int), '":{"id":', _int_text(v.native_int),
        ',"title":', _jstr(v.column("title")), ',"status":', _jstr(status.astype(object)),
        ',"value":', _plain_number(v.deals["amount"].to_numpy(float)), ',"currency":', _jstr(v.column("currency")),
        ',"stage_id":', _int_text(stage_id[v.last_open_g]), ',"pipeline_id":', _int_text(v.deal_pipe + 1),
        '}},"user":{"', _int_text(user_id), '":{"id":', _int_text(user_id), ',"name":', _jstr(v.column("owner")),
        ',"has_pic":0,"pic_hash":null,"active_flag":true}}}}',
    ]
    written.append(_write_json_pages(
        inbox / "pipedrive_deals_flow.json", bounds, items,
        lambda i: '{"success":true,"data":[',
        lambda i: pc.binary_join_element_wise(
            *[part if isinstance(part, str) else part.take(pa.array(i)) for part in related], "")))

    # Deals export: a closed deal keeps its last open stage in "Deal - Stage" and gets a status
    n = v.n
    local = "%Y-%m-%d %H:%M:%S"
    status = np.where(kind[v.deal_g] == "won", "Won", np.where(kind[v.deal_g] == "lost", "Lost", "Open")).astype(object)
    won, lost = status == "Won", status == "Lost"
    stage_names = v.stages["stage"].to_numpy(object)
    amount = v.deals["amount"].to_numpy(float)
    empty = _nulls(n)
    columns = [
        ("Deal - ID", _int_text(v.native_int)),
        ("Deal - Title", _text(v.column("title"))),
        ("Deal - Creator", _text(v.column("owner"))),
        ("Deal - Owner", _text(v.column("owner"))),
        ("Deal - Value", _plain_number(amount)),
        ("Deal - Currency", _text(v.column("currency"))),
        ("Deal - Weighted value", _plain_number(amount * v.stages["crm_probability"].fillna(0).to_numpy(float)[v.last_open_g])),
        ("Deal - Probability", empty),
        ("Deal - Organization", empty),
        ("Deal - Pipeline", _text(v.column("pipeline"))),
        ("Deal - Contact person", empty),
        ("Deal - Stage", _take(stage_names, v.last_open_g)),
        ("Deal - Label", empty),
        ("Deal - Status", _text(status)),
        ("Deal - Deal created", _times(v.created, local, tz)),
        ("Deal - Update time", _times(v.last_change, local, tz)),
        ("Deal - Last stage change", _times(np.where(v.last_open_t > v.created, v.last_open_t, -1), local, tz)),
        ("Deal - Next activity date", empty),
        ("Deal - Won time", _times(np.where(won, v.closed, -1), local, tz)),
        ("Deal - Lost time", _times(np.where(lost, v.closed, -1), local, tz)),
        ("Deal - Deal closed on", _times(np.where(won | lost, v.closed, -1), local, tz)),
        ("Deal - Lost reason", _text(np.where(lost, v.column("lost_reason"), None))),
        ("Deal - Visible to", _constant("Owner's visibility group", n)),
        ("Deal - Total activities", _int_text(np.zeros(n, np.int64))),
        ("Deal - Expected close date", _days(v.expected_day)),
        ("Deal - Source channel", _text(v.column("lead_source"))),
        ("Deal - Source origin", _constant("Manually created", n)),
        ("Deal - Segment", _text(v.column("segment"))),
        ("Deal - Region", _text(v.column("region"))),
        ("Deal - Product", _text(v.column("product"))),
    ]
    written.append(_write_csv(inbox / f"deals-{v.company.end_date:%Y%m%d}.csv", columns))
    return written, v.native_int.astype(str)
