"""Salesforce: OpportunityStage.csv, OpportunityHistory.csv and Opportunity.csv of a
multi-currency org (Data Loader style: every field quoted, 18-character ids, UTC times).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from voronka.simulator.writers.common import (
    _constant,
    _days,
    _decimal,
    _int_text,
    _lookup,
    _nulls,
    _take,
    _text,
    _times,
    _View,
    _where,
    _write_csv,
)

_SF_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_SF_SUFFIX = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", np.uint8)


def salesforce_ids(prefix: str, numbers) -> np.ndarray:
    """18-character Salesforce ids: key prefix (3) + '5g' + '0' + base-62 number (9) + the
    3-character checksum of which of the first 15 characters are upper case."""
    numbers = np.asarray(numbers, np.int64)
    chars = np.empty((len(numbers), 18), np.uint8)
    chars[:, :6] = np.frombuffer((prefix + "5g0").encode("ascii"), np.uint8)
    rest = numbers.copy()
    for i in range(14, 5, -1):
        chars[:, i] = _SF_ALPHABET[rest % 62]
        rest //= 62
    upper = (chars[:, :15] >= ord("A")) & (chars[:, :15] <= ord("Z"))
    weights = 1 << np.arange(5)
    for k in range(3):
        chars[:, 15 + k] = _SF_SUFFIX[(upper[:, 5 * k:5 * k + 5] * weights).sum(axis=1)]
    return chars.view("S18").ravel().astype(str).astype(object)


def _sf_forecast(prob: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ForecastCategory API value, ForecastCategoryName) per stage."""
    api = np.where(kind == "won", "Closed", np.where(kind == "lost", "Omitted",
                   np.where(prob >= 0.7, "Forecast", np.where(prob >= 0.4, "BestCase", "Pipeline"))))
    label = pd.Series(api).map({"Closed": "Closed", "Omitted": "Omitted", "Forecast": "Commit",
                                "BestCase": "Best Case", "Pipeline": "Pipeline"}).to_numpy(object)
    return api.astype(object), label


