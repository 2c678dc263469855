"""amoCRM / Kommo: the deals export (CSV/XLSX with Russian headers), the API v4 events
(`lead_status_changed`) and the API v4 pipelines (stage names, order, won 142 / lost 143).

Deals export: local times `DD.MM.YYYY HH:MM:SS` in the account's time zone (the `timezone`
setting), `Дата закрытия` = `не закрыта` for open deals. A won deal is in stage 142
(`Успешно реализовано`), a lost one in 143 (`Закрыто и не реализовано`); with the pipelines JSON
beside the export the stage ids decide, without it the default names do (renamed terminal stages
then need the pipelines JSON). Pipelines are named as in `Воронка`; stages by name.
"""

from __future__ import annotations

import pandas as pd

from voronka.errors import ExportFormatError
from voronka.ingest.readers import jsonfile, parsers
from voronka.ingest.readers.formats import Format, companion_files, records_from_json
from voronka.ingest.readers.frames import (
    creation_events,
    deals_frame,
    empty_events,
    events_frame,
    finish,
    newest,
    stages_frame,
)
from voronka.ingest.readers.rawtable import RawJson, RawTable
from voronka.ingest.readers.rows import Context, Rows, map_unique, norm
from voronka.ingest.readers.stage_order import infer_stages

SOURCE = "amocrm"
WON_STATUS, LOST_STATUS = 142, 143
DEFAULT_PIPELINE = "Воронка"
WON_NAMES = {"успешно реализовано", "closed - won", "closed – won", "closed won", "успешно"}
LOST_NAMES = {"закрыто и не реализовано", "closed - lost", "closed – lost", "closed lost",
              "не реализовано"}
TYPICAL_STAGES = [
    "Неразобранное", "Первичный контакт", "Новый лид", "Взяли в работу", "Квалифицирован",
    "Переговоры", "Отправлено КП", "Принимают решение", "Согласование договора",
    "Реквизиты получены", "Договор/счет отправлен", "Оплата получена",
]
NOT_CLOSED = ("не закрыта", "не закрыто", "not closed")


def stage_kind_by_name(stages: pd.Series) -> pd.Series:
    return map_unique(stages.fillna(""), _kind_of_names)


def _kind_of_names(stages: pd.Series) -> pd.Series:
    n = stages.map(norm)
    kind = pd.Series("open", index=stages.index, dtype=object)
    kind[n.isin(WON_NAMES) | n.str.contains("успешно реализ", regex=False)] = "won"
    kind[n.isin(LOST_NAMES) | n.str.contains("не реализ", regex=False)] = "lost"
    return kind


# --------------------------------------------------------------------------------------------
# Deals export


def read_deals(table: RawTable, ctx: Context):
    rows = Rows(table, ctx)
    id_col = rows.column("ID", required=True, field="native_id")
    stage_col = rows.column("Этап сделки", "Статус сделки", required=True, field="current_stage")
    created_col = rows.column("Дата создания сделки", "Дата создания", required=True, field="created_at")
    pipeline_col = rows.column("Воронка")
    title_col = rows.column("Название сделки", "Сделка")
    amount_col = rows.column("Бюджет", "Бюджет сделки")
    owner_col = rows.column("Ответственный")
    closed_col = rows.column("Дата закрытия")
    modified_col = rows.column("Дата редактирования", "Дата изменения")
    source_col = rows.column("Источник")
    product_col = rows.column("Товар")
    region_col = rows.column("Город")
    reason_col = rows.column("Причина отказа")
    currency_col = rows.column("Валюта")

    native = rows.require(id_col, "native_id")
    stage = rows.require(stage_col, "current_stage")
    companions = _pipelines_beside(ctx)
    pipeline = rows.text(pipeline_col)
    if pipeline_col is None:
        names = companions["pipeline"].unique() if companions is not None else []
        pipeline = pipeline.fillna(names[0] if len(names) == 1 else DEFAULT_PIPELINE)
    else:
        rows.reject(pipeline.isna(), f"missing pipeline (column {pipeline_col!r})")
    created = rows.timestamps(created_col, "created_at")
    closed = rows.timestamps(closed_col, "closed_at", null_words=NOT_CLOSED)
    amount = rows.numbers(amount_col, "amount")
    modified, _ = parsers.parse_timestamps(rows.raw[modified_col], ctx.timezone) if modified_col \
        else (None, None)

    kind = stage_kind_by_name(stage)
    if companions is not None:
        known = companions.set_index(["pipeline", "stage"])["kind"]
        known = known[~known.index.duplicated()]
        looked_up = pd.Series(pd.MultiIndex.from_arrays([pipeline, stage]).map(known), index=stage.index)
        kind = looked_up.where(looked_up.notna(), kind)
    outcome = kind
    rows.reject_duplicates(native, id_col)

    good = rows.good.to_numpy()
    currency = rows.text_or(currency_col, ctx.currency)
    deals = deals_frame(
        SOURCE, rows,
        native_id=native, pipeline=pipeline, title=rows.text(title_col), owner=rows.text(owner_col),
        lead_source=rows.text(source_col), region=rows.text(region_col), product=rows.text(product_col),
        amount=amount, currency=currency, created_at=created,
        closed_at=closed.where(outcome != "open"), outcome=outcome,
        lost_reason=rows.text(reason_col).where(outcome == "lost"), current_stage=stage,
        exported_at=newest(created, closed, modified, mask=good),
    )
    frames = {"deals": deals}
    warnings = []
    if companions is not None:
        frames["pipeline_stages"] = companions.drop(columns=["_row_number", "_pipeline_id", "_status_id"],
                                                    errors="ignore")
    elif len(deals):
        frames["pipeline_stages"], warnings = infer_stages(
            ctx.file, deals["pipeline"], deals["current_stage"], deals["outcome"],
            created_at=deals["created_at"], typical=TYPICAL_STAGES,
            terminal=(("Успешно реализовано", "won"), ("Закрыто и не реализовано", "lost")))
    return finish(ctx, SOURCE, "deals", rows, frames, warnings)


