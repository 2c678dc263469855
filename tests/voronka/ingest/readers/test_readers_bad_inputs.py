"""The bad-input corpus: every malformed file in tests/voronka/ingest/readers/bad_inputs/ and exactly what must
come of it — one ExportFormatError whose message holds the given words (never a traceback), or
the given rows rejected with reasons holding the given words while the valid rows are kept."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from voronka.errors import ExportFormatError
from voronka.ingest.readers import read_export

BAD_INPUTS = Path(__file__).parent / "bad_inputs"


@dataclass
class Error:
    words: tuple  # all in the message, which also names the file


@dataclass
class Rows:
    kept: list  # native ids of the valid rows, in order
    rejected: dict = field(default_factory=dict)  # row number -> words of its reason
    # Kept rows that are odd but real: native id -> {column: value} they must load with (a close
    # before the creation, an unknown outcome, ...). Flagged, never quarantined (issue 13).
    flagged: dict = field(default_factory=dict)


CASES = {
    "empty.csv": Error(("the file is empty",)),
    "whitespace_only.csv": Error(("the file is empty",)),
    "header_only_amocrm.csv": Rows(kept=[]),
    "blank_rows_only_amocrm.csv": Rows(kept=[]),
    "binary_junk.csv": Error(("binary file",)),
    "pdf_document.csv": Error(("binary file",)),
    "not_a_zip.xlsx": Error(("not an XLSX workbook", "not a zip")),
    "truncated.xlsx": Error(("damaged or truncated XLSX",)),
    "old_binary_excel.xls": Error(("old binary Excel", ".xlsx or CSV")),
    "gzipped_export.csv.gz": Error(("gzip", "unpack")),
    "utf16_without_bom.csv": Error(("UTF-16", "byte-order mark")),
    "wrong_delimiter_pipe.csv": Error(("one column holding '|'", "amoCRM deals export")),
    "unknown_format.csv": Error(("no known export format", "closest is", "'foo', 'bar', 'baz'",
                                  "voronka ingest --mapping M.yaml FILE", "docs/mapping.md")),
    "unknown_json.json": Error(("JSON document that is no known export", "items, count")),
    "stage_events_json_for_deals.json": Error(("no known export", "deal, stage")),
    "truncated_json.json": Error(("not valid JSON", "line 1", "truncated")),
    "missing_required_column_amocrm.csv": Error(("missing required column 'Этап сделки'", "column 'Этап сделки'")),
    "history_missing_opportunity_id_salesforce.csv": Error(("missing required column 'OpportunityId'",)),
    "truncated_in_quoted_field_amocrm.csv": Error(("quoted field opened on line 3 never closes", "truncated")),
    "ragged_row_hubspot.csv": Error(("line 2 has 11 fields where the header has 10",)),
    "amocrm_events_without_pipelines.json": Error(("pipelines export", "same folder")),
    "bitrix_category_list_alone.json": Error(("Bitrix24 category list names pipelines only",
                                              "put the crm.status.list", "beside it")),
    "duplicate_ids_conflict_hubspot.csv": Rows(kept=["1", "2"], rejected={
        3: ("duplicate Record ID '1' (first seen in row 1)", "conflicting", "'Amount' is '10' there, '99' here")}),
    "duplicate_ids_identical_pipedrive.csv": Rows(kept=["7", "8"], rejected={
        2: ("duplicate Deal - ID '7' (first seen in row 1)", "the same data repeated")}),
    "unknown_outcome_pipedrive.csv": Rows(kept=["1"], rejected={
        2: ("unknown outcome 'Maybe'", "column 'Deal - Status'")}),
    "unknown_semantic_bitrix.json": Rows(kept=["2"], rejected={
        1: ("unknown outcome 'Z'", "column 'STAGE_SEMANTIC_ID'")}),
    "future_dates_salesforce.csv": Rows(kept=["0061"], rejected={  # a future expected close is fine
        2: ("future created_at '2099-01-01T10:00:00.000Z'", "column 'CreatedDate'"),
        3: ("future closed_at", "column 'CloseDate'")}),
    "negative_amount_bitrix.csv": Rows(kept=["2"], rejected={
        1: ("negative amount '-500.00'", "column 'OPPORTUNITY'")}),
    "text_in_amount_amocrm.csv": Rows(kept=["2"], rejected={
        1: ("unparseable amount 'договорная'", "column 'Бюджет'"),
        3: ("unparseable amount '100 USD'",)}),
    "formula_like_cells_hubspot.csv": Rows(kept=["1"], rejected={
        2: ("unparseable amount '=1+1'", "column 'Amount'")}),
    "missing_id_pipedrive.csv": Rows(kept=["9"], rejected={1: ("missing native_id", "column 'Deal - ID'")}),
    "unparseable_dates_amocrm.csv": Rows(kept=["4"], rejected={
        1: ("unparseable created_at '32.01.2024 10:00:00'", "column 'Дата создания сделки'"),
        2: ("unparseable created_at 'вчера'",),
        3: ("unparseable closed_at 'когда-то'", "column 'Дата закрытия'")}),
    "huge_field_hubspot.csv": Rows(kept=["1", "2"]),
    "mixed_encoding_amocrm.csv": Rows(kept=["1"], rejected={
        2: ("undecodable bytes in column 'Ответственный'", "not valid UTF-8")}),
    "bad_booleans_salesforce.csv": Rows(kept=["0062"], rejected={
        1: ("unparseable IsClosed 'maybe'", "column 'IsClosed'")}),
    "bad_date_entered_hubspot.csv": Rows(kept=["2"], rejected={
        1: ("unparseable entered_at 'soon'", "column 'Date entered \"Qualified (Sales)\"'")}),
    # Real deals with odd dates load, flagged; only the date that cannot be read is quarantined.
    "dates_out_of_order_amocrm.csv": Rows(kept=["1", "2", "3"], rejected={
        4: ("unparseable created_at 'когда-то'", "column 'Дата создания сделки'")}, flagged={
        "1": {"outcome": "lost", "is_closed_before_created": True},
        "2": {"outcome": "won", "is_closed_before_created": False},  # 13:32:00 vs 13:32:57, same day
        "3": {"outcome": "open", "created_at": None}}),             # the loader fills created_at
    "closed_stage_without_semantic_bitrix.json": Rows(kept=["1", "2"], flagged={
        "1": {"outcome": "unknown", "is_close_date_only": True, "is_closed_before_created": False},
        "2": {"outcome": "won", "is_close_date_only": True}}),
    "close_date_on_creation_day_salesforce.csv": Rows(kept=["0061", "0062", "0063"], flagged={
        "0061": {"outcome": "won", "is_closed_before_created": False},
        "0062": {"outcome": "lost", "is_closed_before_created": True},
        "0063": {"outcome": "unknown"}}),
}


def test_the_corpus_and_the_table_match():
    files = {p.name for p in BAD_INPUTS.iterdir() if p.is_file()}
    assert files == set(CASES)
    assert len(files) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(read, name):
    expected = CASES[name]
    path = BAD_INPUTS / name
    if isinstance(expected, Error):
        with pytest.raises(ExportFormatError) as err:
            read_export(path, companions=[])
        message = str(err.value)
        assert name in message
        for words in expected.words:
            assert words in message, message
        assert "\n" not in message  # one line for the CLI
        return
    export = read(path, companions=[])  # also checks rows_read == kept + rejected
    kept = export.frames[export.primary_table]
    assert kept["native_id"].tolist() == expected.kept
    assert {r.row_number for r in export.rejected} == set(expected.rejected)
    for row in export.rejected:
        for words in expected.rejected[row.row_number]:
            assert words in row.reason, row.reason
    assert export.rows_read == len(expected.kept) + len(expected.rejected)
    by_id = kept.set_index("native_id")
    for native_id, values in expected.flagged.items():
        for column, value in values.items():
            got = by_id.loc[native_id, column]
            assert (pd.isna(got) if value is None else got == value), (native_id, column, got)


def test_formula_like_cells_are_kept_as_text():
    deals = read_export(BAD_INPUTS / "formula_like_cells_hubspot.csv", companions=[]).frames["deals"]
    [deal] = deals.to_dict("records")
    assert deal["title"] == '=HYPERLINK("http://evil.example","Click")'
    assert deal["owner"] == "@SUM(A1:A2)"
    assert json.loads(deal["attributes"])["Phone"] == "+7 999 123-45-67"


def test_a_huge_field_survives_whole():
    deals = read_export(BAD_INPUTS / "huge_field_hubspot.csv", companions=[]).frames["deals"]
    assert json.loads(deals["attributes"][0])["Notes"] == "x" * 300_000
