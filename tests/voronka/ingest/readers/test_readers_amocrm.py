"""amoCRM: the deals export (UTF-8 and Excel-resaved Windows-1251), XLSX, pipelines and events."""

from __future__ import annotations

import json

import openpyxl
import pandas as pd

from voronka.ingest.readers import textfile

TS = pd.Timestamp


def test_deals_export_utf8(read, fixtures):
    export = read(fixtures / "amocrm" / "deals_utf8.csv", timezone="Europe/Moscow", companions=[])
    assert export.source_system == "amocrm" and export.primary_table == "deals"
    deals = export.frames["deals"].set_index("deal_key")
    assert list(deals.index) == ["amocrm:101", "amocrm:102", "amocrm:103", "amocrm:104"]
    assert deals["outcome"].tolist() == ["open", "won", "lost", "open"]
    assert deals["amount"].tolist() == [150000.0, 48500.5, 0.0, 1200000.0]
    # Moscow is UTC+3: local 05.01.2024 12:30 is 09:30 UTC; "не закрыта" is no close.
    assert deals.loc["amocrm:101", "created_at"] == TS("2024-01-05 09:30:00")
    assert pd.isna(deals.loc["amocrm:101", "closed_at"])
    assert deals.loc["amocrm:102", "closed_at"] == TS("2024-01-20 15:15:00")
    assert deals["pipeline"].tolist() == ["Основная", "Основная", "Основная", "Дилеры"]
    assert deals.loc["amocrm:101", "current_stage"] == "Переговоры"
    assert deals.loc["amocrm:101", "product"] == "Станок" and deals.loc["amocrm:101", "lead_source"] == "Сайт"
    attrs = json.loads(deals.loc["amocrm:101", "attributes"])
    # the repeated columns are both kept; the multi-line quoted note survives with its quotes
    assert attrs["Товар (2)"] == "Фреза" and attrs["Источник (2)"] == "Звонок"
    assert attrs["Примечание"] == 'Клиент просил перезвонить\nпосле обеда; "срочно"'
    assert attrs["utm_source"] == "yandex" and "Бюджет" not in attrs
    # exported_at: the newest time in the export (Дата редактирования of deal 102)
    assert set(deals["exported_at"]) == {TS("2024-01-20 15:15:00")}


def test_stage_list_is_inferred_without_the_pipelines_export(read, fixtures):
    export = read(fixtures / "amocrm" / "deals_cp1251.csv", timezone="Europe/Moscow", companions=[])
    stages = export.frames["pipeline_stages"]
    assert stages[["stage", "stage_order", "kind"]].values.tolist() == [
        ["Неразобранное", 1, "open"], ["Взяли в работу", 2, "open"],
        ["Успешно реализовано", 3, "won"], ["Закрыто и не реализовано", 4, "lost"]]
    assert stages["_inferred"].all()
    assert len(export.warnings) == 1
    assert "taken as won: Успешно реализовано" in export.warnings[0]
    assert "taken as lost: Закрыто и не реализовано" in export.warnings[0]


def test_excel_resaved_windows_1251_with_decimal_commas(read, fixtures):
    export = read(fixtures / "amocrm" / "deals_cp1251.csv", timezone="Europe/Moscow", companions=[])
    deals = export.frames["deals"]
    assert export.rows_read == 3  # the trailing ';;;;' rows are not rows
    assert deals["title"].tolist() == ["Ёлки оптом", "Гирлянды", "Игрушки"]
    assert deals["amount"].tolist() == [1234.56, 99.9, 12000.0]
    assert deals["region"].tolist() == ["Москва", "Казань", "Пермь"]
    assert deals["created_at"].tolist()[0] == TS("2024-02-01 07:00")  # 'HH:MM' without seconds
    assert deals["outcome"].tolist() == ["open", "won", "open"]


