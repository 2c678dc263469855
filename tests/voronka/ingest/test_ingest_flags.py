"""Real deals load, flagged, instead of being quarantined (issue 13, item 2).

- a close date without a time (or at local midnight) on the creation day is no close before the
  creation: compared by day in the source's time zone, set to created_at;
- a close on an earlier day than the creation is kept and flagged is_closed_before_created;
- a deal without a creation date loads with created_at filled and is_created_at_missing;
- a closed deal whose close date is after its export closes at the export (is_closed_after_export);
- a closed deal in a stage of unknown outcome loads as `unknown`, settled by stage_outcomes.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from voronka.ingest import outcomes
from voronka.ingest.loader import load_files

TS = pd.Timestamp

STAGES = """pipeline,stage,stage_order,kind,crm_probability
Sales,New,1,open,0.1
Sales,Won,2,won,1.0
Sales,Lost,3,lost,0.0
"""
DEALS_HEADER = ("source_system,native_id,pipeline,title,owner,lead_source,segment,region,product,"
                "amount,currency,created_at,expected_close_date,closed_at,outcome,lost_reason,"
                "current_stage,exported_at\n")


def deal(native_id: str, created: str, closed: str, outcome: str, stage: str,
         exported: str = "2026-02-01 00:00:00") -> str:
    return f"crm,{native_id},Sales,T,Ann,web,SMB,EU,A,100,USD,{created},,{closed},{outcome},,{stage},{exported}"


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    yield connection
    connection.close()


def rows(con, key_prefix: str = "") -> dict:
    frame = con.execute(
        "select deal_key, outcome, created_at, closed_at, is_close_date_only, is_closed_before_created, "
        "is_created_at_missing from raw.deals where deal_key like ? order by deal_key", [key_prefix + "%"]).df()
    return {r.deal_key: r for r in frame.itertuples()}


def test_canonical_dates_close_before_creation_and_missing_creation_are_flagged_not_quarantined(tmp_path, con):
    (tmp_path / "stages.csv").write_text(STAGES)
    (tmp_path / "events.csv").write_text(
        "source_system,native_id,pipeline,stage,entered_at,origin\n"
        "crm,5,Sales,New,2026-01-03 09:00:00,history\n")
    (tmp_path / "deals.csv").write_text(DEALS_HEADER + "\n".join([
        deal("1", "2026-01-05 10:00:00", "2026-01-05", "won", "Won"),           # a date, on the creation day
        deal("2", "2026-01-05 10:00:00", "2026-01-04", "lost", "Lost"),         # a day before: kept, flagged
        deal("3", "2026-01-05 10:00:00", "2026-01-05 09:00:00", "won", "Won"),  # an hour before, same day
        deal("4", "", "", "open", "New"),                                       # no creation date, open
        deal("5", "", "", "open", "New"),                                       # ... with a stage event
        deal("6", "", "2026-01-10 12:00:00", "lost", "Lost"),                   # ... closed
        deal("7", "2026-01-05 10:00:00", "2026-01-20 15:00:00", "won", "Won"),  # nothing odd
        deal("8", "2026-01-05 10:00:00", "2026-03-15", "lost", "Lost"),         # lost, planned date kept
    ]) + "\n")
    results = {r.file: r for r in load_files(con, [tmp_path / "stages.csv", tmp_path / "events.csv",
                                                   tmp_path / "deals.csv"])}
    d = results["deals.csv"]
    assert (d.rows_read, d.rows_loaded, d.rows_quarantined) == (8, 8, 0)
    assert d.flagged == {"is_close_date_only": 3, "is_closed_before_created": 1, "is_created_at_missing": 3,
                         "is_closed_after_export": 1, "outcome_unknown": 0}
    got = rows(con)
    assert got["crm:1"].closed_at == TS("2026-01-05 10:00:00")  # set to created_at, not midnight before it
    assert (got["crm:1"].is_close_date_only, got["crm:1"].is_closed_before_created) == (True, False)
    assert got["crm:2"].closed_at == TS("2026-01-04") and got["crm:2"].is_closed_before_created
    assert got["crm:3"].closed_at == TS("2026-01-05 09:00:00")  # as given; same day: not flagged
    assert not got["crm:3"].is_closed_before_created
    assert got["crm:4"].created_at == TS("2026-02-01") and got["crm:4"].is_created_at_missing  # export time
    assert got["crm:5"].created_at == TS("2026-01-03 09:00:00")  # its first stage event
    assert got["crm:6"].created_at == TS("2026-01-10 12:00:00")  # its close
    assert not got["crm:7"].is_close_date_only and not got["crm:7"].is_created_at_missing
    # closed by the export (2026-02-01) at the latest, though its date says 03-15: else the as-of
    # marts count it open for six weeks (11 lost deals of the real Salesforce org)
    assert got["crm:8"].closed_at == TS("2026-02-01")
    after = dict(con.execute("select deal_key, is_closed_after_export from raw.deals").fetchall())
    assert [k for k, v in after.items() if v] == ["crm:8"]
    flags = con.execute("select count(*) from raw.deals where is_close_date_only is null "
                        "or is_closed_before_created is null or is_created_at_missing is null").fetchone()[0]
    assert flags == 0


def test_bitrix24_close_date_at_local_midnight_on_the_creation_day_is_not_before_it(tmp_path, con):
    # CLOSEDATE is a day written as local midnight with the portal's offset (+03:00); the deal
    # was created at 10:15 local that day: 2,125 of 7,769 real deals were quarantined for this.
    (tmp_path / "deals.csv").write_text(
        "ID,TITLE,STAGE_ID,CATEGORY_ID,STAGE_SEMANTIC_ID,OPPORTUNITY,CURRENCY_ID,CLOSEDATE,CLOSED,DATE_CREATE\n"
        "1,A,WON,0,S,100.00,RUB,2024-03-05T00:00:00+03:00,Y,2024-03-05T10:15:00+03:00\n"
        "2,B,LOSE,0,F,100.00,RUB,2024-03-04T00:00:00+03:00,Y,2024-03-05T10:15:00+03:00\n"
        "3,C,NEW,0,P,100.00,RUB,2024-03-30T00:00:00+03:00,N,2024-03-05T10:15:00+03:00\n")
    [r] = load_files(con, [tmp_path / "deals.csv"], timezone="UTC")  # the zone is the text's offset
    assert (r.rows_loaded, r.rows_quarantined) == (3, 0)
    got = rows(con, "bitrix24:")
    assert got["bitrix24:1"].closed_at == got["bitrix24:1"].created_at == TS("2024-03-05 07:15:00")
    assert got["bitrix24:1"].is_close_date_only and not got["bitrix24:1"].is_closed_before_created
    assert got["bitrix24:2"].is_closed_before_created and got["bitrix24:2"].closed_at == TS("2024-03-03 21:00")
    assert not got["bitrix24:3"].is_close_date_only  # open: no close


def test_amocrm_close_seconds_before_creation_loads_unflagged(tmp_path, con):
    # The only won deal of a real amoCRM export: closed 13:32:00, created 13:32:57.
    (tmp_path / "deals.csv").write_text(
        "ID,Название сделки,Бюджет ,Дата создания сделки,Дата закрытия,Этап сделки,Воронка\n"
        "1,A,100,05.03.2024 13:32:57,05.03.2024 13:32:00,Успешно реализовано,Основная\n"
        "2,B,100,05.03.2024 13:32:57,не закрыта,Переговоры,Основная\n", encoding="utf-8")
    [r] = load_files(con, [tmp_path / "deals.csv"], timezone="Europe/Moscow")
    assert (r.rows_loaded, r.rows_quarantined) == (2, 0)
    won = rows(con, "amocrm:")["amocrm:1"]
    assert won.outcome == "won" and not won.is_closed_before_created and not won.is_close_date_only
    assert won.closed_at == TS("2024-03-05 10:32:00")  # kept as given (dbt uses greatest(closed, created))


@pytest.mark.parametrize("zone,before", [("America/Los_Angeles", False), ("UTC", True)])
def test_salesforce_close_date_is_compared_by_day_in_the_org_time_zone(tmp_path, con, zone, before):
    # CreatedDate is UTC: 02:00Z on Jan 6 is Jan 5, 18:00 in Los Angeles, the day of the CloseDate.
    (tmp_path / "Opportunity.csv").write_text(
        "Id,Name,StageName,Amount,CloseDate,IsClosed,IsWon,CreatedDate\n"
        "0061,A,Closed Won,500,2024-01-05,true,true,2024-01-06T02:00:00.000Z\n")
    [r] = load_files(con, [tmp_path / "Opportunity.csv"], timezone=zone)
    assert (r.rows_loaded, r.rows_quarantined) == (1, 0)
    got = rows(con, "salesforce:")["salesforce:0061"]
    assert got.is_close_date_only and got.is_closed_before_created == before
    assert got.closed_at == (TS("2024-01-05") if before else TS("2024-01-06 02:00:00"))


BITRIX_UI = ("ID;Название сделки;Стадия сделки;Сумма;Валюта;Дата создания;Дата закрытия;Направление;Закрыта\n"
             "1;A;Выдано;100;RUB;01.03.2024 10:00:00;05.03.2024;Лизинг;Да\n"
             "2;B;Отложенные;100;RUB;01.03.2024 10:00:00;06.03.2024;Лизинг;Да\n"
             "3;C;Отложенные;100;RUB;01.03.2024 10:00:00;;Лизинг;Нет\n"
             "4;D;Сделка успешна;100;RUB;01.03.2024 10:00:00;07.03.2024;Лизинг;Да\n")


def test_closed_deals_of_unknown_outcome_load_and_common_names_are_settled(tmp_path, con):
    (tmp_path / "deals.csv").write_text(BITRIX_UI, encoding="utf-8")
    [r] = load_files(con, [tmp_path / "deals.csv"])
    assert (r.rows_loaded, r.rows_quarantined) == (4, 0)
    assert r.flagged["outcome_unknown"] == 1
    got = rows(con, "bitrix24:")
    assert [got[f"bitrix24:{i}"].outcome for i in range(1, 5)] == ["won", "unknown", "open", "won"]
    assert pd.notna(got["bitrix24:2"].closed_at)  # closed, outcome unknown: it keeps its close


def test_stage_outcomes_settle_unknown_outcomes_now_and_for_deals_already_loaded(tmp_path, con):
    (tmp_path / "deals.csv").write_text(BITRIX_UI, encoding="utf-8")
    load_files(con, [tmp_path / "deals.csv"])
    assert con.execute("select kind from raw.pipeline_stages where stage = 'Отложенные'").fetchone() == ("unknown",)
    rules = outcomes.validate({"Лизинг": {"отложенные": "lost"}})
    load_files(con, [], stage_outcomes=rules)  # no new file: the rule settles what is loaded
    got = rows(con, "bitrix24:")
    assert [got[f"bitrix24:{i}"].outcome for i in range(1, 5)] == ["won", "lost", "open", "won"]
    assert con.execute("select kind from raw.pipeline_stages where stage = 'Отложенные'").fetchone() == ("lost",)


def test_stage_outcomes_per_pipeline_win_over_any_pipeline_and_defaults():
    rules = outcomes.validate({"*": {"Выдано": "lost", "Hold": "lost"}, "B": {"Hold": "won"}})
    pipeline = pd.Series(["A", "A", "B", "B", "A"])
    stage = pd.Series(["Выдано", "Hold", "Hold", "Closed Won", "Limbo"])
    assert outcomes.settled(pipeline, stage, rules).tolist() == ["lost", "lost", "won", "won", None]
    with pytest.raises(ValueError, match="stage_outcomes.A.Hold: 'maybe' is not won, lost or open"):
        outcomes.validate({"A": {"Hold": "maybe"}})


def test_a_stage_settled_as_open_drops_the_close():
    deals = pd.DataFrame({"pipeline": ["P"], "current_stage": ["Hold"], "outcome": ["unknown"],
                          "closed_at": [TS("2024-01-01")]})
    out = outcomes.settle_deals(deals, outcomes.validate({"P": {"Hold": "open"}}))
    assert out["outcome"].tolist() == ["open"] and out["closed_at"].isna().all()


def test_salesforce_closed_without_iswon_is_unknown(tmp_path, con):
    (tmp_path / "Opportunity.csv").write_text(
        "Id,Name,StageName,Amount,CloseDate,IsClosed,CreatedDate\n"
        "0061,A,Shipped,500,2024-01-09,true,2024-01-06T02:00:00.000Z\n"
        "0062,B,Prospecting,500,2024-03-09,false,2024-01-06T02:00:00.000Z\n")
    [r] = load_files(con, [Path(tmp_path / "Opportunity.csv")])
    assert (r.rows_loaded, r.rows_quarantined) == (2, 0)
    got = rows(con, "salesforce:")
    assert [got["salesforce:0061"].outcome, got["salesforce:0062"].outcome] == ["unknown", "open"]
