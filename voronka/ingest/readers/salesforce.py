"""Salesforce: Data Loader / weekly Data Export CSVs, API field names as headers.

- `Opportunity.csv` -> deals. Outcome from `IsClosed`/`IsWon`; `CloseDate` is the expected close
  of an open deal and the close (at midnight; at its creation time if it closed the day it was
  created) of a closed one; `IsDeleted` rows are rejected.
- `OpportunityHistory.csv` -> stage_events (a row whose StageName differs from the deal's
  previous row) and the extra frame `close_date_history` (deal_key, changed_at,
  expected_close_date: a row whose CloseDate differs from the previous one). History rows that
  change neither stage nor close date (amount or probability only) are not rows of either
  table: rows_read counts the rows that give a stage event or were rejected, and a warning
  counts the rest. The first events of deals migrated into Salesforce on one day are marked
  origin 'inferred' (they entered that stage before, at a time the history does not know).
- `OpportunityStage.csv` -> pipeline_stages (SortOrder, IsClosed/IsWon, DefaultProbability).

Salesforce has no pipelines in these objects: every deal is in the pipeline "default". Times are
UTC (`Z` or naive); the `timezone` setting applies to naive times only if changed from UTC.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from voronka.ingest.canonical import ParsedExport
from voronka.ingest.readers import parsers
from voronka.ingest.readers.formats import Format, companion_files
from voronka.ingest.readers.frames import (
    deals_frame,
    events_frame,
    finish,
    newest,
    stages_frame,
)
from voronka.ingest.readers.rawtable import RawTable
from voronka.ingest.readers.rows import Context, Rows
from voronka.ingest.readers.stage_order import infer_stages

SOURCE = "salesforce"
PIPELINE = "default"


def _outcome(rows: Rows, is_closed: pd.Series, is_won: pd.Series, closed_col: str, won_col: str) -> pd.Series:
    """open / won / lost from IsClosed and IsWon; closed without IsWon (column absent or empty):
    unknown (voronka.yaml stage_outcomes settles it)."""
    closed = is_closed.fillna(False).astype(bool)
    won = is_won.fillna(False).astype(bool)
    rows.reject(won & ~closed, f"unknown outcome: column {won_col!r} is true but {closed_col!r} is false")
    outcome = np.where(~closed, "open", np.where(is_won.isna(), "unknown", np.where(won, "won", "lost")))
    return pd.Series(outcome, index=is_closed.index, dtype=object)


def _is_won(rows: Rows, won_col: str | None) -> pd.Series:
    if won_col is None:
        return pd.Series(pd.NA, index=rows.raw.index, dtype="boolean")
    return rows.bools(won_col, "IsWon")


def _first_filled(a: pd.Series, b: pd.Series) -> pd.Series:
    return a.where(a.notna(), b)


def _reject_deleted(rows: Rows) -> None:
    col = rows.column("IsDeleted")
    if col:
        deleted = rows.bools(col, "IsDeleted")
        rows.reject(deleted.fillna(False).astype(bool), f"deleted in Salesforce (column {col!r} is true)")


# --------------------------------------------------------------------------------------------
# OpportunityStage


def _stage_table(table: RawTable, ctx: Context) -> tuple[pd.DataFrame, Rows]:
    rows = Rows(table, ctx)
    label_col = rows.column("MasterLabel", "ApiName", required=True, field="stage")
    closed_col = rows.column("IsClosed", required=True)
    won_col = rows.column("IsWon")
    stage = rows.require(label_col, "stage")
    sort = rows.numbers(rows.column("SortOrder"), "SortOrder", negative_ok=True)
    prob = rows.numbers(rows.column("DefaultProbability"), "crm_probability")
    rows.reject(prob > 100, "crm_probability '" + prob.astype(str) + "' above 100 (column 'DefaultProbability')")
    kind = _outcome(rows, rows.bools(closed_col, "IsClosed"), _is_won(rows, won_col), closed_col, won_col)
    rows.reject_duplicates(stage, label_col)
    good = rows.good
    frame = pd.DataFrame({"stage": stage, "kind": kind, "prob": prob / 100,
                          "t": kind.map({"open": 0, "won": 1, "unknown": 2, "lost": 3}), "sort": sort,
                          "pos": np.arange(len(stage)), "_row_number": table.row_numbers})[good]
    frame = frame.sort_values(["t", "sort", "pos"])
    frame["stage_order"] = np.arange(1, len(frame) + 1)
    return frame.sort_values("pos"), rows


def read_stages(table: RawTable, ctx: Context):
    frame, rows = _stage_table(table, ctx)
    out = stages_frame([PIPELINE] * len(frame), frame["stage"], frame["stage_order"], frame["kind"],
                       frame["prob"], row_numbers=frame["_row_number"])
    return finish(ctx, SOURCE, "pipeline_stages", rows, {"pipeline_stages": out})


def _stages_beside(ctx: Context) -> pd.DataFrame | None:
    found = companion_files(ctx, [STAGES])
    if not found:
        return None
    frame, _ = _stage_table(found[0][1], Context(found[0][1].path))
    return stages_frame([PIPELINE] * len(frame), frame["stage"], frame["stage_order"], frame["kind"],
                        frame["prob"])


# --------------------------------------------------------------------------------------------
# Opportunity


def read_opportunities(table: RawTable, ctx: Context):
    rows = Rows(table, ctx)
    id_col = rows.column("Id", required=True, field="native_id")
    stage_col = rows.column("StageName", required=True, field="current_stage")
    created_col = rows.column("CreatedDate", required=True, field="created_at")
    closed_col = rows.column("IsClosed", required=True, field="outcome")
    won_col = rows.column("IsWon")
    close_col = rows.column("CloseDate")
    prob_col = rows.column("Probability", mark=False)
    modified_col = rows.column("LastModifiedDate", "SystemModstamp")
    native = rows.require(id_col, "native_id")
    stage = rows.require(stage_col, "current_stage")
    _reject_deleted(rows)
    created = rows.timestamps(created_col, "created_at")
    close_date = rows.dates(close_col, "expected_close_date")
    amount = rows.numbers(rows.column("Amount"), "amount")
    prob = parsers.parse_numbers(rows.raw[prob_col])[0] / 100 if prob_col else None
    modified, _ = parsers.parse_timestamps(rows.raw[modified_col], ctx.timezone) if modified_col \
        else (None, None)
    outcome = _outcome(rows, rows.bools(closed_col, "IsClosed"), _is_won(rows, won_col), closed_col, won_col)
    # CloseDate is a day: deals_frame compares it with CreatedDate by day in the org's time zone
    # (a close on the creation day is at the creation, not at that day's midnight before it).
    closed_at = close_date.where(outcome != "open")
    rows.reject_future(closed_at, "closed_at", close_col)
    rows.reject_duplicates(native, id_col)
    good = rows.good.to_numpy()
    deals = deals_frame(
        SOURCE, rows,
        native_id=native, pipeline=PIPELINE, title=rows.text(rows.column("Name")),
        owner=_first_filled(rows.text(rows.column("Owner.Name", "OwnerName")),
                            rows.text(rows.column("OwnerId"))),
        lead_source=rows.text(rows.column("LeadSource")), amount=amount,
        currency=rows.text_or(rows.column("CurrencyIsoCode"), ctx.currency),
        created_at=created, expected_close_date=close_date, closed_at=closed_at, outcome=outcome,
        lost_reason=rows.text(rows.column("Loss_Reason__c", "Lost_Reason__c", "LossReason__c",
                                          "Reason_Lost__c")).where(outcome == "lost"),
        current_stage=stage, exported_at=newest(created, modified, mask=good),
    )
    frames = {"deals": deals}
    warnings = []
    stages = _stages_beside(ctx)
    if stages is not None:
        frames["pipeline_stages"] = stages
    elif len(deals):
        frames["pipeline_stages"], warnings = infer_stages(
            ctx.file, deals["pipeline"], deals["current_stage"], deals["outcome"],
            created_at=deals["created_at"],
            probability=pd.Series(prob.to_numpy()[good]) if prob is not None else None)
    return finish(ctx, SOURCE, "deals", rows, frames, warnings)


# --------------------------------------------------------------------------------------------
# OpportunityHistory


def read_history(table: RawTable, ctx: Context) -> ParsedExport:
    rows = Rows(table, ctx)
    opp_col = rows.column("OpportunityId", required=True, field="deal id")
    stage_col = rows.column("StageName", required=True, field="stage")
    time_col = rows.column("CreatedDate", required=True, field="entered_at")
    id_col = rows.column("Id")
    close_col = rows.column("CloseDate")
    opp = rows.require(opp_col, "deal id")
    stage = rows.require(stage_col, "stage")
    _reject_deleted(rows)
    changed_at = rows.timestamps(time_col, "entered_at", required=True)
    close_date = rows.dates(close_col, "expected_close_date")
    if id_col:
        rows.reject_duplicates(rows.text(id_col), id_col)
    good = rows.good.to_numpy()
    hist = pd.DataFrame({"opp": opp, "stage": stage, "at": changed_at, "close": close_date,
                         "id": rows.text(id_col) if id_col else "", "row": table.row_numbers})[good]
    hist = hist.sort_values(["opp", "at", "id", "row"], kind="stable")
    first = ~hist["opp"].duplicated()
    stage_change = first | (hist["stage"] != hist.groupby("opp")["stage"].shift())
    close_prev = hist.groupby("opp")["close"].shift()
    close_change = hist["close"].notna() & (first | (hist["close"] != close_prev))

    ev = hist[stage_change]
    origin = pd.Series("history", index=ev.index, dtype=object)
    warnings = []
    day = _migration_day(ev[first[stage_change]])
    if day is not None:
        migrated = first[stage_change] & (ev["at"].dt.normalize() == day)
        origin[migrated] = "inferred"
        warnings.append(f"{ctx.file}: {int(migrated.sum())} deals enter the history on {day:%Y-%m-%d}, "
                        "the day they were migrated into Salesforce; their first stage's true entry "
                        "time is unknown, so those events are marked origin 'inferred'")
    events = events_frame(SOURCE + ":" + ev["opp"], pd.Series(PIPELINE, index=ev.index), ev["stage"],
                          ev["at"], origin, ev["row"])
    cd = hist[close_change]
    close_history = pd.DataFrame({
        "deal_key": (SOURCE + ":" + cd["opp"]).to_numpy(), "changed_at": cd["at"].to_numpy(),
        "expected_close_date": cd["close"].to_numpy(), "_row_number": cd["row"].to_numpy(),
    })
    other = int((~stage_change).sum())
    if other:
        warnings.append(f"{ctx.file}: {other} history rows change no stage (amount, probability or "
                        "close date only); they are not stage events and are not counted in rows_read "
                        f"({int((~stage_change & close_change).sum())} of them are close-date changes, "
                        "kept in close_date_history)")
    rejected = rows.rejected()
    return ParsedExport(
        source_system=SOURCE, primary_table="stage_events", rows_read=len(events) + len(rejected),
        frames={"stage_events": events, "close_date_history": close_history},
        rejected=rejected, warnings=(ctx.warnings + warnings) or None,
    )


def _migration_day(first_events: pd.DataFrame):
    """The day most deals entered the history, if it stands out as a bulk import."""
    if len(first_events) < 20:
        return None
    per_day = first_events["at"].dt.normalize().value_counts()
    top_day, top = per_day.index[0], int(per_day.iloc[0])
    typical = float(per_day.iloc[1:].median()) if len(per_day) > 1 else 0.0
    if top >= max(10, 0.2 * len(first_events)) and top >= 5 * max(typical, 1.0):
        return top_day
    return None


STAGES = Format(
    "salesforce.stages", SOURCE, "Salesforce OpportunityStage.csv", read_stages,
    signature=("MasterLabel", "SortOrder", "IsClosed", "IsWon", "DefaultProbability",
               "ForecastCategoryName", "IsActive", "ApiName"),
    min_match=4,
)
HISTORY = Format(
    "salesforce.history", SOURCE, "Salesforce OpportunityHistory.csv", read_history,
    signature=("OpportunityId", "CreatedDate", "StageName", "Amount", "ExpectedRevenue", "CloseDate",
               "Probability", "ForecastCategory", "FromOpportunityStageName", "PrevAmount",
               "PrevCloseDate"),
    min_match=3,
)
OPPORTUNITIES = Format(
    "salesforce.opportunities", SOURCE, "Salesforce Opportunity.csv", read_opportunities,
    signature=("Id", "Name", "AccountId", "OwnerId", "StageName", "Amount", "CloseDate", "CreatedDate",
               "IsClosed", "IsWon", "Probability", "ForecastCategoryName", "LeadSource"),
    min_match=4,
)
FORMATS = [STAGES, HISTORY, OPPORTUNITIES]
