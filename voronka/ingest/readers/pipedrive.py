"""Pipedrive: the deals export (`Deal - …` headers, CSV/XLSX), the deal flow JSON
(`GET /v1/deals/{id}/flow`, one response or a list of them) and the stages JSON (`GET /v1/stages`).

Pipedrive pipelines have no won/lost stages: a deal is won or lost by its status and stays in
its last stage. Voronka gives every pipeline two terminal stages, `Won` and `Lost`: a closed
deal's current_stage is one of them (its last open stage stays in attributes as
`Deal - Stage`), and a status change in the flow is an event into them. Export times are local
(the `timezone` setting); API times are UTC.
"""

from __future__ import annotations

import numpy as np
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
from voronka.ingest.readers.rows import Context, Rows
from voronka.ingest.readers.stage_order import infer_stages

SOURCE = "pipedrive"
WON_STAGE, LOST_STAGE = "Won", "Lost"
STATUS = {"open": "open", "won": "won", "lost": "lost", "открыта": "open", "открыто": "open",
          "выиграна": "won", "выиграно": "won", "проиграна": "lost", "проиграно": "lost",
          "потеряна": "lost"}


def _with_terminals(stages: pd.DataFrame) -> pd.DataFrame:
    """Add Won and Lost after the last stage of every pipeline that lacks them."""
    extra = []
    for pipe, group in stages.groupby("pipeline", sort=False):
        top = int(group["stage_order"].max()) if len(group) else 0
        for i, (name, kind) in enumerate(((WON_STAGE, "won"), (LOST_STAGE, "lost")), start=1):
            if not ((group["stage"] == name) & (group["kind"] == kind)).any():
                extra.append((pipe, name, top + i, kind, 1.0 if kind == "won" else 0.0))
    if not extra:
        return stages
    p, s, o, k, pr = zip(*extra)
    add = stages_frame(p, s, o, k, pr)
    return pd.concat([stages.drop(columns=["_row_number"], errors="ignore"), add], ignore_index=True)


# --------------------------------------------------------------------------------------------
# Stages JSON


def _stage_records(data) -> list | None:
    records = records_from_json(data, ("data",), ("stages",))
    if not records or not all("order_nr" in r and "pipeline_id" in r for r in records):
        return None
    return records


def _stage_table(doc: RawJson, ctx: Context) -> tuple[pd.DataFrame, Rows]:
    records = [{"id": r.get("id"), "name": r.get("name"), "order_nr": r.get("order_nr"),
                "pipeline_id": r.get("pipeline_id"), "pipeline_name": r.get("pipeline_name"),
                "deal_probability": r.get("deal_probability")} for r in _stage_records(doc.data) or []]
    table = jsonfile.table_from_records(doc.path, records)
    rows = Rows(table, ctx)
    if not len(table.frame):
        return stages_frame([], [], [], [], row_numbers=[]).assign(_stage_id=[]), rows
    for c in table.frame.columns:
        rows.column(c)
    stage = rows.require("name", "stage")
    stage_id = rows.require("id", "stage id")
    pipe_id = rows.require("pipeline_id", "pipeline")
    pipeline = rows.text("pipeline_name").fillna(pipe_id)
    order = rows.numbers("order_nr", "order_nr", negative_ok=True)
    prob = rows.numbers("deal_probability", "crm_probability")
    rows.reject(prob > 100, "crm_probability '" + rows.raw["deal_probability"] + "' above 100")
    good = rows.good
    frame = pd.DataFrame({"pipeline": pipeline, "stage": stage, "order": order, "prob": prob / 100,
                          "pos": np.arange(len(stage))})[good]
    frame = frame.sort_values(["pipeline", "order", "pos"])
    frame["stage_order"] = frame.groupby("pipeline").cumcount() + 1
    frame = frame.sort_values("pos")
    out = stages_frame(frame["pipeline"], frame["stage"], frame["stage_order"], ["open"] * len(frame),
                       frame["prob"], row_numbers=table.row_numbers[good.to_numpy()])
    out["_stage_id"] = stage_id[good].to_numpy()
    return out, rows


def read_stages(doc: RawJson, ctx: Context):
    frame, rows = _stage_table(doc, ctx)
    return finish(ctx, SOURCE, "pipeline_stages", rows, {"pipeline_stages": frame.drop(columns=["_stage_id"])})


def _stages_beside(ctx: Context) -> pd.DataFrame | None:
    found = companion_files(ctx, [STAGES])
    if not found:
        return None
    frames = [_stage_table(loaded, Context(loaded.path))[0] for _, loaded in found]
    return pd.concat(frames, ignore_index=True).drop_duplicates("_stage_id")


# --------------------------------------------------------------------------------------------
# Deals export


