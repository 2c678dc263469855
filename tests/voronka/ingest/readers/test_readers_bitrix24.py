"""Bitrix24: crm.deal.list / crm.stagehistory.list / crm.status.list / the deal category lists
(JSON, CSV) and the UI export."""

from __future__ import annotations

import json
import shutil

import duckdb
import pandas as pd
import pytest

from voronka.errors import ExportFormatError
from voronka.ingest.loader import load_files
from voronka.ingest.readers import detect_format, read_export

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
    assert deals["current_stage"].tolist() == ["NEW", "EXECUTING", "WON", "LOSE", "UC_CUSTOM"]
    assert deals["pipeline"].tolist() == ["0", "2", "2", "2", "2"]
    # no STAGE_SEMANTIC_ID: WON and LOSE ids decide; a closed deal (CLOSED=Y) in a custom stage is
    # loaded as closed with outcome unknown (voronka.yaml stage_outcomes settles it), not rejected
    assert deals["outcome"].tolist() == ["open", "open", "won", "lost", "unknown"]
    assert deals["closed_at"].notna().tolist() == [False, False, True, True, True]
    assert export.rejected == []
    stages = export.frames["pipeline_stages"]
    assert stages[stages["pipeline"] == "2"][["stage", "kind"]].values.tolist()[-3:] == [
        ["WON", "won"], ["UC_CUSTOM", "unknown"], ["LOSE", "lost"]]
    assert stages[stages["pipeline"] == "0"][["stage", "kind"]].values.tolist() == [
        ["NEW", "open"], ["WON", "won"], ["LOSE", "lost"]]
    assert any("pipeline '2'" in w and "taken as won: WON; taken as lost: LOSE" in w for w in export.warnings)


def test_ui_export_windows_1251(read, fixtures):
    export = read(fixtures / "bitrix24" / "ui_export_cp1251.csv", timezone="Asia/Yekaterinburg",
                  companions=[])
    deals = export.frames["deals"]
    assert deals["native_id"].tolist() == ["301", "302", "303", "304", "305"]
    assert deals["pipeline"].tolist() == ["Общее"] * 5
    assert deals["amount"].tolist() == [25000.0, 1250.5, 99999.99, 10000.0, 5000.0]
    # 305 is closed ("Закрыта: Да") in a stage that is neither won nor lost: outcome unknown
    assert deals["outcome"].tolist() == ["open", "open", "won", "lost", "unknown"]
    assert deals["created_at"].tolist()[0] == TS("2024-03-01 04:15:00")  # UTC+5
    assert deals["expected_close_date"].tolist()[1] == TS("2024-04-15")
    assert json.loads(deals["attributes"][1]) == {"Комментарий": "первый\nвторой"}
    assert export.rejected == []


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


# --------------------------------------------------------------------------------------------
# Category lists: crm.category.list (entityTypeId 2), crm.dealcategory.list + .default.get

NAMED = ["Продажи", "Продажи", "Продажи", "Продажи", "Дилеры", "Дилеры", "Дилеры"]
NAMED_STAGES = [["Новая", 1, "open"], ["Подготовка КП", 2, "open"], ["Сделка успешна", 3, "won"],
                ["Сделка провалена", 4, "lost"], ["Заявка дилера", 1, "open"],
                ["Договор подписан", 2, "won"], ["Отказ", 3, "lost"]]
NOT_LISTED = ("category 2 is not in the category list beside it (crm.category.list.json); its "
              "pipeline keeps the category id")


def test_the_category_list_beside_names_the_pipelines_of_deals(read, fixtures):
    export = read(fixtures / "bitrix24" / "categories" / "deals.json")
    deals = export.frames["deals"]
    # category 2 is in the deals and the status list but not in the category list: it keeps its id
    assert deals[["native_id", "pipeline", "current_stage"]].values.tolist() == [
        ["21", "Продажи", "Подготовка КП"], ["22", "Дилеры", "Договор подписан"],
        ["23", "2", "Обращение"], ["24", "Продажи", "Сделка провалена"]]
    assert export.warnings == [f"deals.json: {NOT_LISTED}"]
    stages = export.frames["pipeline_stages"]  # the status list beside, named the same way
    assert stages["pipeline"].tolist() == NAMED + ["2", "2", "2"]


def test_the_category_list_beside_names_the_pipelines_of_history_and_statuses(read, fixtures):
    folder = fixtures / "bitrix24" / "categories"
    history = read(folder / "stagehistory.json")
    assert history.frames["stage_events"][["deal_key", "pipeline", "stage"]].values.tolist() == [
        ["bitrix24:21", "Продажи", "Новая"], ["bitrix24:21", "Продажи", "Подготовка КП"],
        ["bitrix24:22", "Дилеры", "Заявка дилера"], ["bitrix24:22", "Дилеры", "Договор подписан"],
        ["bitrix24:23", "2", "Обращение"]]
    assert history.warnings == [f"stagehistory.json: {NOT_LISTED}"]
    statuses = read(folder / "statuses.json")
    stages = statuses.frames["pipeline_stages"]
    assert stages[["pipeline", "stage"]].values.tolist()[:7] == [[p, s[0]] for p, s in zip(NAMED, NAMED_STAGES)]
    assert stages["pipeline"].tolist()[7:] == ["2", "2", "2"]
    assert statuses.warnings[0] == f"statuses.json: {NOT_LISTED}"
    # without the category list the same files name pipelines by id, as before
    alone = read(folder / "deals.json", companions=[folder / "statuses.json"])
    assert alone.frames["deals"]["pipeline"].tolist() == ["0", "1", "2", "0"] and not alone.warnings


