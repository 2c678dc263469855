"""amoCRM: the deals export (CSV with BOM, Russian headers, local times of the account's zone),
the API v4 pipelines JSON and the API v4 events (pages of 100).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from voronka.simulator.writers.common import (
    EXPORT_TIMEZONES,
    _int_text,
    _jobjects,
    _jquote,
    _lookup,
    _nulls,
    _page_bounds,
    _text,
    _times,
    _View,
    _write_csv,
    _write_json,
    _write_json_pages,
)

AMO_ACCOUNT = 29_514_201
AMO_HOST = "https://voronka-demo.amocrm.ru"


def write_amocrm(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["amocrm"]
    kind = v.kind
    pipeline_ids = np.array([5_437_912 + 3 * p for p in range(len(v.pipelines))])
    status_id = np.where(kind == "won", 142, np.where(kind == "lost", 143,
                                                      48_112_005 + 7 * np.arange(len(kind))))
    owners = v.all_names("owners")
    user_id = {name: 7_830_211 + 17 * i for i, name in enumerate(owners)}

    # Pipelines (GET /api/v4/leads/pipelines)
    pipelines = []
    for p, name in enumerate(v.pipelines):
        st = v.stages[v.stages["pipe"] == p]
        statuses = []
        for g, row in st.iterrows():
            terminal = row["kind"] != "open"
            statuses.append({
                "id": int(status_id[g]), "name": row["stage"],
                "sort": {"won": 10000, "lost": 11000}.get(row["kind"], 10 * (int(row["local"]) + 1)),
                "is_editable": not terminal, "pipeline_id": int(pipeline_ids[p]),
                "color": {"won": "#CCFF66", "lost": "#D5D8DB"}.get(row["kind"], "#99ccff"),
                "type": 0, "account_id": AMO_ACCOUNT,
                "_links": {"self": {"href": f"{AMO_HOST}/api/v4/leads/pipelines/{pipeline_ids[p]}/statuses/{status_id[g]}"}},
            })
        pipelines.append({
            "id": int(pipeline_ids[p]), "name": name, "sort": 1 + p, "is_main": p == 0,
            "is_unsorted_on": False, "is_archive": False, "account_id": AMO_ACCOUNT,
            "_links": {"self": {"href": f"{AMO_HOST}/api/v4/leads/pipelines/{pipeline_ids[p]}"}},
            "_embedded": {"statuses": statuses},
        })
    written = [_write_json(inbox / "amocrm_leads_pipelines.json", {
        "_total_items": len(pipelines),
        "_links": {"self": {"href": f"{AMO_HOST}/api/v4/leads/pipelines"}},
        "_embedded": {"pipelines": pipelines},
    })]

    # Events (GET /api/v4/events?filter[type]=lead_status_changed): every move; the creation of
    # a deal is a lead_added event, not a status change, so it is not in this list.
    moves = np.flatnonzero(~v.ev_first)
    moves = moves[np.lexsort((moves, v.ev_t[moves]))]  # the API pages through events by time
    deal = v.ev_deal[moves]
    pipe_id = pipeline_ids[v.deal_pipe[deal]].astype(str)

    def lead_status(status: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise('[{"lead_status":{"id":', _int_text(status),
                                           ',"pipeline_id":', _text(pipe_id), "}}]", "")

    fields = [
        ("id", _jquote(pc.binary_join_element_wise("01jf", _int_text(48_000_000 + np.arange(len(moves))), ""))),
        ("type", '"lead_status_changed"'),
        ("entity_id", _int_text(v.native_int[deal])),
        ("entity_type", '"lead"'),
        ("created_by", _int_text(_lookup(user_id, v.column("owner")[deal]).astype(np.int64))),
        ("created_at", _int_text(v.ev_t[moves])),
        ("value_after", lead_status(status_id[v.ev_g[moves]])),
        ("value_before", lead_status(status_id[v.ev_prev_g[moves]])),
        ("account_id", str(AMO_ACCOUNT)),
    ]
    bounds = _page_bounds(len(moves), 100)
    written.append(_write_json_pages(
        inbox / "amocrm_events_lead_status_changed.json", bounds,
        lambda lo, hi: _jobjects(fields, lo, hi),
        lambda i: pc.binary_join_element_wise(
            '{"_page":', _int_text(i + 1), f',"_links":{{"self":{{"href":"{AMO_HOST}/api/v4/events?'
            'filter%5Btype%5D=lead_status_changed&limit=100&page=', _int_text(i + 1),
            '"}},"_embedded":{"events":[', ""),
        lambda i: "]}}"))

    # Deals export (Сделки -> Экспорт), in the order the UI lists them (newest first)
    n = v.n
    owner = _text(v.column("owner"))
    closed = v.closed >= 0
    lost = kind[v.deal_g] == "lost"
    empty = _nulls(n)
    columns = [
        ("ID", _int_text(v.native_int)),
        ("Название сделки", _text(v.column("title"))),
        ("Бюджет ", _amo_money(v.deals["amount"].to_numpy(float))),
        ("Ответственный", owner),
        ("Дата создания сделки", _times(v.created, "%d.%m.%Y %H:%M:%S", tz)),
        ("Кем создана сделка", owner),
        ("Дата редактирования", _times(v.last_change, "%d.%m.%Y %H:%M:%S", tz)),
        ("Кем редактирована", owner),
        ("Дата закрытия", _times(np.where(closed, v.closed, -1), "%d.%m.%Y %H:%M:%S", tz, missing="не закрыта")),
        ("Теги", empty),
        ("Примечание", empty), ("Примечание 2", empty), ("Примечание 3", empty),
        ("Примечание 4", empty), ("Примечание 5", empty),
        ("Этап сделки", _text(v.column("current_stage"))),
        ("Воронка", _text(v.column("pipeline"))),
        ("Полное имя контакта", empty), ("Компания контакта", empty),
        ("Ответственный за контакт", owner), ("Компания", empty),
        ("Рабочий телефон (контакт)", empty), ("Рабочий email (контакт)", empty),
        ("Город", _text(v.column("region"))),
        ("Источник", _text(v.column("lead_source"))),
        ("Должность (контакт)", empty),
        ("Товар", _text(v.column("product"))),
        ("Сегмент", _text(v.column("segment"))),
        ("Валюта", _text(v.column("currency"))),
        ("Причина отказа", _text(np.where(lost, v.column("lost_reason"), None))),
        ("utm_source", empty), ("utm_medium", empty), ("utm_campaign", empty), ("utm_term", empty),
        ("utm_content", empty), ("utm_referrer", empty), ("_ym_uid", empty), ("roistat", empty),
        ("gclid", empty), ("yclid", empty), ("fbclid", empty),
        ("Товар", empty), ("Источник", empty), ("roistat", empty),
    ]
    newest_first = np.argsort(-v.native_int, kind="stable")
    columns = [(h, c.take(pa.array(newest_first))) for h, c in columns]
    written.append(_write_csv(inbox / f"amocrm_export_leads_{v.company.end_date:%Y-%m-%d}.csv", columns, bom=True))
    return written, v.native_int.astype(str)


def _amo_money(amount: np.ndarray) -> pa.Array:
    """Budget as amoCRM writes it: '1 500 000', '48 500,50'."""
    text = pd.Series(amount).map(lambda x: f"{x:,.2f}".replace(",", " ").replace(".", ","))
    text = text.str.replace(r",00$", "", regex=True)
    return _text(text.to_numpy(object))