def _pipelines_beside(ctx: Context) -> pd.DataFrame | None:
    found = companion_files(ctx, [PIPELINES])
    if not found:
        return None
    frames = [_pipeline_stages(loaded, Context(loaded.path, ctx.timezone))[0] for _, loaded in found]
    return pd.concat(frames, ignore_index=True).drop_duplicates(["pipeline", "stage"])


# --------------------------------------------------------------------------------------------
# API v4 pipelines


def _pipeline_records(data) -> list | None:
    pipelines = records_from_json(data, ("_embedded", "pipelines"))
    if pipelines is None or not any(isinstance(p.get("_embedded", {}).get("statuses"), list)
                                    for p in pipelines):
        return None
    return pipelines


def _is_pipelines(data) -> bool:
    return _pipeline_records(data) is not None


def _pipeline_stages(doc: RawJson, ctx: Context):
    pipelines = _pipeline_records(doc.data) or []
    records = []
    for p in pipelines:
        for s in (p.get("_embedded") or {}).get("statuses") or []:
            records.append({"pipeline_id": p.get("id"), "pipeline": p.get("name"),
                            "pipeline_sort": p.get("sort"), "id": s.get("id"), "name": s.get("name"),
                            "sort": s.get("sort"), "type": s.get("type")})
    table = jsonfile.table_from_records(doc.path, records)
    rows = Rows(table, ctx)
    for c in ("pipeline_id", "pipeline", "id", "name", "sort", "type", "pipeline_sort"):
        rows.column(c)
    if not len(table.frame):
        return _empty_stages(), rows
    pipeline = rows.require("pipeline", "pipeline")
    stage = rows.require("name", "stage")
    status_id = rows.require("id", "status id")
    sort = rows.numbers("sort", "stage sort", negative_ok=True)
    good = rows.good
    kind = pd.Series("open", index=stage.index, dtype=object)
    kind[status_id == str(WON_STATUS)] = "won"
    kind[status_id == str(LOST_STATUS)] = "lost"
    terminal = kind.map({"open": 0, "won": 1, "lost": 2})
    frame = pd.DataFrame({"pipeline": pipeline, "stage": stage, "kind": kind, "t": terminal,
                          "sort": sort, "pos": range(len(stage))})[good]
    frame = frame.sort_values(["pipeline", "t", "sort", "pos"])
    frame["order"] = frame.groupby("pipeline").cumcount() + 1
    frame = frame.sort_index()
    out = stages_frame(frame["pipeline"], frame["stage"], frame["order"], frame["kind"],
                       row_numbers=table.row_numbers[good.to_numpy()])
    out["_pipeline_id"] = rows.raw["pipeline_id"][good].to_numpy()
    out["_status_id"] = status_id[good].to_numpy()
    return out, rows


def _empty_stages() -> pd.DataFrame:
    return stages_frame([], [], [], [], row_numbers=[])


def read_pipelines(doc: RawJson, ctx: Context):
    frame, rows = _pipeline_stages(doc, ctx)
    return finish(ctx, SOURCE, "pipeline_stages", rows,
                  {"pipeline_stages": frame.drop(columns=["_pipeline_id", "_status_id"])})


# --------------------------------------------------------------------------------------------
# API v4 events (lead_status_changed)