def test_the_legacy_list_and_the_default_category_name_every_pipeline(read, fixtures, tmp_path):
    folder = fixtures / "bitrix24" / "dealcategories"
    # crm.dealcategory.list leaves out category 0; crm.dealcategory.default.get names it
    stages = read(folder / "statuses.json").frames["pipeline_stages"]
    assert list(dict.fromkeys(stages["pipeline"])) == ["Продажи", "Дилеры", "Сервис"]
    for name in ("crm.dealcategory.list.json", "crm.dealcategory.default.get.json", "statuses.json"):
        shutil.copy(folder / name, tmp_path / name)
    shutil.copy(fixtures / "bitrix24" / "categories" / "deals.json", tmp_path / "deals.json")
    export = read(tmp_path / "deals.json")
    assert export.frames["deals"]["pipeline"].tolist() == ["Продажи", "Дилеры", "Сервис", "Продажи"]
    assert not export.warnings
    (tmp_path / "crm.dealcategory.default.get.json").unlink()  # then category 0 keeps its id
    export = read(tmp_path / "deals.json")
    assert export.frames["deals"]["pipeline"].tolist() == ["0", "Дилеры", "Сервис", "0"]
    assert export.warnings == ["deals.json: category 0 is not in the category list beside it "
                               "(crm.dealcategory.list.json); its pipeline keeps the category id"]


def test_a_category_list_loads_as_the_named_stage_lists_of_its_categories(read, fixtures):
    folder = fixtures / "bitrix24" / "categories"
    export = read(folder / "crm.category.list.json")
    assert export.primary_table == "pipeline_stages"
    assert export.rows_read == 2 and not export.rejected and not export.warnings
    stages = export.frames["pipeline_stages"]
    assert stages[["pipeline", "stage", "stage_order", "kind"]].values.tolist() == [
        [p, *s] for p, s in zip(NAMED, NAMED_STAGES)]
    # each category is one row of the file: its first stage; the others are derived from it
    assert stages["_row_number"].tolist() == [1, 1, 1, 1, 2, 2, 2]
    assert stages["_derived"].tolist() == [False, True, True, True, False, True, True]
    # exactly the rows the status list gives for these pipelines, so loading both cannot conflict
    statuses = read(folder / "statuses.json").frames["pipeline_stages"]
    columns = ["pipeline", "stage", "stage_order", "kind"]
    pd.testing.assert_frame_equal(stages[columns], statuses[columns].iloc[:7])
    legacy = read(fixtures / "bitrix24" / "dealcategories" / "crm.dealcategory.list.json")
    assert legacy.rows_read == 2 and list(dict.fromkeys(legacy.frames["pipeline_stages"]["pipeline"])) == [
        "Дилеры", "Сервис"]


def test_a_category_list_without_a_status_list_beside_is_refused_in_one_line(fixtures, tmp_path):
    path = tmp_path / "crm.category.list.json"
    shutil.copy(fixtures / "bitrix24" / "categories" / "crm.category.list.json", path)
    shutil.copy(fixtures / "bitrix24" / "categories" / "deals.json", tmp_path / "deals.json")
    with pytest.raises(ExportFormatError) as err:
        read_export(path)
    assert str(err.value) == (
        "file crm.category.list.json: a Bitrix24 category list names pipelines only; it loads as their "
        "stage lists, which come from a crm.status.list in the same folder, and there is none: put the "
        "crm.status.list (REST crm.status.list, its DEAL_STAGE… entries) beside it (a crm.deal.list or "
        "crm.stagehistory.list in the folder takes its pipeline names from this file either way)")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    results = {r.file: r for r in load_files(con, [path, tmp_path / "deals.json"])}
    assert results["crm.category.list.json"].status == "refused"
    assert results["crm.category.list.json"].message == str(err.value)
    # the deals beside it still take their names from it (their stage list is inferred)
    assert results["deals.json"].status == "loaded"
    assert sorted(p for (p,) in con.execute("select distinct pipeline from raw.deals").fetchall()) == [
        "2", "Дилеры", "Продажи"]