def read_deals(table: RawTable, ctx: Context):
    rows = Rows(table, ctx)
    id_col = rows.column("Deal - ID", required=True, field="native_id")
    stage_col = rows.column("Deal - Stage", required=True, field="current_stage", mark=False)
    status_col = rows.column("Deal - Status", required=True, field="outcome")
    created_col = rows.column("Deal - Deal created", "Deal - Add time", "Deal - Created",
                              required=True, field="created_at")
    pipeline_col = rows.column("Deal - Pipeline")
    won_col = rows.column("Deal - Won time")
    lost_col = rows.column("Deal - Lost time")
    closed_on_col = rows.column("Deal - Deal closed on", "Deal - Close time")
    modified_col = rows.column("Deal - Update time", "Deal - Last update")
    native = rows.require(id_col, "native_id")
    open_stage = rows.require(stage_col, "current_stage")
    status = rows.require(status_col, "outcome")
    outcome = status.fillna("").str.casefold().map(STATUS)
    rows.reject(status.notna() & outcome.isna(), "unknown outcome '" + status.fillna("")
                + f"' (column {status_col!r}; expected Open, Won or Lost)")
    pipeline = rows.text(pipeline_col).fillna("Pipeline") if pipeline_col else \
        pd.Series("Pipeline", index=native.index, dtype=object)
    created = rows.timestamps(created_col, "created_at")
    won_at = rows.timestamps(won_col, "closed_at")
    lost_at = rows.timestamps(lost_col, "closed_at")
    closed_on = rows.timestamps(closed_on_col, "closed_at")
    modified, _ = parsers.parse_timestamps(rows.raw[modified_col], ctx.timezone) if modified_col \
        else (None, None)
    closed_at = won_at.where(outcome == "won", lost_at.where(outcome == "lost"))
    closed_at = closed_at.fillna(closed_on.where(outcome.isin(["won", "lost"])))
    stage = open_stage.where(outcome == "open", outcome.map({"won": WON_STAGE, "lost": LOST_STAGE}))
    rows.reject_duplicates(native, id_col)
    good = rows.good.to_numpy()
    outcome = outcome.fillna("open")
    deals = deals_frame(
        SOURCE, rows,
        native_id=native, pipeline=pipeline, title=rows.text(rows.column("Deal - Title")),
        owner=rows.text(rows.column("Deal - Owner", "Deal - Owner name")),
        lead_source=rows.text(rows.column("Deal - Source", "Deal - Source channel", "Deal - Source origin")),
        amount=rows.numbers(rows.column("Deal - Value"), "amount"),
        currency=rows.text_or(rows.column("Deal - Currency", "Deal - Currency of Value"), ctx.currency),
        created_at=created,
        expected_close_date=rows.dates(rows.column("Deal - Expected close date"), "expected_close_date"),
        closed_at=closed_at, outcome=outcome,
        lost_reason=rows.text(rows.column("Deal - Lost reason")).where(outcome == "lost"),
        current_stage=stage, exported_at=newest(created, closed_at, modified, mask=good),
    )
    frames = {"deals": deals}
    warnings = []
    stages = _stages_beside(ctx)
    if stages is not None:
        frames["pipeline_stages"] = _with_terminals(stages.drop(columns=["_stage_id"]))
    elif len(deals):
        # Every deal names the open stage it is (or was last) in: order those; Won/Lost follow.
        frames["pipeline_stages"], warnings = infer_stages(
            ctx.file, deals["pipeline"], pd.Series(open_stage.to_numpy()[good]),
            pd.Series("open", index=deals.index), created_at=deals["created_at"],
            terminal=((WON_STAGE, "won"), (LOST_STAGE, "lost")))
    return finish(ctx, SOURCE, "deals", rows, frames, warnings)


# --------------------------------------------------------------------------------------------
# Flow JSON


def _flow_items(data) -> list | None:
    if isinstance(data, dict) and not isinstance(data.get("data"), list) and data and \
            all(isinstance(v, dict) for v in data.values()):
        data = list(data.values())  # {deal_id: response, ...}
    items = records_from_json(data, ("data",))
    if not items or not any(i.get("object") == "dealChange" or "field_key" in (i.get("data") or {})
                            for i in items):
        return None
    return items


def _related_stages(data) -> dict:
    """deal id -> its stage id from the responses' `related_objects.deal` (the deal as it is now:
    the stage of a deal whose flow has no stage change, i.e. the stage it was created in)."""
    if isinstance(data, dict) and not isinstance(data.get("data"), list):
        data = list(data.values())
    out = {}
    for response in data if isinstance(data, list) else [data]:
        related = response.get("related_objects") if isinstance(response, dict) else None
        deals = related.get("deal") if isinstance(related, dict) else None
        for key, deal in (deals.items() if isinstance(deals, dict) else ()):
            if isinstance(deal, dict) and deal.get("stage_id") is not None:
                out[str(deal.get("id", key))] = str(deal["stage_id"])
    return out


