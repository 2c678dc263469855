"""The text layer: encodings, delimiters, headers, multi-line fields, numbers and dates."""

from __future__ import annotations

import codecs
import json

import numpy as np
import openpyxl
import pandas as pd
import pytest

from voronka.errors import ExportFormatError
from voronka.ingest.readers import textfile
from voronka.ingest.readers.attributes import attributes_json
from voronka.ingest.readers.parsers import (
    parse_bools,
    parse_dates,
    parse_numbers,
    parse_timestamps,
)
from voronka.ingest.readers.rawtable import RawTable

ROWS = [["ID", "Имя", "Сумма"], ["1", "Ёжик «в тумане»", "1 500,50"], ["2", "Müller", "7"]]


def _csv(rows, sep):
    return "\r\n".join(sep.join(f'"{v}"' if sep in v or " " in v else v for v in r) for r in rows) + "\r\n"


@pytest.mark.parametrize("encoding,sep,prefix", [
    ("utf-8", ",", b""),
    ("utf-8", ";", codecs.BOM_UTF8),
    ("cp1251", ";", b""),
    ("utf-16-le", "\t", codecs.BOM_UTF16_LE),  # Excel's "Unicode text"
])
def test_encodings_and_delimiters_give_the_same_table(tmp_path, encoding, sep, prefix):
    rows = ROWS if encoding != "cp1251" else [r[:] for r in ROWS[:2]]  # cp1251 has no ü
    path = tmp_path / "t.csv"
    path.write_bytes(prefix + _csv(rows, sep).encode(encoding))
    table = textfile.load(path)
    assert table.delimiter == sep
    assert table.columns == ["ID", "Имя", "Сумма"]
    assert table.frame["Имя"].tolist()[:1] == ["Ёжик «в тумане»"]
    assert table.frame["Сумма"].tolist()[0] == "1 500,50"


def test_windows_1252_is_told_from_windows_1251(tmp_path):
    western = tmp_path / "w.csv"
    western.write_bytes("Name,City\nSociété Générale,Zürich\nMüller,Köln\n".encode("cp1252"))
    russian = tmp_path / "r.csv"
    russian.write_bytes("Имя;Город\nСергей;Москва\nОльга;Пермь\n".encode("cp1251"))
    w, r = textfile.load(western), textfile.load(russian)
    assert (w.encoding, r.encoding) == ("cp1252", "cp1251")
    assert w.frame["Name"].tolist() == ["Société Générale", "Müller"]
    assert r.frame["Город"].tolist() == ["Москва", "Пермь"]


