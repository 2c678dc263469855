"""HubSpot: the deals export (UI headers such as `Record ID`, `Deal Stage`, or API property names
such as `hs_object_id`, `dealstage`) and the pipelines JSON (`GET /crm/v3/pipelines/deals`).

The export's `Date entered "<Stage> (<Pipeline>)"` columns (API: `hs_date_entered_<stageId>`)
become stage_events, one per filled cell. A deal is won when `Is Closed Won` is true and lost when
it is closed otherwise (`Is closed`; or, without that column, a stage named like "Closed Lost");
with the pipelines JSON beside the export, the stage's `isClosed` and probability decide.
`Close Date` is the expected close of an open deal and the close of a closed one. UI exports
carry local times of the portal's time zone (the `timezone` setting); API values carry `Z`.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from voronka.ingest.readers import jsonfile, parsers
from voronka.ingest.readers.formats import Format, companion_files, records_from_json
from voronka.ingest.readers.frames import (
    deals_frame,
    events_frame,
    finish,
    newest,
    stages_frame,
)
from voronka.ingest.readers.rawtable import RawJson, RawTable
from voronka.ingest.readers.rows import Context, Rows, map_unique, norm
from voronka.ingest.readers.stage_order import infer_stages

SOURCE = "hubspot"
DEFAULT_PIPELINE = "Sales Pipeline"
_ENTERED_UI = re.compile(r'^date entered ["“”](.+) \((.+)\)["“”]$', re.IGNORECASE)
_ENTERED_API = re.compile(r"^hs(?:_v2)?_date_entered_(.+)$", re.IGNORECASE)


def _kind_by_name(stages: pd.Series) -> pd.Series:
    return map_unique(stages.fillna(""), _kind_of_names)


def _kind_of_names(stages: pd.Series) -> pd.Series:
    n = stages.map(norm)
    kind = pd.Series("open", index=stages.index, dtype=object)
    kind[n.str.contains(r"\bwon\b|closedwon", regex=True)] = "won"
    kind[n.str.contains(r"\blost\b|closedlost", regex=True)] = "lost"
    return kind


# --------------------------------------------------------------------------------------------
# Pipelines JSON


def _pipeline_records(data) -> list | None:
    if isinstance(data, dict) and isinstance(data.get("stages"), list):
        return [data]
    pipelines = records_from_json(data, ("results",), ("pipelines",))
    if not pipelines or not all(isinstance(p.get("stages"), list) for p in pipelines):
        return None
    return pipelines


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _pipeline_stages(doc: RawJson, ctx: Context) -> tuple[pd.DataFrame, Rows]:
    records = []
    for p in _pipeline_records(doc.data) or []:
        for s in p.get("stages") or []:
            meta = s.get("metadata") or {}
            records.append({"pipeline_id": p.get("id"), "pipeline": p.get("label"),
                            "id": s.get("id") or s.get("stageId"), "label": s.get("label"),
                            "displayOrder": s.get("displayOrder"),
                            "isClosed": meta.get("isClosed"), "probability": meta.get("probability")})
    table = jsonfile.table_from_records(doc.path, records)
    rows = Rows(table, ctx)
    if not len(table.frame):
        return stages_frame([], [], [], [], row_numbers=[]).assign(_pipeline_id=[], _stage_id=[]), rows
    for c in table.frame.columns:
        rows.column(c)
    pipeline = rows.require("pipeline", "pipeline")
    stage = rows.require("label", "stage")
    order = rows.numbers("displayOrder", "displayOrder", negative_ok=True)
    prob = rows.numbers("probability", "crm_probability")
    rows.reject(prob > 1, "crm_probability '" + rows.raw["probability"] + "' above 1 (field 'probability')")
    closed = rows.raw["isClosed"].map(_truthy)
    kind = pd.Series("open", index=stage.index, dtype=object)
    kind[closed & (prob == 1)] = "won"
    kind[closed & (prob == 0)] = "lost"
    # A closed stage whose probability is neither 1 nor 0: closed, outcome unknown (voronka.yaml
    # stage_outcomes settles it).
    kind[closed & ~prob.isin([0, 1])] = "unknown"
    good = rows.good
    frame = pd.DataFrame({"pipeline": pipeline, "stage": stage, "kind": kind, "prob": prob,
                          "t": kind.map({"open": 0, "won": 1, "unknown": 2, "lost": 3}), "order": order,
                          "pos": np.arange(len(stage))})[good]
    frame = frame.sort_values(["pipeline", "t", "order", "pos"])
    frame["stage_order"] = frame.groupby("pipeline").cumcount() + 1
    frame = frame.sort_values("pos")
    out = stages_frame(frame["pipeline"], frame["stage"], frame["stage_order"], frame["kind"],
                       frame["prob"], row_numbers=table.row_numbers[good.to_numpy()])
    out["_pipeline_id"] = rows.raw["pipeline_id"][good].to_numpy()
    out["_stage_id"] = rows.raw["id"][good].to_numpy()
    return out, rows


def read_pipelines(doc: RawJson, ctx: Context):
    frame, rows = _pipeline_stages(doc, ctx)
    return finish(ctx, SOURCE, "pipeline_stages", rows,
                  {"pipeline_stages": frame.drop(columns=["_pipeline_id", "_stage_id"])})


def _pipelines_beside(ctx: Context) -> pd.DataFrame | None:
    found = companion_files(ctx, [PIPELINES])
    if not found:
        return None
    frames = [_pipeline_stages(loaded, Context(loaded.path))[0] for _, loaded in found]
    return pd.concat(frames, ignore_index=True).drop_duplicates(["pipeline", "stage"])


# --------------------------------------------------------------------------------------------
# Deals export


def read_deals(table: RawTable, ctx: Context):
    rows = Rows(table, ctx)
    id_col = rows.column("Record ID", "hs_object_id", "Deal ID", required=True, field="native_id")
    stage_col = rows.column("Deal Stage", "dealstage", required=True, field="current_stage")
    created_col = rows.column("Create Date", "createdate", required=True, field="created_at")
    pipeline_col = rows.column("Pipeline", "pipeline")
    close_col = rows.column("Close Date", "closedate")
    won_col = rows.column("Is Closed Won", "hs_is_closed_won")
    closed_col = rows.column("Is closed", "Is Closed", "hs_is_closed")
    modified_col = rows.column("Last Modified Date", "hs_lastmodifieddate")
    native = rows.require(id_col, "native_id")
    stage = rows.require(stage_col, "current_stage")
    pipelines = _pipelines_beside(ctx)
    pipeline = rows.text(pipeline_col).fillna(DEFAULT_PIPELINE) if pipeline_col else \
        pd.Series(DEFAULT_PIPELINE, index=stage.index, dtype=object)
    if pipelines is not None:  # API exports carry ids: name them by the pipelines JSON
        pipe_names = pipelines.drop_duplicates("_pipeline_id").set_index("_pipeline_id")["pipeline"]
        pipeline = pipeline.map(pipe_names).fillna(pipeline)
        stage_names = pipelines.assign(k=pipelines["pipeline"] + "\x1f" + pipelines["_stage_id"]) \
            .drop_duplicates("k").set_index("k")["stage"]
        stage = (pipeline + "\x1f" + stage.fillna("")).map(stage_names).fillna(stage)
    created = rows.timestamps(created_col, "created_at")
    close_date = rows.dates(close_col, "expected_close_date")
    close_ts = rows.timestamps(close_col, "closed_at", future=False)
    amount = rows.numbers(rows.column("Amount", "amount"), "amount")
    modified, _ = parsers.parse_timestamps(rows.raw[modified_col], ctx.timezone) if modified_col \
        else (None, None)
    is_won = rows.bools(won_col, "Is Closed Won") if won_col else None
    is_closed = rows.bools(closed_col, "Is closed") if closed_col else None

    kind = _kind_by_name(stage)
    if is_closed is not None:  # closed: won or lost by "Is Closed Won"; without it, unknown
        closed_kind = "lost" if is_won is not None else "unknown"
        kind = pd.Series(np.where(is_closed.fillna(False), closed_kind, "open"), index=stage.index, dtype=object)
    if is_won is not None:
        kind = kind.where(~is_won.fillna(False).astype(bool), "won")
        if is_closed is None:
            kind = kind.where(~((kind == "won") & (is_won == False)), "open")  # noqa: E712
    if pipelines is not None:
        listed = (pipeline + "\x1f" + stage.fillna("")).map(
            pipelines.assign(k=pipelines["pipeline"] + "\x1f" + pipelines["stage"])
            .drop_duplicates("k").set_index("k")["kind"])
        kind = listed.fillna(kind)
    outcome = kind
    rows.reject_future(close_ts.where(outcome != "open"), "closed_at", close_col)

    # Stage history: one event per filled "Date entered" cell.
    entered_cols = []
    for col in table.frame.columns:
        m_ui, m_api = _ENTERED_UI.match(col), _ENTERED_API.match(col)
        if m_ui:
            entered_cols.append((col, m_ui.group(1).strip(), m_ui.group(2).strip()))
        elif m_api:
            entered_cols.append((col, m_api.group(1), None))
    parsed_entered = []
    for col, st, pipe in entered_cols:
        rows.used.add(col)
        parsed_entered.append((col, st, pipe, rows.timestamps(col, "entered_at")))
    rows.reject_duplicates(native, id_col)

    good = rows.good.to_numpy()
    keys = SOURCE + ":" + native.fillna("")
    ev_parts = []
    for col, st, pipe, ts in parsed_entered:
        take = good & ts.notna().to_numpy()
        if not take.any():
            continue
        pipe_s = pd.Series(pipe, index=ts.index[take]) if pipe else pipeline[take]
        stage_s = pd.Series(st, index=ts.index[take])
        if pipe is None and pipelines is not None:
            stage_s = (pipe_s + "\x1f" + stage_s).map(stage_names).fillna(stage_s)
        ev_parts.append(pd.DataFrame({"deal_key": keys[take], "pipeline": pipe_s, "stage": stage_s,
                                      "entered_at": ts[take], "row": table.row_numbers[take]}))
    ev = pd.concat(ev_parts, ignore_index=True) if ev_parts else \
        pd.DataFrame({"deal_key": [], "pipeline": [], "stage": [], "entered_at": pd.Series(dtype="datetime64[ns]"),
                      "row": []})
    events = events_frame(ev["deal_key"], ev["pipeline"], ev["stage"], ev["entered_at"], "history", ev["row"])

    deals = deals_frame(
        SOURCE, rows,
        native_id=native, pipeline=pipeline, title=rows.text(rows.column("Deal Name", "dealname")),
        owner=rows.text(rows.column("Deal owner", "Deal Owner", "hubspot_owner_id")),
        lead_source=rows.text(rows.column("Original Source Type", "Original Source", "Source",
                                          "hs_analytics_source")),
        amount=amount,
        currency=rows.text_or(rows.column("Currency", "Deal currency code", "deal_currency_code"),
                              ctx.currency),
        created_at=created, expected_close_date=close_date,
        closed_at=close_ts.where(outcome != "open"), outcome=outcome,
        lost_reason=rows.text(rows.column("Closed Lost Reason", "closed_lost_reason")).where(outcome == "lost"),
        current_stage=stage,
        exported_at=newest(created.where(rows.good),
                           modified.where(rows.good) if modified is not None else None,
                           events["entered_at"]),
    )
    frames = {"deals": deals, "stage_events": events}
    warnings = []
    if pipelines is not None:
        frames["pipeline_stages"] = pipelines.drop(columns=["_row_number", "_pipeline_id", "_stage_id"],
                                                   errors="ignore")
    elif len(deals) or len(events):
        header_stages = pd.DataFrame([(p, s) for _, s, p, _ in parsed_entered if p],
                                     columns=["pipeline", "stage"])
        all_events = pd.concat([events[["deal_key", "pipeline", "stage", "entered_at"]],
                                header_stages.assign(deal_key=None, entered_at=pd.NaT)], ignore_index=True)
        frames["pipeline_stages"], warnings = infer_stages(
            ctx.file, deals["pipeline"], deals["current_stage"], deals["outcome"],
            created_at=deals["created_at"], events=all_events, name_kind=_kind_by_name,
            terminal=(("Closed Won", "won"), ("Closed Lost", "lost")))
    return finish(ctx, SOURCE, "deals", rows, frames, warnings)


def _is_pipelines(data) -> bool:
    return _pipeline_records(data) is not None


PIPELINES = Format("hubspot.pipelines", SOURCE, "HubSpot deal pipelines (API JSON)", read_pipelines,
                   probe=_is_pipelines, head_needles=('"stages"', '"displayOrder"'))
DEALS = Format(
    "hubspot.deals", SOURCE, "HubSpot deals export", read_deals,
    signature=("Record ID", "Deal Name", "Deal Stage", "Pipeline", "Amount", "Close Date",
               "Create Date", "Deal owner", "Deal Type", "Is Closed Won"),
    min_match=4,
)
DEALS_API = Format(
    "hubspot.deals_api", SOURCE, "HubSpot deals (API property names)", read_deals,
    signature=("hs_object_id", "dealname", "dealstage", "pipeline", "amount", "closedate",
               "createdate", "hubspot_owner_id", "hs_is_closed_won"),
    min_match=4,
)
FORMATS = [PIPELINES, DEALS, DEALS_API]
