"""Closed deals whose outcome the CRM does not say: settled by voronka.yaml `stage_outcomes`.

A deal the CRM marks closed (CLOSED=Y, IsClosed, a closed stage) in a stage that is neither won
nor lost ('Выдано', 'Отложенные', a Bitrix24 stage without STAGE_SEMANTIC_ID, a Salesforce
IsClosed without IsWon) is loaded with outcome `unknown`. `stage_outcomes` in voronka.yaml names
the outcome of such stages per pipeline (`"*"`: any pipeline):

    stage_outcomes:
      "*": {Выдано: won, Отказ клиента: lost}
      Leasing: {Отложенные: lost}

A few common names are settled without being configured (DEFAULT_STAGE_OUTCOMES); the
configuration wins over them, a pipeline's own entry over "*". Only unknown outcomes (and stages
of kind unknown) are settled: what the CRM says is never overridden.
"""

from __future__ import annotations

import re

import duckdb
import pandas as pd

SETTLED_OUTCOMES = ("won", "lost", "open")
ANY_PIPELINE = "*"

# Stage names (compared case- and spacing-blind) whose outcome is clear in any CRM.
DEFAULT_STAGE_OUTCOMES = {
    **dict.fromkeys(("выдано", "выдан", "оплачено", "оплачен", "сделка успешна", "успешно реализовано",
                     "успешно", "выиграна", "closed won", "won", "closed - won"), "won"),
    **dict.fromkeys(("отказ", "отказано", "не реализовано", "закрыто и не реализовано", "сделка провалена",
                     "провалена", "проиграна", "closed lost", "lost", "closed - lost"), "lost"),
}


def _norm(name) -> str:
    return re.sub(r"\s+", " ", str(name)).strip().casefold().replace("ё", "е")


def validate(data, source: str = "voronka.yaml") -> dict:
    """`stage_outcomes` as {pipeline: {normalised stage: outcome}}; ValueError naming the entry."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("stage_outcomes must map pipelines (or \"*\") to {stage: won|lost|open}")
    rules = {}
    for pipeline, stages in data.items():
        if not isinstance(stages, dict):
            raise ValueError(f"stage_outcomes.{pipeline} must map stage names to won, lost or open")
        for stage, outcome in stages.items():
            if str(outcome).strip().lower() not in SETTLED_OUTCOMES:
                raise ValueError(f"stage_outcomes.{pipeline}.{stage}: {outcome!r} is not won, lost or open")
            rules.setdefault(str(pipeline), {})[_norm(stage)] = str(outcome).strip().lower()
    return rules


def settled(pipeline: pd.Series, stage: pd.Series, rules: dict) -> pd.Series:
    """The outcome rules and defaults give each (pipeline, stage); None where none does."""
    key = stage.map(_norm)
    out = key.map(DEFAULT_STAGE_OUTCOMES)
    for scope in (ANY_PIPELINE, *[p for p in rules if p != ANY_PIPELINE]):
        table = rules.get(scope) or {}
        if not table:
            continue
        applies = pd.Series(True, index=stage.index) if scope == ANY_PIPELINE else pipeline.astype(str).eq(scope)
        found = key.map(table)
        out = out.where(~(applies & found.notna()), found)
    return out.astype(object).where(out.notna(), None)


def _settle(frame: pd.DataFrame, column: str, stage_column: str, rules: dict) -> tuple[pd.DataFrame, pd.Series]:
    """frame with `column` 'unknown' replaced where the rules (or defaults) settle its stage;
    returns (frame, the settled values by row)."""
    unknown = frame[column].eq("unknown")
    if not unknown.any():
        return frame, frame[column].iloc[:0]
    values = settled(frame.loc[unknown, "pipeline"], frame.loc[unknown, stage_column], rules)
    values = values[values.notna()]
    if values.empty:
        return frame, values
    frame = frame.copy()
    frame.loc[values.index, column] = values
    return frame, values


def settle_deals(deals: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """Deals with outcome unknown whose stage the rules (or defaults) settle get that outcome; a
    deal settled as open loses its closed_at."""
    deals, outcome = _settle(deals, "outcome", "current_stage", rules)
    reopened = outcome.index[outcome.eq("open").to_numpy()]
    if len(reopened):
        deals.loc[reopened, "closed_at"] = pd.NaT
    return deals


def settle_stages(stages: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """Stages of kind unknown that the rules (or defaults) settle get that kind."""
    return _settle(stages, "kind", "stage", rules)[0]


def resettle_unknown_outcomes(con: duckdb.DuckDBPyConnection, rules: dict) -> int:
    """Deals and stages already loaded with outcome (kind) unknown that stage_outcomes (or the
    defaults) now settle: updated in place, so adding a rule needs no reload. Returns deals settled."""
    unknown = con.execute("select deal_key, pipeline, current_stage, outcome, closed_at from raw.deals "
                          "where outcome = 'unknown'").df()
    stages = con.execute("select pipeline, stage, kind from raw.pipeline_stages where kind = 'unknown'").df()
    settled_deals = settle_deals(unknown, rules) if len(unknown) else unknown
    changed = settled_deals[settled_deals["outcome"] != "unknown"] if len(unknown) else unknown
    settled_stages = settle_stages(stages, rules) if len(stages) else stages
    changed_stages = settled_stages[settled_stages["kind"] != "unknown"] if len(stages) else stages
    if len(changed):
        con.register("settled_deals", changed[["deal_key", "outcome", "closed_at"]])
        try:
            con.execute("update raw.deals set outcome = s.outcome, closed_at = s.closed_at "
                        "from settled_deals s where raw.deals.deal_key = s.deal_key")
        finally:
            con.unregister("settled_deals")
    if len(changed_stages):
        con.register("settled_stages", changed_stages)
        try:
            con.execute("update raw.pipeline_stages set kind = s.kind from settled_stages s "
                        "where raw.pipeline_stages.pipeline = s.pipeline and raw.pipeline_stages.stage = s.stage")
        finally:
            con.unregister("settled_stages")
    return len(changed)