def test_header_spaces_repeats_blank_rows_and_multiline_fields(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(('sep=;\r\n ID ;Бюджет ;Товар;Товар;;Примечание\r\n'
                      '1;10;A;B;x;"строка 1\r\nстрока 2"\r\n'
                      ';;;;;\r\n'
                      '\r\n'
                      '3;  30 ;C;;;\r\n'
                      ';;;;;\r\n').encode("utf-8"))
    table = textfile.load(path)
    assert table.columns == ["ID", "Бюджет", "Товар", "Товар (2)", "column_5", "Примечание"]
    assert table.frame["Примечание"].tolist() == ["строка 1\nстрока 2", ""]
    assert table.frame["Бюджет"].tolist() == ["10", "30"]
    assert table.row_numbers.tolist() == [1, 3]  # the ';;;' row kept its place in the count


def test_short_rows_are_padded_and_long_rows_are_an_error(tmp_path):
    short = tmp_path / "short.csv"
    short.write_text("a,b,c\n1,2,3\n4,5\n", encoding="utf-8")
    table = textfile.load(short)
    assert table.frame.to_dict("list") == {"a": ["1", "4"], "b": ["2", "5"], "c": ["3", ""]}
    long = tmp_path / "long.csv"
    long.write_text("a,b\n1,2\n3,4,5\n", encoding="utf-8")
    with pytest.raises(ExportFormatError, match="line 3 has 3 fields where the header has 2"):
        textfile.load(long)


def test_numbers_in_every_locale():
    text = pd.Series(["1 500 000,50", "1\u00a0500,50", "1,500.50", "1.500,50", "1500.5", "1,5", "1,500",
                      "1.5E+06", "-5", "100 ₽", "", "abc", "=1+1", "nan", "inf", "1.2.3,4,5"])
    values, bad = parse_numbers(text)
    expected = [1500000.5, 1500.5, 1500.5, 1500.5, 1500.5, 1.5, 1500, 1.5e6, -5, 100]
    assert values[:10].tolist() == expected
    assert np.isnan(values[10]) and not bad[10]  # empty is missing, not bad
    assert bad[11:].tolist() == [True] * 5
    # In a ';' file (decimal comma) a lone dot before three digits is a thousands separator.
    values, _ = parse_numbers(pd.Series(["1.500", "1,500", "2.5"]), decimal=",")
    assert values.tolist() == [1500.0, 1.5, 2.5]


def test_timestamps_are_converted_to_naive_utc():
    text = pd.Series([
        "2021-05-08T03:59:51+03:00",  # offset kept
        "2024-01-01T10:00:00.000Z",
        "05.01.2024 12:30:00",  # local Moscow time
        "5.1.2024 9:05",
        "2024-01-05",
        "45292.5",  # Excel serial: 2024-01-01 12:00 local
        "вчера", "31.02.2024", "",
    ])
    parsed, bad = parse_timestamps(text, "Europe/Moscow")
    assert parsed[:6].tolist() == [
        pd.Timestamp("2021-05-08 00:59:51"), pd.Timestamp("2024-01-01 10:00:00"),
        pd.Timestamp("2024-01-05 09:30:00"), pd.Timestamp("2024-01-05 06:05:00"),
        pd.Timestamp("2024-01-04 21:00:00"), pd.Timestamp("2024-01-01 09:00:00"),
    ]
    assert bad.tolist() == [False] * 6 + [True, True, False]


def test_daylight_saving_edges_and_us_dates():
    text = pd.Series(["03/10/2024 2:30 AM",  # does not exist in New York: moves forward
                      "11/03/2024 1:30 AM",  # happens twice: standard time is taken
                      "07/04/2024 12:15 PM"])
    parsed, bad = parse_timestamps(text, "America/New_York")
    assert not bad.any()
    assert parsed.tolist() == [pd.Timestamp("2024-03-10 07:30"), pd.Timestamp("2024-11-03 06:30"),
                               pd.Timestamp("2024-07-04 16:15")]
    # A day above 12 shows the column is day-first.
    parsed, _ = parse_timestamps(pd.Series(["25/12/2024", "01/02/2024"]), "UTC")
    assert parsed.tolist() == [pd.Timestamp("2024-12-25"), pd.Timestamp("2024-02-01")]


def test_dates_keep_the_calendar_day_as_written():
    parsed, bad = parse_dates(pd.Series(["2021-06-30T03:00:00+03:00", "30.06.2021", "2021-06-30",
                                         "30.06.2021 23:59", "someday"]))
    assert parsed[:4].tolist() == [pd.Timestamp("2021-06-30")] * 4
    assert bad.tolist() == [False] * 4 + [True]


def test_booleans():
    values, bad = parse_bools(pd.Series(["true", "FALSE", "1", "0", "Да", "нет", "Y", "", "maybe"]))
    assert values[:7].tolist() == [True, False, True, False, True, False, True]
    assert bad.tolist() == [False] * 8 + [True]


def test_xlsx_cells_become_text_and_formulas_stay_formulas(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["ID", "Бюджет ", "Дата", "Ссылка", "Флаг", "ID"])
    ws.append([1, 1500.0, pd.Timestamp("2024-01-05 12:30").to_pydatetime(),
               '=HYPERLINK("http://x.example","x")', True, 7])
    ws.append([2, 99.95, None, "@SUM(A1)", False, None])
    ws.append([None, None, None, None, None, None])
    path = tmp_path / "t.xlsx"
    wb.save(path)
    table = textfile.load(path)
    assert table.kind == "xlsx"
    assert table.columns == ["ID", "Бюджет", "Дата", "Ссылка", "Флаг", "ID (2)"]
    assert table.frame.to_dict("list") == {
        "ID": ["1", "2"], "Бюджет": ["1500", "99.95"], "Дата": ["2024-01-05 12:30:00", ""],
        "Ссылка": ['=HYPERLINK("http://x.example","x")', "@SUM(A1)"], "Флаг": ["true", "false"],
        "ID (2)": ["7", ""],
    }


def test_html_table_saved_as_xls_is_read(tmp_path):
    path = tmp_path / "export.xls"
    path.write_text('<meta http-equiv="Content-type" content="text/html;charset=utf-8" />'
                    "<table border='1'><tr><th>ID</th><th>Название сделки</th></tr>"
                    "<tr><td>1</td><td>Окна &amp; двери<br>второй этаж</td></tr></table>", encoding="utf-8")
    table = textfile.load(path)
    assert table.kind == "html"
    assert table.frame.to_dict("list") == {"ID": ["1"], "Название сделки": ["Окна & двери\nвторой этаж"]}


def test_attributes_are_json_of_the_non_empty_cells():
    frame = pd.DataFrame({"a": ['q"uote\\slash', "", "x"], "b (2)": ["line\nbreak\x01", "", ""],
                          "c": ["", "", ""]})
    out = attributes_json(frame, ["a", "b (2)", "c"])
    assert [json.loads(x) for x in out] == [{"a": 'q"uote\\slash', "b (2)": "line\nbreak\x01"}, {}, {"a": "x"}]


def test_damaged_utf8_is_read_as_utf8(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("ID,Имя\n1,Анна\n".encode("utf-8") + b"2," + "Иван".encode("cp1251") + b"\n")
    table = textfile.load(path)
    assert table.encoding == "utf-8 (damaged)"
    assert table.frame["Имя"][0] == "Анна" and "\ufffd" in table.frame["Имя"][1]


def test_fast_and_fallback_parsers_agree(tmp_path):
    body = 'a,b\n1,"x, ""y"""\n2,\n'
    fast = tmp_path / "fast.csv"
    fast.write_text(body, encoding="utf-8")
    slow = tmp_path / "slow.csv"
    slow.write_text(body + "3\n", encoding="utf-8")  # a short row: Arrow refuses, pandas pads
    a, b = textfile.load(fast), textfile.load(slow)
    assert isinstance(a, RawTable) and isinstance(b, RawTable)
    assert b.frame.iloc[:2].to_dict("list") == a.frame.to_dict("list") == {"a": ["1", "2"], "b": ['x, "y"', ""]}
