"""The expectation suites on the raw tables: what each checks, on which rows, and whether a
failure blocks the marts.

A suite runs on one frame per raw table (`TABLE_QUERIES`): the table's rows the marts will read
(deals the CRM marks deleted are left out, as dbt leaves them out), with the columns of other
tables a check needs joined in (the kind of the deal's stage, the deal's created_at for its
events). `integrity` suites guard what would poison the marts — a duplicate key fans a join
out, an unknown stage or an outcome at odds with its stage miscounts the funnel, a negative amount
or a won deal without closed_at misstates bookings — so they block the dbt assets downstream.
`plausibility` suites (times in order, nothing after the export) warn: the marts stay right
row by row, but the data deserves a look.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from voronka.ingest.canonical import EVENT_ORIGINS, OUTCOMES, STAGE_KINDS

# Stage kinds per (pipeline, stage), one row each even if the stage list holds a duplicate (the
# pipeline_stages suite reports that) so a join never fans a table out.
_KINDS = "(select pipeline, stage, any_value(kind) as kind from raw.pipeline_stages group by pipeline, stage)"

TABLE_QUERIES: dict[str, str] = {
    "deals": f"""
        select
            d.deal_key, d.source_system, d.native_id, d.pipeline, d.current_stage, d.outcome,
            cast(d.amount as double) as amount, d.currency, d.created_at, d.closed_at, d.exported_at,
            k.kind as stage_kind,
            -- a won or lost stage holds deals of that outcome; an open stage (or one of unknown
            -- kind) may hold deals the CRM closed without saying how (outcome unknown)
            case when k.kind in ('won', 'lost') then k.kind end as terminal_stage_kind,
            -- the loader compares close and creation by day in the source's time zone and flags a
            -- close on an earlier day (is_closed_before_created): an unflagged close is at most a
            -- day before the creation (the zone's offset), a flagged one is not checked
            case when not coalesce(d.is_closed_before_created, false)
                then d.closed_at + interval 1 day end as closed_at_unflagged
        from raw.deals d
        left join {_KINDS} k on k.pipeline = d.pipeline and k.stage = d.current_stage
        where not coalesce(d.is_deleted, false)
    """,
    "stage_events": f"""
        select
            e.event_key, e.deal_key, e.pipeline, e.stage, e.entered_at, e.origin,
            k.kind as stage_kind, d.created_at as deal_created_at, d.exported_at as deal_exported_at
        from raw.stage_events e
        left join {_KINDS} k on k.pipeline = e.pipeline and k.stage = e.stage
        left join (
            select deal_key, any_value(created_at) as created_at, any_value(exported_at) as exported_at,
                bool_or(coalesce(is_deleted, false)) as is_deleted
            from raw.deals group by deal_key
        ) d
            on d.deal_key = e.deal_key
        where not coalesce(d.is_deleted, false)
    """,
    "pipeline_stages": "select pipeline, stage, stage_order, kind, crm_probability from raw.pipeline_stages",
}

# Columns that name a failing row in the examples.
INDEX_COLUMNS: dict[str, list[str]] = {
    "deals": ["deal_key", "native_id"],
    "stage_events": ["deal_key", "event_key"],
    "pipeline_stages": ["pipeline", "stage"],
}

# Text columns read as pandas categoricals (keys too: GX then hashes and counts integer codes,
# not millions of strings). None of them is compared with another column, which categoricals
# with different categories would refuse.
CATEGORICAL: dict[str, list[str]] = {
    "deals": ["deal_key", "native_id", "source_system", "pipeline", "current_stage"],
    "stage_events": ["event_key", "deal_key", "pipeline", "stage", "origin", "stage_kind"],
}

EARLIEST_PLAUSIBLE = datetime(2000, 1, 1)  # no CRM deal in the warehouse was created before this


@dataclass(frozen=True)
class Suite:
    name: str
    table: str  # the raw table it checks (its frame is TABLE_QUERIES[table])
    blocking: bool
    description: str
    # (label, expectation) pairs, built on demand so `import great_expectations` stays lazy
    expectations: Callable[[], list[tuple[str, object]]]


def _not_before(later: str, earlier: str):
    """later >= earlier on every row where both are known."""
    import great_expectations as gx

    return gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing")


def _deals_integrity():
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    e = gx.expectations
    return [
        ("deal_key present", e.ExpectColumnValuesToNotBeNull(column="deal_key")),
        ("deal_key unique", e.ExpectColumnValuesToBeUnique(column="deal_key")),
        *[(f"{c} present", e.ExpectColumnValuesToNotBeNull(column=c))
          for c in ("source_system", "native_id", "pipeline", "current_stage", "outcome", "created_at")],
        ("outcome valid", e.ExpectColumnValuesToBeInSet(column="outcome", value_set=list(OUTCOMES))),
        ("current_stage is a stage of its pipeline", e.ExpectColumnValuesToNotBeNull(column="stage_kind")),
        ("outcome agrees with the kind of its stage", e.ExpectColumnPairValuesToBeEqual(
            column_A="outcome", column_B="terminal_stage_kind", ignore_row_if="either_value_is_missing")),
        ("amount not negative", e.ExpectColumnValuesToBeBetween(column="amount", min_value=0)),
        ("closed deal has closed_at", e.ExpectColumnValuesToNotBeNull(
            column="closed_at", row_condition=Column("outcome").is_in(["won", "lost"]))),
        ("closed_at not before created_at", _not_before("closed_at_unflagged", "created_at")),
    ]


def _deals_plausibility():
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    e = gx.expectations
    return [
        ("exported_at present", e.ExpectColumnValuesToNotBeNull(column="exported_at")),
        ("created_at after 2000", e.ExpectColumnValuesToBeBetween(
            column="created_at", min_value=EARLIEST_PLAUSIBLE)),
        ("created_at not after exported_at", _not_before("exported_at", "created_at")),
        ("closed_at not after exported_at", _not_before("exported_at", "closed_at")),
        ("open deal has no closed_at", e.ExpectColumnValuesToBeNull(
            column="closed_at", row_condition=Column("outcome") == "open")),
        ("amount has a currency", e.ExpectColumnValuesToNotBeNull(
            column="currency", row_condition=Column("amount") >= 0)),
        ("currency is a 3-letter code", e.ExpectColumnValuesToMatchRegex(
            column="currency", regex=r"^[A-Za-z]{3}$")),
    ]


def _events_integrity():
    import great_expectations as gx

    e = gx.expectations
    return [
        ("event_key present", e.ExpectColumnValuesToNotBeNull(column="event_key")),
        ("event_key unique", e.ExpectColumnValuesToBeUnique(column="event_key")),
        *[(f"{c} present", e.ExpectColumnValuesToNotBeNull(column=c))
          for c in ("deal_key", "pipeline", "stage", "entered_at", "origin")],
        ("origin valid", e.ExpectColumnValuesToBeInSet(column="origin", value_set=list(EVENT_ORIGINS))),
        ("stage is a stage of its pipeline", e.ExpectColumnValuesToNotBeNull(column="stage_kind")),
    ]


def _events_plausibility():
    import great_expectations as gx

    e = gx.expectations
    return [
        ("the event's deal is in raw.deals", e.ExpectColumnValuesToNotBeNull(column="deal_created_at")),
        ("entered_at not before the deal's created_at", _not_before("entered_at", "deal_created_at")),
        ("entered_at not after the deal's exported_at", _not_before("deal_exported_at", "entered_at")),
    ]


def _stages_integrity():
    import great_expectations as gx

    e = gx.expectations
    return [
        *[(f"{c} present", e.ExpectColumnValuesToNotBeNull(column=c))
          for c in ("pipeline", "stage", "stage_order", "kind")],
        ("stage unique in its pipeline", e.ExpectCompoundColumnsToBeUnique(
            column_list=["pipeline", "stage"])),
        ("kind valid", e.ExpectColumnValuesToBeInSet(column="kind", value_set=list(STAGE_KINDS))),
        ("crm_probability within 0..1", e.ExpectColumnValuesToBeBetween(
            column="crm_probability", min_value=0, max_value=1)),
    ]


def _stages_plausibility():
    import great_expectations as gx

    e = gx.expectations
    return [
        ("stage_order unique in its pipeline", e.ExpectCompoundColumnsToBeUnique(
            column_list=["pipeline", "stage_order"])),
    ]


SUITES: list[Suite] = [
    Suite("deals_integrity", "deals", True,
          "Keys unique and present, outcome valid (open, won, lost or unknown) and agreeing with a "
          "won or lost stage of the deal's pipeline, amount not negative, won and lost deals with a "
          "closed_at, not before created_at unless flagged is_closed_before_created.", _deals_integrity),
    Suite("deals_plausibility", "deals", False,
          "Times plausible and in order (created after 2000, nothing after exported_at), open deals "
          "without closed_at, amounts with a currency.", _deals_plausibility),
    Suite("stage_events_integrity", "stage_events", True,
          "Event keys unique and present, origin valid, stage a stage of the event's pipeline.",
          _events_integrity),
    Suite("stage_events_plausibility", "stage_events", False,
          "The event's deal is known; entered_at not before the deal's created_at nor after its export.",
          _events_plausibility),
    Suite("pipeline_stages_integrity", "pipeline_stages", True,
          "(pipeline, stage) unique, kind valid, crm_probability within 0..1.", _stages_integrity),
    Suite("pipeline_stages_plausibility", "pipeline_stages", False,
          "No two stages of a pipeline share a stage_order.", _stages_plausibility),
]
