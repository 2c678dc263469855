"""Any CSV with a YAML mapping."""

from __future__ import annotations

import pandas as pd
import pytest

from voronka.errors import MappingError

TS = pd.Timestamp


def test_inhouse_deals_with_mapping(read, fixtures):
    base = fixtures / "mapped"
    export = read(base / "inhouse.csv", mapping=base / "inhouse.yaml")
    assert export.source_system == "inhouse"
    deals = export.frames["deals"]
    assert deals[["deal_key", "outcome", "amount", "created_at", "closed_at"]].values.tolist() == [
        ["inhouse:A-1", "open", 1234.5, TS("2024-01-03 08:00"), pd.NaT],
        ["inhouse:A-2", "won", 500.0, TS("2024-01-04 09:30"), TS("2024-01-15 15:00")],
        ["inhouse:A-3", "lost", 75.5, TS("2024-01-05 10:00"), TS("2024-01-20 11:00")],
    ]
    assert deals["attributes"].tolist() == ['{"Notiz":"ruft zurück"}', "{}", '{"Notiz":"zu teuer"}']
    assert [(r.row_number, r.reason.split(" (")[0]) for r in export.rejected] == [
        (4, "unknown outcome 'vielleicht'"), (5, "negative amount '-20'")]
    stages = export.frames["pipeline_stages"]
    direct = stages[stages["pipeline"] == "Direkt"]
    assert direct[["stage", "stage_order", "kind", "crm_probability"]].fillna(-1).values.tolist() == [
        ["Erstkontakt", 1, "open", 0.1], ["Angebot", 2, "open", 0.4], ["Verhandlung", 3, "open", 0.7],
        ["Gewonnen", 4, "won", -1], ["Verloren", 5, "lost", -1]]


def test_outcome_from_the_stage_lists(read, tmp_path):
    (tmp_path / "d.csv").write_text("id,stage,created\n1,New,2024-01-01\n2,Signed,2024-01-02\n"
                                    "3,Gone,2024-01-03\n4,Limbo,2024-01-04\n")
    (tmp_path / "m.yaml").write_text("source_system: sheet\ncolumns: {native_id: id, current_stage: stage, "
                                     "created_at: created}\npipelines:\n  Main: {stages: [New], won: [Signed], "
                                     "lost: [Gone]}\n")
    # a stage the mapping does not list is a mapping mistake: one error naming it, no quarantine
    with pytest.raises(MappingError, match=r"stage 'Limbo' \(1 row\(s\) of d.csv\) is not listed in "
                                           r"pipelines.Main"):
        read(tmp_path / "d.csv", mapping=tmp_path / "m.yaml")
    (tmp_path / "d.csv").write_text("id,stage,created\n1,New,2024-01-01\n2,Signed,2024-01-02\n"
                                    "3,Gone,2024-01-03\n4,Sigend,2024-01-04\n")
    with pytest.raises(MappingError, match="closest listed stages: 'Signed'"):
        read(tmp_path / "d.csv", mapping=tmp_path / "m.yaml")
    (tmp_path / "d.csv").write_text("id,stage,created\n1,New,2024-01-01\n2,Signed,2024-01-02\n"
                                    "3,Gone,2024-01-03\n")
    export = read(tmp_path / "d.csv", mapping=tmp_path / "m.yaml")
    deals = export.frames["deals"]
    assert deals[["deal_key", "pipeline", "outcome"]].values.tolist() == [
        ["sheet:1", "Main", "open"], ["sheet:2", "Main", "won"], ["sheet:3", "Main", "lost"]]
    assert export.rejected == []


