"""Detection from content, the loader's view of reader output, and reading at scale."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from voronka.errors import ExportFormatError
from voronka.ingest.loader import load_files
from voronka.ingest.readers import detect_format, read_export

KNOWN = {
    "amocrm/deals_utf8.csv": "amocrm.deals",
    "amocrm/deals_cp1251.csv": "amocrm.deals",
    "amocrm/history/pipelines.json": "amocrm.pipelines",
    "amocrm/history/events.json": "amocrm.events",
    "bitrix24/api/deals.json": "bitrix24.deals",
    "bitrix24/api/statuses.json": "bitrix24.statuses",
    "bitrix24/api/stagehistory.json": "bitrix24.stagehistory",
    "bitrix24/categories/crm.category.list.json": "bitrix24.categories",
    "bitrix24/categories/deals.json": "bitrix24.deals",
    "bitrix24/categories/stagehistory.json": "bitrix24.stagehistory",
    "bitrix24/categories/statuses.json": "bitrix24.statuses",
    "bitrix24/dealcategories/crm.dealcategory.list.json": "bitrix24.dealcategories",
    "bitrix24/dealcategories/crm.dealcategory.default.get.json": "bitrix24.dealcategories",
    "bitrix24/dealcategories/statuses.json": "bitrix24.statuses",
    "bitrix24/deals_api.csv": "bitrix24.deals",
    "bitrix24/ui_export_cp1251.csv": "bitrix24.ui_deals",
    "hubspot/deals.csv": "hubspot.deals",
    "hubspot/deals_api.csv": "hubspot.deals_api",
    "hubspot/pipelines.json": "hubspot.pipelines",
    "salesforce/Opportunity.csv": "salesforce.opportunities",
    "salesforce/org/Opportunity.csv": "salesforce.opportunities",
    "salesforce/org/OpportunityHistory.csv": "salesforce.history",
    "salesforce/org/OpportunityStage.csv": "salesforce.stages",
    "pipedrive/deals.csv": "pipedrive.deals",
    "pipedrive/api/stages.json": "pipedrive.stages",
    "pipedrive/api/flow.json": "pipedrive.flow",
}


@pytest.mark.parametrize("name,fmt", sorted(KNOWN.items()))
def test_format_is_detected_from_content_not_name(fixtures, tmp_path, name, fmt):
    anonymous = tmp_path / "export.dat"  # the name says nothing
    shutil.copy(fixtures / name, anonymous)
    assert detect_format(anonymous) == fmt
    companions = list((fixtures / name).parent.iterdir())  # the stage lists some formats need
    assert read_export(anonymous, companions=companions).source_system == fmt.split(".")[0]


def test_every_fixture_is_in_the_detection_table(fixtures):
    tables = {str(p.relative_to(fixtures)) for p in fixtures.rglob("*") if p.suffix in (".csv", ".json")}
    mapped = {t for t in tables if t.startswith("mapped/") or t == "amocrm/history/deals.csv"}
    assert tables - mapped == set(KNOWN)


def test_a_named_source_that_does_not_fit_names_its_closest_format(fixtures):
    with pytest.raises(ExportFormatError) as err:
        read_export(fixtures / "amocrm" / "deals_utf8.csv", source="hubspot")
    message = str(err.value)
    assert "closest is HubSpot" in message and "'Название сделки'" in message
    with pytest.raises(ExportFormatError, match="unknown source 'zoho'"):
        read_export(fixtures / "amocrm" / "deals_utf8.csv", source="zoho")


def test_canonical_csv_still_reads(tmp_path):
    path = tmp_path / "stages.csv"
    path.write_text("pipeline;stage;stage_order;kind;crm_probability\nSales;New;1;open;0.1\n", encoding="cp1251")
    export = read_export(path)
    assert export.primary_table == "pipeline_stages" and len(export.frames["pipeline_stages"]) == 1


def test_the_loader_reconciles_every_fixture_folder(fixtures, tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for folder in ("amocrm/history", "bitrix24/api", "hubspot", "salesforce/org", "pipedrive", "pipedrive/api"):
        inbox = tmp_path / folder.replace("/", "_")
        shutil.copytree(fixtures / folder, inbox, ignore=shutil.ignore_patterns("*/"))
        files = sorted(p for p in inbox.iterdir() if p.is_file())
        for result in load_files(con, files):
            assert result.status == "loaded", (folder, result)
            assert result.rows_read == result.rows_loaded + result.rows_quarantined
    counts = dict(con.execute("select source_system, count(*) from raw.deals group by 1").fetchall())
    assert counts == {"amocrm": 3, "bitrix24": 4, "hubspot": 6, "salesforce": 4, "pipedrive": 5}
    quarantined = dict(con.execute("select export_file, count(*) from raw.quarantine group by 1").fetchall())
    # exactly the rejections the reader tests name (deals.csv: Pipedrive's two; the others reject none)
    assert quarantined == {"events.json": 1, "deals.json": 1, "stagehistory.json": 1, "Opportunity.csv": 2,
                           "OpportunityHistory.csv": 1, "deals.csv": 2, "flow.json": 2}
    won_dealer = con.execute("select outcome from raw.deals where deal_key = 'amocrm:104'").fetchone()
    assert won_dealer == ("won",)


def test_a_large_export_with_multi_line_notes_reads_every_row(tmp_path):
    # How fast it reads is measured in benchmarks/ingest_benchmark.py, not asserted here.
    n = 20_000
    rng = np.random.default_rng(3)
    stages = np.array(["Первичный контакт", "Переговоры", "Успешно реализовано", "Закрыто и не реализовано"])
    stage = stages[rng.integers(0, 4, n)]
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s")
    frame = pd.DataFrame({
        "ID": np.arange(n), "Название сделки": [f"Сделка {i}" for i in range(n)],
        "Бюджет": rng.integers(0, 10**6, n), "Дата создания сделки": created.strftime("%d.%m.%Y %H:%M:%S"),
        "Дата закрытия": np.where(np.isin(stage, stages[2:]),
                                  (created + pd.Timedelta(days=9)).strftime("%d.%m.%Y %H:%M:%S"), "не закрыта"),
        "Этап сделки": stage, "Воронка": "Основная", "Примечание": rng.choice(["", "a\nb", '"q"'], n),
    })
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False, sep=";")
    export = read_export(path, companions=[])
    deals = export.frames["deals"]
    assert len(deals) == n and not export.rejected
    assert (deals["outcome"] == "won").sum() == (stage == stages[2]).sum()
    assert deals["created_at"].tolist() == list(created)