def _event_records(data) -> list | None:
    events = records_from_json(data, ("_embedded", "events"), ("events",))
    if events is None or (events and not any("type" in e and "entity_id" in e for e in events)):
        return None  # an empty list under _embedded.events is a page with no events: 0 rows
    return events


def _is_events(data) -> bool:
    return _event_records(data) is not None


def _status(value) -> tuple:
    try:
        status = value[0]["lead_status"]
        return status.get("id"), status.get("pipeline_id")
    except (IndexError, KeyError, TypeError):
        return None, None


def read_events(doc: RawJson, ctx: Context):
    events = _event_records(doc.data) or []
    positions = [i for i, e in enumerate(events, start=1) if e.get("type") == "lead_status_changed"]
    changes = [events[i - 1] for i in positions]
    warnings = []
    if len(changes) < len(events):
        warnings.append(f"{ctx.file}: {len(events) - len(changes)} events of other types than "
                        "lead_status_changed are not stage changes and were not read")
    records = []
    for e in changes:
        after_id, after_pipe = _status(e.get("value_after"))
        before_id, before_pipe = _status(e.get("value_before"))
        records.append({"id": e.get("id"), "entity_id": e.get("entity_id"),
                        "entity_type": e.get("entity_type"), "created_at": e.get("created_at"),
                        "status_id": after_id, "pipeline_id": after_pipe,
                        "before_status_id": before_id, "before_pipeline_id": before_pipe})
    table = jsonfile.table_from_records(doc.path, records, row_numbers=positions)
    rows = Rows(table, ctx)
    if not len(table.frame):
        return finish(ctx, SOURCE, "stage_events", rows, {"stage_events": empty_events()}, warnings)
    found = companion_files(ctx, [PIPELINES])
    if not found:
        raise ExportFormatError(
            "amoCRM events name stages by id; put the pipelines export (GET /api/v4/leads/pipelines "
            "as JSON) in the same folder so the stages can be named", file=ctx.file)
    lookup = pd.concat([_pipeline_stages(loaded, Context(loaded.path))[0] for _, loaded in found])
    lookup = lookup.assign(key=lookup["_pipeline_id"].astype(str) + "/" + lookup["_status_id"].astype(str))
    lookup = lookup.drop_duplicates("key").set_index("key")
    for c in table.frame.columns:
        rows.column(c)
    deal = rows.require("entity_id", "deal id")
    event_id = rows.text("id")
    entered, bad = parsers.epoch_seconds(rows.raw["created_at"])
    rows.reject(rows.raw["created_at"] == "", "missing entered_at (field 'created_at')")
    rows.reject(bad, "unparseable entered_at '" + rows.raw["created_at"] + "' (field 'created_at', unix seconds)")
    rows.reject_future(entered, "entered_at", "created_at")
    rows.require("status_id", "stage (value_after status id)")
    key = rows.raw["pipeline_id"] + "/" + rows.raw["status_id"]
    known = key.isin(lookup.index)
    rows.reject(~known, "unknown status id '" + rows.raw["status_id"] + "' in pipeline '"
                + rows.raw["pipeline_id"] + "' (not in the pipelines export)")
    if event_id.notna().any():
        rows.reject_duplicates(event_id, "id")
    good = rows.good.to_numpy()
    names = lookup.reindex(key[good])
    ev = events_frame(SOURCE + ":" + deal[good], names["pipeline"], names["stage"], entered[good],
                      "history", table.row_numbers[good])
    # value_before of a deal's first move: the stage it was created in (lead_added has no stage).
    before = lookup.reindex(rows.raw["before_pipeline_id"] + "/" + rows.raw["before_status_id"])
    created = creation_events(SOURCE + ":" + deal[good], before["pipeline"][good], before["stage"][good],
                              entered[good], table.row_numbers[good])
    frames = {"stage_events": pd.concat([ev, created], ignore_index=True)}
    return finish(ctx, SOURCE, "stage_events", rows, frames, warnings)


DEALS = Format(
    "amocrm.deals", SOURCE, "amoCRM deals export", read_deals,
    signature=("ID", "Название сделки", "Бюджет", "Ответственный", "Дата создания сделки",
               "Кем создана сделка", "Дата редактирования", "Дата закрытия", "Этап сделки", "Воронка"),
    min_match=4,
)
PIPELINES = Format("amocrm.pipelines", SOURCE, "amoCRM pipelines (API v4 JSON)", read_pipelines,
                   probe=_is_pipelines, head_needles=('"pipelines"', '"statuses"'))
EVENTS = Format("amocrm.events", SOURCE, "amoCRM events (API v4 JSON, lead_status_changed)",
                read_events, probe=_is_events, head_needles=('"events"', '"entity_id"'))
FORMATS = [DEALS, PIPELINES, EVENTS]