def test_an_amount_constant_fills_every_empty_amount(read, tmp_path):
    # The Olist funnel has no deal value: `constants: {amount: 1}` counts deals. It was silently
    # ignored (every amount empty, every forecast 0); an amount the file has is kept.
    (tmp_path / "d.csv").write_text("id,stage,created,value\n1,New,2024-01-01,\n2,Signed,2024-01-02,250\n")
    head = ("source_system: sheet\ncolumns: {native_id: id, current_stage: stage, created_at: created, "
            "amount: value}\npipelines:\n  Main: {stages: [New], won: [Signed], lost: [Gone]}\n")
    (tmp_path / "m.yaml").write_text(head + "constants: {amount: 1, currency: USD}\n")
    deals = read(tmp_path / "d.csv", mapping=tmp_path / "m.yaml").frames["deals"]
    assert deals["amount"].tolist() == [1.0, 250.0] and deals["currency"].tolist() == ["USD", "USD"]
    (tmp_path / "m.yaml").write_text(head + "constants: {amount: lots}\n")
    with pytest.raises(MappingError, match="constants: amount must be a number, not 'lots'"):
        read(tmp_path / "d.csv", mapping=tmp_path / "m.yaml")
    (tmp_path / "m.yaml").write_text(head + "constants: {closed_at: 2024-02-01}\n")
    with pytest.raises(MappingError, match="'closed_at' is a date of each row, not a constant"):
        read(tmp_path / "d.csv", mapping=tmp_path / "m.yaml")


def test_stage_events_with_mapping(read, fixtures):
    base = fixtures / "mapped"
    events = read(base / "history.csv", mapping=base / "history.yaml").frames["stage_events"]
    assert events[["deal_key", "pipeline", "stage", "entered_at"]].values.tolist() == [
        ["inhouse:A-1", "Direkt", "Erstkontakt", TS("2024-01-03 08:00")],
        ["inhouse:A-1", "Direkt", "Angebot", TS("2024-01-05 13:00")],
        ["inhouse:A-2", "Direkt", "Erstkontakt", TS("2024-01-04 09:30")],
    ]


@pytest.mark.parametrize("yaml_text,words", [
    ("source_system: x\ncolumns: {native_id: id}\n", "required field 'created_at'"),
    ("source_system: x\ncolumns: {native_id: id, created_at: c, current_stage: s, colour: c}\n",
     "'colour' is not a canonical field"),
    ("columns: {native_id: id}\n", "source_system"),
    ("source_system: x\ncolumns: {native_id: id, created_at: c, current_stage: s}\n", "won and lost"),
    ("source_system: x\ncolumns: [oops\n", "not valid YAML"),
    ("source_system: x\ntimezone: Mars/Olympus\ncolumns: {native_id: id, created_at: c, current_stage: s}\n"
     "outcome: {column: o}\n", "unknown time zone"),
    ("source_system: x\ncolumns: {native_id: Nummer, created_at: c, current_stage: s}\noutcome: {column: o}\n",
     "column 'Nummer' (for native_id) is not in"),
])
def test_mapping_mistakes_are_named(read, tmp_path, yaml_text, words):
    (tmp_path / "d.csv").write_text("id,c,s,o\n1,2024-01-01,New,open\n")
    (tmp_path / "m.yaml").write_text(yaml_text)
    with pytest.raises(MappingError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read(tmp_path / "d.csv", mapping=tmp_path / "m.yaml")


def test_xlsx_sheet_named_in_the_mapping(read, tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    ws = wb.create_sheet("Deals")
    ws.append(["Nr", "Start", "Status", "Result"])
    ws.append([17, "45292.25", "Won", "won"])  # an Excel serial date written as text
    wb.save(tmp_path / "book.xlsx")
    (tmp_path / "m.yaml").write_text("source_system: book\nsheet: Deals\ncolumns: {native_id: Nr, "
                                     "created_at: Start, current_stage: Status}\noutcome: {column: Result}\n")
    deals = read(tmp_path / "book.xlsx", mapping=tmp_path / "m.yaml").frames["deals"]
    assert deals[["deal_key", "created_at", "outcome"]].values.tolist() == [
        ["book:17", TS("2024-01-01 06:00"), "won"]]
    (tmp_path / "m.yaml").write_text("source_system: book\nsheet: Sales\ncolumns: {native_id: Nr, "
                                     "created_at: Start, current_stage: Status}\noutcome: {column: Result}\n")
    from voronka.errors import ExportFormatError
    with pytest.raises(ExportFormatError, match="no sheet 'Sales'"):
        read(tmp_path / "book.xlsx", mapping=tmp_path / "m.yaml")