def write_salesforce(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    kind = v.kind
    n = v.n
    iso = "%Y-%m-%dT%H:%M:%S.000Z"
    prob = np.where(kind == "won", 1.0, np.where(kind == "lost", 0.0,
                                                 v.stages["crm_probability"].fillna(0).to_numpy(float)))
    forecast, forecast_name = _sf_forecast(prob, kind)
    owners = v.all_names("owners")
    owner_ids = dict(zip(owners, salesforce_ids("005", 40_000 + np.arange(len(owners)))))
    opp_id = salesforce_ids("006", v.native_int)
    owner_id = _lookup(owner_ids, v.column("owner"))
    admin = salesforce_ids("005", [39_999])[0]

    # OpportunityStage: one org-wide list (both sales processes); open stages first, by pipeline
    t = np.where(kind == "open", 0, np.where(kind == "won", 1, 2))
    sort_order = np.empty(len(kind), np.int64)
    sort_order[np.lexsort((np.arange(len(kind)), t))] = 1 + np.arange(len(kind))
    stage_rows = len(kind)
    created_stage = "2019-04-01T08:00:00.000Z"
    written = [_write_csv(inbox / "OpportunityStage.csv", [
        ("Id", _text(salesforce_ids("01J", 1 + np.arange(stage_rows)))),
        ("MasterLabel", _text(v.stages["stage"].to_numpy(object))),
        ("ApiName", _text(v.stages["stage"].to_numpy(object))),
        ("IsActive", _constant("true", stage_rows)),
        ("SortOrder", _int_text(sort_order)),
        ("IsClosed", _where(kind != "open", "true", "false")),
        ("IsWon", _where(kind == "won", "true", "false")),
        ("ForecastCategory", _text(forecast)),
        ("ForecastCategoryName", _text(forecast_name)),
        ("DefaultProbability", _int_text(np.round(prob * 100))),
        ("Description", _nulls(stage_rows)),
        ("CreatedById", _constant(admin, stage_rows)),
        ("CreatedDate", _constant(created_stage, stage_rows)),
        ("LastModifiedById", _constant(admin, stage_rows)),
        ("LastModifiedDate", _constant(created_stage, stage_rows)),
        ("SystemModstamp", _constant(created_stage, stage_rows)),
    ], quote_all=True)]

    # OpportunityHistory: a row per stage change, the creation included. CloseDate: the expected
    # close while open, the day of the move on a move into a closed stage.
    e = len(v.ev_t)
    deal = v.ev_deal
    g = v.ev_g
    amount = v.deals["amount"].to_numpy(float)[deal]
    closing = kind[g] != "open"
    close_day = np.where(closing, v.ev_t // 86_400, v.expected_day[deal])
    prev = np.roll(np.arange(e), 1)
    first = v.ev_first
    currency = _take(v.column("currency"), deal)
    written.append(_write_csv(inbox / "OpportunityHistory.csv", [
        ("Id", _text(salesforce_ids("008", 1 + np.arange(e)))),
        ("OpportunityId", _take(opp_id, deal)),
        ("CreatedById", _take(owner_id, deal)),
        ("CreatedDate", _times(v.ev_t, iso)),
        ("StageName", _take(v.stages["stage"].to_numpy(object), g)),
        ("Amount", _decimal(amount)),
        ("ExpectedRevenue", _decimal(amount * prob[g])),
        ("CloseDate", _days(close_day)),
        ("Probability", _int_text(np.round(prob[g] * 100))),
        ("ForecastCategory", _take(forecast, g)),
        ("FromForecastCategory", _take(np.append(forecast, None), np.where(first, len(forecast), v.ev_prev_g))),
        ("FromOpportunityStageName", _take(np.append(v.stages["stage"].to_numpy(object), None),
                                           np.where(first, len(forecast), v.ev_prev_g))),
        ("PrevAmount", _decimal(amount, mask=first)),
        ("PrevCloseDate", _days(np.where(first, -1, close_day[prev]))),
        ("CurrencyIsoCode", currency),
        ("IsDeleted", _constant("false", e)),
        ("SystemModstamp", _times(v.ev_t, iso)),
    ], quote_all=True))

    # Opportunity: CloseDate is the expected close of an open deal, the (UTC) day a closed one closed
    closed = v.closed >= 0
    won = kind[v.deal_g] == "won"
    lost = kind[v.deal_g] == "lost"
    close_day = np.where(closed, v.closed // 86_400, v.expected_day)
    close_dt = close_day.astype("datetime64[D]")
    year = close_dt.astype("datetime64[Y]").astype(np.int64) + 1970
    quarter = (close_dt.astype("datetime64[M]").astype(np.int64) % 12) // 3 + 1
    deal_prob = prob[v.deal_g]
    written.append(_write_csv(inbox / "Opportunity.csv", [
        ("Id", _text(opp_id)),
        ("IsDeleted", _constant("false", n)),
        ("AccountId", _text(salesforce_ids("001", v.native_int))),
        ("RecordTypeId", _take(salesforce_ids("012", 1 + np.arange(len(v.pipelines))), v.deal_pipe)),
        ("Name", _text(v.column("title"))),
        ("Description", _nulls(n)),
        ("StageName", _text(v.column("current_stage"))),
        ("Amount", _decimal(v.deals["amount"].to_numpy(float))),
        ("Probability", _int_text(np.round(deal_prob * 100))),
        ("ExpectedRevenue", _decimal(v.deals["amount"].to_numpy(float) * deal_prob)),
        ("CloseDate", _days(close_day)),
        ("Type", _constant("New Business", n)),
        ("NextStep", _nulls(n)),
        ("LeadSource", _text(v.column("lead_source"))),
        ("IsClosed", _where(closed, "true", "false")),
        ("IsWon", _where(won, "true", "false")),
        ("ForecastCategory", _take(forecast, v.deal_g)),
        ("ForecastCategoryName", _take(forecast_name, v.deal_g)),
        ("CurrencyIsoCode", _text(v.column("currency"))),
        ("CampaignId", _nulls(n)),
        ("HasOpportunityLineItem", _constant("false", n)),
        ("OwnerId", _text(owner_id)),
        ("Owner.Name", _text(v.column("owner"))),
        ("CreatedDate", _times(v.created, iso)),
        ("CreatedById", _text(owner_id)),
        ("LastModifiedDate", _times(v.last_change, iso)),
        ("LastModifiedById", _text(owner_id)),
        ("SystemModstamp", _times(v.last_change, iso)),
        ("FiscalQuarter", _int_text(quarter)),
        ("FiscalYear", _int_text(year)),
        ("Fiscal", pc.binary_join_element_wise(_int_text(year), _int_text(quarter), " ")),
        ("Loss_Reason__c", _text(np.where(lost, v.column("lost_reason"), None))),
        ("Segment__c", _text(v.column("segment"))),
        ("Region__c", _text(v.column("region"))),
        ("Product__c", _text(v.column("product"))),
    ], quote_all=True))
    return written, opp_id
