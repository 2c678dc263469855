"""Bitrix24: REST `crm.category.list`, `crm.status.list`, `crm.stagehistory.list` and
`crm.deal.list` (lists of pages of 50).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voronka.simulator.writers.common import (
    EXPORT_TIMEZONES,
    _decimal,
    _int_text,
    _iso_offset,
    _jobjects,
    _jquote,
    _jstr,
    _local,
    _lookup,
    _page_bounds,
    _take,
    _View,
    _where,
    _write_json,
    _write_json_pages,
)

# Bitrix24 source ids for the demo's lead sources (a standard id where one fits, UC_ otherwise);
# other names get UC_SOURCE_<n>. One id per name, so marketing spend still joins.
BITRIX_SOURCES = {
    "Сайт": "WEB", "Рекомендация": "RECOMMENDATION", "Холодный звонок": "UC_COLD_CALL",
    "Выставка": "TRADE_SHOW", "Реклама": "ADVERTISING", "Входящий звонок": "CALL",
    "Website": "UC_WEBSITE", "Referral": "UC_REFERRAL", "Outbound": "UC_OUTBOUND", "Event": "UC_EVENT",
    "Paid ads": "UC_PAID_ADS", "Partner": "PARTNER",
}
BITRIX_STAGE_IDS = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE")


def _bitrix_stage_ids(v: _View) -> tuple[np.ndarray, np.ndarray]:
    """STATUS_ID per stage (C<n>: prefixed outside category 0) and the category of each stage."""
    ids = []
    for g, row in v.stages.iterrows():
        cat = int(row["pipe"])
        if row["kind"] == "won":
            bare = "WON"
        elif row["kind"] == "lost":
            bare = "LOSE"
        elif row["local"] < len(BITRIX_STAGE_IDS):
            bare = BITRIX_STAGE_IDS[int(row["local"])]
        else:
            bare = "UC_" + hashlib.sha1(f"{cat}:{row['local']}".encode()).hexdigest()[:6].upper()
        ids.append(bare if cat == 0 else f"C{cat}:{bare}")
    return np.array(ids, dtype=object), v.stages["pipe"].to_numpy(np.int64)


def bitrix_source_ids(v: _View) -> dict:
    names = v.all_names("lead_sources")
    out = {}
    for i, name in enumerate(names):
        code = BITRIX_SOURCES.get(name, f"UC_SOURCE_{i + 1}")
        out[name] = code if code not in out.values() else f"UC_SOURCE_{i + 1}"
    return out


def _bitrix_users(v: _View) -> dict:
    return {name: 1 + 2 * i for i, name in enumerate(v.all_names("owners"), start=1)}


def write_bitrix24(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["bitrix24"]
    kind = v.kind
    stage_id, category = _bitrix_stage_ids(v)
    semantic = np.where(kind == "won", "S", np.where(kind == "lost", "F", "P")).astype(object)
    sources = bitrix_source_ids(v)
    users = _bitrix_users(v)
    time_block = '"time":{"start":1700000000.1,"finish":1700000000.2,"duration":0.1,"processing":0.05}'

    # crm.category.list (entityTypeId 2): the names of the pipelines, category 0 the default
    categories = [{"id": p, "name": name, "sort": 100 * (p + 1), "entityTypeId": 2,
                   "isDefault": "Y" if p == 0 else "N"} for p, name in enumerate(v.pipelines)]
    written = [_write_json(inbox / "bitrix24_crm.category.list.json",
                           {"result": {"categories": categories}, "total": len(categories),
                            "time": {"start": 1700000000.1, "finish": 1700000000.2}})]

    # crm.status.list: the deal stages of every category, and the lead sources
    statuses, n_status = [], 0
    for g, row in v.stages.iterrows():
        n_status += 1
        cat = int(row["pipe"])
        statuses.append({
            "ID": str(n_status), "ENTITY_ID": "DEAL_STAGE" if cat == 0 else f"DEAL_STAGE_{cat}",
            "STATUS_ID": stage_id[g], "NAME": row["stage"], "NAME_INIT": row["stage"] if row["kind"] != "open" else "",
            "SORT": str({"won": 60, "lost": 70}.get(row["kind"], 10 * (int(row["local"]) + 1))),
            "SYSTEM": "Y" if row["kind"] != "open" or row["local"] == 0 else "N",
            "CATEGORY_ID": str(cat), "COLOR": {"won": "#7BD500", "lost": "#FF5752"}.get(row["kind"], "#39A8EF"),
            "SEMANTICS": {"won": "S", "lost": "F"}.get(row["kind"]),
            "EXTRA": {"SEMANTICS": {"won": "success", "lost": "failure"}.get(row["kind"], "process"),
                      "COLOR": "#39A8EF"},
        })
    for name, code in sources.items():
        n_status += 1
        statuses.append({"ID": str(n_status), "ENTITY_ID": "SOURCE", "STATUS_ID": code, "NAME": name,
                         "NAME_INIT": "", "SORT": str(10 * n_status), "SYSTEM": "N", "CATEGORY_ID": None,
                         "COLOR": None, "SEMANTICS": None})
    written.append(_write_json(inbox / "bitrix24_crm.status.list.json",
                               {"result": statuses, "total": len(statuses),
                                "time": {"start": 1700000000.1, "finish": 1700000000.2}}))

    # crm.stagehistory.list (entityTypeId 2): every stage a deal entered, creation included
    order = np.lexsort((np.arange(len(v.ev_t)), v.ev_t))
    deal = v.ev_deal[order]
    g = v.ev_g[order]
    type_id = np.where(v.ev_first[order], 1, np.where(kind[g] == "open", 2, 3))
    fields = [
        ("ID", _int_text(1 + np.arange(len(order)))),
        ("TYPE_ID", _int_text(type_id)),
        ("OWNER_ID", _int_text(v.native_int[deal])),
        ("CREATED_TIME", _jquote(_iso_offset(v.ev_t[order], tz))),
        ("CATEGORY_ID", _int_text(category[g])),
        ("STAGE_SEMANTIC_ID", _jquote(_take(semantic, g))),
        ("STAGE_ID", _jquote(_take(stage_id, g))),
    ]
    n_items = len(order)
    bounds = _page_bounds(n_items, 50)
    written.append(_write_json_pages(
        inbox / "bitrix24_crm.stagehistory.list.json", bounds,
        lambda lo, hi: _jobjects(fields, lo, hi),
        lambda i: '{"result":{"items":[',
        lambda i: pc.binary_join_element_wise(
            "]},", _bitrix_next(bounds, i, n_items), f'"total":{n_items},{time_block}}}', "")))

    # crm.deal.list with select ["*", "UF_*"]
    n = v.n
    closed = v.closed >= 0
    owner_id = _int_text(_lookup(users, v.column("owner")).astype(np.int64))
    lost = kind[v.deal_g] == "lost"
    # CLOSEDATE: the close of a closed deal, the expected close (a date) of an open one
    close_text = _where(closed, _iso_offset(v.closed, tz), _expected_midnight(v.expected_day, tz))
    modify = _iso_offset(v.last_change, tz)
    fields = [
        ("ID", _jquote(_int_text(v.native_int))),
        ("TITLE", _jstr(v.column("title"))),
        ("TYPE_ID", '"SALE"'),
        ("STAGE_ID", _jquote(_take(stage_id, v.deal_g))),
        ("PROBABILITY", "null"),
        ("CURRENCY_ID", _jquote(v.column("currency"))),
        ("OPPORTUNITY", _jquote(_decimal(v.deals["amount"].to_numpy(float)))),
        ("IS_MANUAL_OPPORTUNITY", '"Y"'),
        ("TAX_VALUE", '"0.00"'),
        ("COMPANY_ID", '"0"'),
        ("CONTACT_ID", "null"),
        ("BEGINDATE", _jquote(_expected_midnight(_local(v.created, tz) // 86_400, tz))),
        ("CLOSEDATE", _jquote(close_text)),
        ("ASSIGNED_BY_ID", _jquote(owner_id)),
        ("CREATED_BY_ID", _jquote(owner_id)),
        ("MODIFY_BY_ID", _jquote(owner_id)),
        ("DATE_CREATE", _jquote(_iso_offset(v.created, tz))),
        ("DATE_MODIFY", _jquote(modify)),
        ("OPENED", '"Y"'),
        ("CLOSED", _jquote(_where(closed, "Y", "N"))),
        ("COMMENTS", "null"),
        ("CATEGORY_ID", _jquote(_int_text(v.deal_pipe))),
        ("STAGE_SEMANTIC_ID", _jquote(_take(semantic, v.deal_g))),
        ("IS_NEW", _jquote(_where(v.last_change == v.created, "Y", "N"))),
        ("IS_RETURN_CUSTOMER", '"N"'),
        ("SOURCE_ID", _jquote(_lookup(sources, v.column("lead_source")))),
        ("SOURCE_DESCRIPTION", "null"),
        ("MOVED_BY_ID", _jquote(owner_id)),
        ("MOVED_TIME", _jquote(modify)),
        ("LAST_ACTIVITY_TIME", _jquote(modify)),
        ("UTM_SOURCE", "null"),
        ("UF_CRM_SEGMENT", _jstr(v.column("segment"))),
        ("UF_CRM_REGION", _jstr(v.column("region"))),
        ("UF_CRM_PRODUCT", _jstr(v.column("product"))),
        ("UF_CRM_LOSS_REASON", _jstr(np.where(lost, v.column("lost_reason"), None))),
    ]
    bounds = _page_bounds(n, 50)
    written.append(_write_json_pages(
        inbox / "bitrix24_crm.deal.list.json", bounds,
        lambda lo, hi: _jobjects(fields, lo, hi),
        lambda i: '{"result":[',
        lambda i: pc.binary_join_element_wise("],", _bitrix_next(bounds, i, n), f'"total":{n},{time_block}}}', "")))
    return written, v.native_int.astype(str)


def _bitrix_next(bounds: np.ndarray, pages: np.ndarray, total: int) -> pa.Array:
    """`"next":<offset>,` on every page but the last."""
    nxt = bounds[pages + 1]
    return _where(nxt < total, pc.binary_join_element_wise('"next":', _int_text(nxt), ",", ""), "")


def _expected_midnight(days: np.ndarray, tz: str) -> pa.Array:
    """A date field as Bitrix24 returns it: local midnight with the offset (null if -1)."""
    days = np.asarray(days, np.int64)
    none = days < 0
    # local midnight of that calendar day: the UTC instant whose local wall time is 00:00
    guess = np.where(none, 0, days * 86_400)
    offset = _local(guess, tz) - guess
    return _iso_offset(np.where(none, -1, guess - offset), tz)
