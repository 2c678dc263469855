"""Bitrix24: crm.deal.list / crm.stagehistory.list / crm.status.list (JSON, CSV) and the UI export."""

from __future__ import annotations

import json

import pandas as pd

TS = pd.Timestamp


def test_deal_list_json_with_the_status_list_beside(read, fixtures):
    export = read(fixtures / "bitrix24" / "api" / "deals.json")
    deals = export.frames["deals"].set_index("deal_key")
    assert list(deals.index) == ["bitrix24:11", "bitrix24:12", "bitrix24:13", "bitrix24:14"]
    # stage names come from crm.status.list; C1: is pipeline (category) 1
    assert deals["current_stage"].tolist() == ["Подготовка документов", "Сделка успешна",
                                               "Проверка дилера", "Анализ причины провала"]
    assert deals["pipeline"].tolist() == ["0", "0", "1", "1"]
    assert deals["outcome"].tolist() == ["open", "won", "open", "lost"]  # P, S, P, F
    assert deals["amount"].tolist() == [120000.0, 0.0, 5000.5, 7000.0]
    assert deals["currency"].tolist() == ["RUB", "USD", "RUB", "RUB"]
    # ISO with offsets: +03:00 and +05:00 both land in UTC
    assert deals.loc["bitrix24:11", "created_at"] == TS("2021-05-08 00:59:51")
    assert deals.loc["bitrix24:13", "created_at"] == TS("2021-05-11 04:00:00")
    assert deals.loc["bitrix24:11", "expected_close_date"] == TS("2021-06-30")
    assert pd.isna(deals.loc["bitrix24:11", "closed_at"])
    assert deals.loc["bitrix24:12", "closed_at"] == TS("2021-05-20 12:30:00")
    attrs = json.loads(deals.loc["bitrix24:11", "attributes"])
    assert attrs["UF_CRM_1610000000"] == '["a", "b"]' and attrs["UTM_SOURCE"] == "google"
    [bad] = export.rejected
    assert bad.row_number == 5 and "unknown outcome 'X' (column 'STAGE_SEMANTIC_ID'" in bad.reason
    assert not export.warnings


def test_status_list_orders_stages_and_skips_other_lists(read, fixtures):
    export = read(fixtures / "bitrix24" / "api" / "statuses.json")
    stages = export.frames["pipeline_stages"]
    one = stages[stages["pipeline"] == "1"]
    assert one[["stage", "stage_order", "kind"]].values.tolist() == [
        ["Заявка дилера", 1, "open"], ["Проверка дилера", 2, "open"], ["Договор подписан", 3, "won"],
        ["Отказ", 4, "lost"], ["Анализ причины провала", 5, "lost"]]
    assert export.rows_read == 9  # the SOURCE entry is not a deal stage
    assert "1 statuses of other lists" in export.warnings[0]


def test_stage_history_in_order_with_created_events(read, fixtures):
    export = read(fixtures / "bitrix24" / "api" / "stagehistory.json")
    events = export.frames["stage_events"]
    assert events[["deal_key", "stage", "entered_at", "origin"]].values.tolist() == [
        ["bitrix24:12", "Новая", TS("2021-05-09 07:00:00"), "created"],
        ["bitrix24:12", "Подготовка документов", TS("2021-05-15 09:00:00"), "history"],
        ["bitrix24:12", "Сделка успешна", TS("2021-05-20 12:30:00"), "history"],
        ["bitrix24:13", "Заявка дилера", TS("2021-05-11 04:00:00"), "created"],
        ["bitrix24:13", "Проверка дилера", TS("2021-05-12 04:00:00"), "history"],
    ]
    assert [(r.row_number, r.reason) for r in export.rejected] == [
        (6, "unparseable entered_at 'вчера' (column 'CREATED_TIME')")]


def test_deal_list_csv_without_status_list_names_stages_by_id(read, fixtures):
    export = read(fixtures / "bitrix24" / "deals_api.csv", companions=[])
    deals = export.frames["deals"]
    assert deals["current_stage"].tolist() == ["NEW", "EXECUTING", "WON", "LOSE"]
    assert deals["pipeline"].tolist() == ["0", "2", "2", "2"]
    # no STAGE_SEMANTIC_ID: WON and LOSE ids decide
    assert deals["outcome"].tolist() == ["open", "open", "won", "lost"]
    [bad] = export.rejected
    assert bad.row_number == 5 and "unknown outcome of closed deal in stage 'C2:UC_CUSTOM'" in bad.reason
    stages = export.frames["pipeline_stages"]
    assert stages[stages["pipeline"] == "0"][["stage", "kind"]].values.tolist() == [
        ["NEW", "open"], ["WON", "won"], ["LOSE", "lost"]]
    assert any("pipeline '2'" in w and "taken as won: WON; taken as lost: LOSE" in w for w in export.warnings)


def test_ui_export_windows_1251(read, fixtures):
    export = read(fixtures / "bitrix24" / "ui_export_cp1251.csv", timezone="Asia/Yekaterinburg",
                  companions=[])
    deals = export.frames["deals"]
    assert deals["native_id"].tolist() == ["301", "302", "303", "304"]
    assert deals["pipeline"].tolist() == ["Общее"] * 4
    assert deals["amount"].tolist() == [25000.0, 1250.5, 99999.99, 10000.0]
    assert deals["outcome"].tolist() == ["open", "open", "won", "lost"]
    assert deals["created_at"].tolist()[0] == TS("2024-03-01 04:15:00")  # UTC+5
    assert deals["expected_close_date"].tolist()[1] == TS("2024-04-15")
    assert json.loads(deals["attributes"][1]) == {"Комментарий": "первый\nвторой"}
    [bad] = export.rejected
    assert bad.row_number == 5 and "'Замер выполнен'" in bad.reason


def test_ui_export_saved_as_html_xls(read, tmp_path):
    path = tmp_path / "deals.xls"
    path.write_text("<html><body><table><tr><th>ID</th><th>Название сделки</th><th>Стадия сделки</th>"
                    "<th>Сумма</th><th>Валюта</th><th>Дата создания</th></tr>"
                    "<tr><td>9</td><td>Тест</td><td>Сделка провалена</td><td>1 000</td><td>RUB</td>"
                    "<td>01.03.2024 10:00:00</td></tr></table></body></html>", encoding="utf-8")
    deals = read(path, companions=[]).frames["deals"]
    assert deals[["deal_key", "outcome", "amount", "created_at"]].values.tolist() == [
        ["bitrix24:9", "lost", 1000.0, TS("2024-03-01 10:00:00")]]


def test_rest_lists_saved_as_csv_read_like_the_json(read, fixtures, tmp_path):
    for name, key in (("statuses", None), ("stagehistory", "items")):
        data = json.loads((fixtures / "bitrix24" / "api" / f"{name}.json").read_text())
        records = data["result"][key] if key else data["result"]
        pd.DataFrame(records).to_csv(tmp_path / f"{name}.csv", index=False, sep=";")
    from_csv = read(tmp_path / "stagehistory.csv")  # statuses.csv beside it names the stages
    from_json = read(fixtures / "bitrix24" / "api" / "stagehistory.json")
    columns = ["deal_key", "pipeline", "stage", "entered_at", "origin"]
    pd.testing.assert_frame_equal(from_csv.frames["stage_events"][columns],
                                  from_json.frames["stage_events"][columns])
    statuses = read(tmp_path / "statuses.csv").frames["pipeline_stages"]
    assert len(statuses) == 9 and statuses["stage"].iloc[0] == "Новая"