def test_category_rows_that_cannot_name_a_pipeline_are_rejected(read, fixtures, tmp_path):
    shutil.copy(fixtures / "bitrix24" / "categories" / "statuses.json", tmp_path / "statuses.json")
    path = tmp_path / "categories.json"
    path.write_text(json.dumps({"result": {"categories": [
        {"id": 0, "name": "Продажи", "entityTypeId": 2},
        {"id": "SaaS", "name": "SaaS", "entityTypeId": 2},
        {"id": 1, "name": "", "entityTypeId": 2},
        {"id": 2, "name": "Продажи", "entityTypeId": 2},
        {"id": 0, "name": "Опт", "entityTypeId": 2},
        {"id": 7, "name": "Счета", "entityTypeId": 31},
        {"id": 5, "name": "Тендеры", "entityTypeId": 2},
    ]}}, ensure_ascii=False), encoding="utf-8")
    export = read(path)
    assert export.rows_read == 7
    assert [(r.row_number, r.reason) for r in export.rejected] == [
        (2, "unparseable category id 'SaaS' (column 'id'; a category id is a whole number, like CATEGORY_ID)"),
        (3, "missing pipeline name (column 'name')"),
        (5, "duplicate id '0' (first seen in row 1) with conflicting data: column 'name' is 'Продажи' "
            "there, 'Опт' here"),
        (6, "a category of entityTypeId '31', not of deals (call crm.category.list with entityTypeId 2)"),
        (7, "no deal stages of category 5 in the crm.status.list beside it (ENTITY_ID DEAL_STAGE or "
            "DEAL_STAGE_<id>)")]
    # a name two categories share: the later one is told apart by its id
    assert export.warnings == ["categories.json: category 2 has the name 'Продажи' of an earlier "
                               "category; its pipeline is 'Продажи (2)'"]
    stages = export.frames["pipeline_stages"]
    assert list(dict.fromkeys(stages["pipeline"])) == ["Продажи", "Продажи (2)"]
    assert (~stages["_derived"]).sum() == 2  # the two categories kept


def test_category_lists_saved_as_csv_read_like_the_json(read, fixtures, tmp_path):
    shutil.copy(fixtures / "bitrix24" / "categories" / "statuses.json", tmp_path / "statuses.json")
    legacy = tmp_path / "dealcategories.csv"
    legacy.write_text("ID;NAME;SORT;IS_LOCKED;CREATED_DATE\n0;Продажи;100;N;\n1;Дилеры;200;N;"
                      "2020-03-01T10:00:00+03:00\n", encoding="utf-8")
    assert detect_format(legacy) == "bitrix24.dealcategories"
    from_csv = read(legacy).frames["pipeline_stages"]
    from_json = read(fixtures / "bitrix24" / "categories" / "crm.category.list.json").frames["pipeline_stages"]
    pd.testing.assert_frame_equal(from_csv, from_json)
    legacy.unlink()
    current = tmp_path / "categories.csv"
    current.write_text("id,name,sort,entityTypeId,isDefault\n0,Продажи,100,2,Y\n1,Дилеры,200,2,N\n",
                       encoding="utf-8")
    assert detect_format(current) == "bitrix24.categories"
    statuses = read(tmp_path / "statuses.json").frames["pipeline_stages"]
    assert statuses["pipeline"].tolist() == NAMED + ["2", "2", "2"]
    # a status list is never taken for a category list, whatever columns it keeps
    trimmed = tmp_path / "statuses_trimmed.csv"
    trimmed.write_text("ID;ENTITY_ID;STATUS_ID;NAME;SORT\n1;DEAL_STAGE;NEW;Новая;10\n", encoding="utf-8")
    assert detect_format(trimmed) == "bitrix24.statuses"


def test_the_loader_reconciles_a_folder_with_a_category_list(fixtures, tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(fixtures / "bitrix24" / "categories", inbox)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    results = {r.file: r for r in load_files(con, sorted(inbox.iterdir()))}
    for result in results.values():
        assert result.status == "loaded", result
        assert result.rows_read == result.rows_loaded + result.rows_quarantined
    category = results["crm.category.list.json"]
    assert (category.rows_read, category.rows_loaded, category.rows_quarantined) == (2, 2, 0)
    assert category.stage_events_derived == 0  # the derived rows are stages, not events
    assert con.execute("select count(*) from raw.quarantine").fetchone()[0] == 0
    # the category list and the status list upsert the same named stages: once each, no conflict
    stages = con.execute("select pipeline, stage, stage_order, kind from raw.pipeline_stages "
                         "order by pipeline, stage_order").fetchall()
    assert len(stages) == 10 and len({(p, s) for p, s, _, _ in stages}) == 10
    assert [s for s in stages if s[0] == "Дилеры"] == [("Дилеры", s, o, k) for s, o, k in NAMED_STAGES[4:]]
    deals = dict(con.execute("select native_id, pipeline from raw.deals").fetchall())
    assert deals == {"21": "Продажи", "22": "Дилеры", "23": "2", "24": "Продажи"}
    events = con.execute("select distinct pipeline from raw.stage_events order by 1").fetchall()
    assert events == [("2",), ("Дилеры",), ("Продажи",)]
    log = dict(con.execute("select export_file, rows_read from raw.ingest_log").fetchall())
    assert log["crm.category.list.json"] == 2