def read_flow(doc: RawJson, ctx: Context):
    items = _flow_items(doc.data) or []
    records, positions = [], []
    for position, item in enumerate(items, start=1):
        d = item.get("data") if isinstance(item.get("data"), dict) else item
        if item.get("object", "dealChange") != "dealChange" or d.get("field_key") not in ("stage_id", "status"):
            continue
        positions.append(position)
        records.append({"id": d.get("id"), "deal": d.get("item_id"), "field_key": d.get("field_key"),
                        "old_value": d.get("old_value"), "new_value": d.get("new_value"),
                        "log_time": d.get("log_time") or item.get("timestamp")})
    warnings = []
    if len(records) < len(items):
        warnings.append(f"{ctx.file}: {len(items) - len(records)} flow items are not stage or status "
                        "changes and were not read")
    table = jsonfile.table_from_records(doc.path, records, row_numbers=positions)
    rows = Rows(table, ctx)
    if not len(table.frame):
        return finish(ctx, SOURCE, "stage_events", rows, {"stage_events": empty_events()}, warnings)
    stages = _stages_beside(ctx)
    if stages is None:
        raise ExportFormatError("Pipedrive flow names stages by id; put the stages export "
                                "(GET /v1/stages as JSON) in the same folder", file=ctx.file)
    for c in table.frame.columns:
        rows.column(c)
    deal = rows.require("deal", "deal id (item_id)")
    new = rows.require("new_value", "new_value")
    at = rows.timestamps("log_time", "entered_at", required=True, tz="UTC")
    by_id = stages.set_index("_stage_id")
    is_stage = rows.raw["field_key"] == "stage_id"
    known = new.isin(by_id.index)
    rows.reject(is_stage & new.notna() & ~known, "unknown stage id '" + new.fillna("")
                + "' (field new_value; not in the stages export)")
    status = new.fillna("").str.casefold().map(STATUS)
    rows.reject(~is_stage & new.notna() & status.isna(), "unknown outcome '" + new.fillna("")
                + "' (field new_value of a status change; expected open, won or lost)")
    # The stage a deal is in when its status changes: its latest stage change, else the stage
    # it left (old_value), else its stage in the response's related_objects (a deal with no
    # stage change never left it), else the only pipeline.
    order = pd.DataFrame({"deal": deal, "at": at, "stage_id": new.where(is_stage)})
    order = order.sort_values(["deal", "at"], kind="stable")
    current = order.groupby("deal")["stage_id"].ffill()
    current = current.reindex(rows.raw.index)
    first_old = rows.raw["old_value"].where(is_stage).groupby(deal).transform("first")
    current = current.fillna(first_old.where(first_old.isin(by_id.index)))
    related = deal.map(_related_stages(doc.data))
    current = current.fillna(related.where(related.isin(by_id.index)))
    stage_name = new.map(by_id["stage"])
    pipe = new.map(by_id["pipeline"]).fillna(current.map(by_id["pipeline"]))
    if stages["pipeline"].nunique() == 1:
        pipe = pipe.fillna(stages["pipeline"].iloc[0])
    rows.reject(~is_stage & status.notna() & pipe.isna(),
                "status change of deal '" + deal.fillna("") + "' whose pipeline is unknown "
                "(no stage change of it in this flow and several pipelines)")
    reopened = ~is_stage & (status == "open")
    stage_name = stage_name.where(is_stage, status.map({"won": WON_STAGE, "lost": LOST_STAGE}))
    stage_name = stage_name.where(~reopened, current.map(by_id["stage"]))
    rows.reject(reopened & stage_name.isna(), "reopening of deal '" + deal.fillna("")
                + "' whose stage is unknown (no stage change of it in this flow)")
    if rows.text("id").notna().any():
        rows.reject_duplicates(rows.text("id"), "id")
    good = rows.good.to_numpy()
    ev = events_frame(SOURCE + ":" + deal[good], pipe[good], stage_name[good], at[good], "history",
                      table.row_numbers[good])
    # The stage a deal left on its first change (old_value; for a status change, the stage it
    # was in): the stage it was created in.
    before_id = rows.raw["old_value"].where(is_stage, current)
    created = creation_events(SOURCE + ":" + deal[good], before_id.map(by_id["pipeline"])[good],
                              before_id.map(by_id["stage"])[good], at[good], table.row_numbers[good])
    frames = {"stage_events": pd.concat([ev, created], ignore_index=True), "pipeline_stages": _with_terminals(stages.drop(columns=["_stage_id"]))}
    return finish(ctx, SOURCE, "stage_events", rows, frames, warnings)


def _is_stages(data) -> bool:
    return _stage_records(data) is not None


def _is_flow(data) -> bool:
    return _flow_items(data) is not None


STAGES = Format("pipedrive.stages", SOURCE, "Pipedrive stages (API JSON)", read_stages,
                probe=_is_stages, head_needles=('"order_nr"', '"pipeline_id"'))
FLOW = Format("pipedrive.flow", SOURCE, "Pipedrive deal flow (API JSON)", read_flow, probe=_is_flow)
DEALS = Format(
    "pipedrive.deals", SOURCE, "Pipedrive deals export", read_deals,
    signature=("Deal - ID", "Deal - Title", "Deal - Value", "Deal - Currency", "Deal - Pipeline",
               "Deal - Stage", "Deal - Status", "Deal - Owner", "Deal - Deal created",
               "Deal - Expected close date", "Deal - Won time", "Deal - Lost time", "Deal - Lost reason"),
    min_match=3,
)
FORMATS = [STAGES, FLOW, DEALS]