def test_xlsx_export_reads_like_the_csv(read, fixtures, tmp_path):
    table = textfile.load(fixtures / "amocrm" / "deals_utf8.csv")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(table.header)
    for row in table.frame.itertuples(index=False):
        ws.append(list(row))
    ws.append([None] * len(table.header))  # empty trailing row
    path = tmp_path / "Сделки.xlsx"
    wb.save(path)
    from_xlsx = read(path, timezone="Europe/Moscow", companions=[]).frames["deals"]
    from_csv = read(fixtures / "amocrm" / "deals_utf8.csv", timezone="Europe/Moscow", companions=[]).frames["deals"]
    pd.testing.assert_frame_equal(from_xlsx, from_csv)


def test_pipelines_export_gives_stage_order_and_terminal_kinds(read, fixtures):
    export = read(fixtures / "amocrm" / "history" / "pipelines.json")
    stages = export.frames["pipeline_stages"]
    dealers = stages[stages["pipeline"] == "Дилеры"]
    assert dealers[["stage", "stage_order", "kind"]].values.tolist() == [
        ["Первичный контакт", 1, "open"], ["Договор подписан", 2, "open"],
        ["Сделка состоялась", 3, "won"], ["Отказ", 4, "lost"]]
    assert export.rows_read == 9 and not export.rejected


def test_renamed_terminal_stages_are_known_from_the_pipelines_export_beside(read, fixtures):
    # deals.csv sits beside pipelines.json: status 142/143 decide won/lost, not the names
    export = read(fixtures / "amocrm" / "history" / "deals.csv", timezone="Europe/Moscow")
    deals = export.frames["deals"].set_index("deal_key")
    assert deals["outcome"].to_dict() == {"amocrm:101": "open", "amocrm:104": "won", "amocrm:105": "lost"}
    assert not export.warnings  # nothing inferred
    assert "_inferred" not in export.frames["pipeline_stages"]
    assert len(export.frames["pipeline_stages"]) == 9


def test_events_become_stage_events_in_time_order(read, fixtures):
    export = read(fixtures / "amocrm" / "history" / "events.json")
    frame = export.frames["stage_events"]
    derived = frame["_derived"].eq(True)
    events = frame[~derived]
    assert events[["deal_key", "pipeline", "stage", "entered_at"]].values.tolist() == [
        ["amocrm:101", "Основная", "Первичный контакт", TS("2024-01-05 09:30:00")],
        ["amocrm:101", "Основная", "Переговоры", TS("2024-01-05 10:00:00")],
        ["amocrm:104", "Дилеры", "Сделка состоялась", TS("2024-01-08 21:06:40")],
    ]
    assert set(events["origin"]) == {"history"}
    assert events["_row_number"].tolist() == [2, 1, 4]  # position in the events list
    # value_before of each deal's first move: the stage it was created in, one second before the
    # move (dbt's int_stage_events moves it to created_at); none for the rejected deal 105.
    created = frame[derived]
    assert created[["deal_key", "pipeline", "stage", "entered_at", "origin"]].values.tolist() == [
        ["amocrm:101", "Основная", "Неразобранное", TS("2024-01-05 09:29:59"), "created"],
        ["amocrm:104", "Дилеры", "Первичный контакт", TS("2024-01-08 21:06:39"), "created"],
    ]
    assert created["event_key"].str.startswith("crt-").all()
    # the lead_added event is not a row; the unknown status is rejected with its ids
    assert export.rows_read == 4
    [bad] = export.rejected
    assert bad.row_number == 5 and "unknown status id '99999' in pipeline '4000001'" in bad.reason
    assert "1 events of other types" in export.warnings[0]


def test_an_empty_events_page_is_zero_rows_not_an_error(read, tmp_path):
    path = tmp_path / "events.json"
    path.write_text('{"_page": 1, "_embedded": {"events": []}}')
    export = read(path, companions=[])
    assert (export.primary_table, export.rows_read, len(export.frames["stage_events"])) == ("stage_events", 0, 0)
