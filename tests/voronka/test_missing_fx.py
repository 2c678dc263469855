"""A currency with no rate to the reporting currency: a failing check, an alert and a CLI line
naming the currency, the deals and their amount — never a silent 0 in the forecast."""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ml import health
from orchestration.assets.forecast import (
    amounts_convert_to_reporting_currency,
    forecast_health_alerts,
)
from orchestration.resources import WorkspaceResource
from voronka.alerts.checks import MISSING_FX
from voronka.alerts.model import check_alert
from voronka.cli import missing_fx_lines
from voronka.config import Workspace
from voronka.warehouse_reads import deals_without_fx, replace_table

# fct_deals as dbt builds it, reduced to the columns that matter; reporting currency USD.
FCT_DEALS = pd.DataFrame([
    # deal_key, status_as_of, amount, currency, amount_reporting
    ("a", "open", 100.0, "KZT", None),     # no KZT rate
    ("b", "open", 50.0, "KZT", None),
    ("c", "won", 30.0, "KZT", None),
    ("d", "won", 10.0, "USD", 10.0),       # converts
    ("e", "open", 0.0, "KZT", None),       # nothing to convert
    ("f", "open", None, "KZT", None),      # no amount
    ("g", "lost", 5.0, "K\x1b[2JZ\nT", None),  # CRM text with a terminal escape and a new line
], columns=["deal_key", "status_as_of", "amount", "currency", "amount_reporting"])


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    workspace = Workspace(tmp_path / "ws").create()
    workspace.config_path.write_text("reporting_currency: USD\nalerts:\n  - type: file\n", encoding="utf-8")
    forecast = pd.DataFrame({"as_of": [datetime(2026, 5, 20, 23, 59, 59)], "period": ["2026-Q2"],
                             "pipeline": ["all"], "segment": [None], "owner": [None], "currency": ["USD"],
                             "method": ["model"], "target": [None], "booked": [10.0], "expected": [20.0],
                             "from_open_pipeline": [10.0], "from_new_pipeline": [0.0], "p10": [10.0],
                             "p50": [20.0], "p90": [30.0], "prob_hit_target": [None]})
    scores = pd.DataFrame({"pipeline": ["SaaS"], "stage": ["Demo"], "amount_reporting": [1.0],
                           "is_stalled": [False]})
    with duckdb.connect(str(workspace.warehouse)) as con:
        replace_table(con, "main.fct_deals", FCT_DEALS)
        replace_table(con, "main.revenue_forecast", forecast)
        replace_table(con, "main.deal_scores", scores)
    return workspace


def test_deals_without_fx_counts_each_currency_and_leaves_out_what_converts(workspace):
    with duckdb.connect(str(workspace.warehouse)) as con:
        found = deals_without_fx(con)
    assert found.to_dict("records") == [
        {"currency": "KZT", "deals": 3, "open_deals": 2, "amount": 180.0},
        {"currency": "K\x1b[2JZ\nT", "deals": 1, "open_deals": 0, "amount": 5.0},
    ]


def test_the_check_fails_as_an_error_naming_currency_deals_and_amount(workspace):
    result = amounts_convert_to_reporting_currency(dg.build_asset_check_context(
        resources={"workspace": WorkspaceResource(home=str(workspace.home))}))
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.description.startswith("no rate to USD: 3 deal(s) in KZT (180)")
    assert result.metadata["deals_without_rate"].value == 4
    # The markdown table of the Dagster UI: CRM text cannot break it.
    assert "K\x1b[2JZ T" in result.metadata["rows"].value and "\n|" in result.metadata["rows"].value


def test_the_check_passes_when_every_amount_converts():
    verdict = health.missing_fx(pd.DataFrame(columns=["currency", "deals", "open_deals", "amount"]), "USD")
    assert verdict.passed and verdict.summary == "every deal amount converts to USD"


def test_the_alert_names_the_currency_and_the_deals(workspace):
    result = dg.materialize([forecast_health_alerts],
                            resources={"workspace": WorkspaceResource(home=str(workspace.home))})
    assert result.success
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["missing_fx"].value.startswith("send")
    sent = [json.loads(line) for line in (workspace.alerts / "alerts.jsonl").read_text().splitlines()]
    [alert] = [a for a in sent if a["kind"] == "missing_fx"]
    assert alert["severity"] == "error" and set(alert["scopes"]) == {"KZT", "K\x1b[2JZ\nT"}
    assert alert["lines"][0] == ("3 deal(s) in KZT worth 180 KZT (2 open) have no rate to USD: they count as "
                                 "nothing in bookings, the pipeline and the forecast until an fx_rates file "
                                 "gives one")


def test_the_alert_line_is_built_from_the_verdict_rows():
    rows = health.missing_fx(pd.DataFrame([{"currency": "", "deals": 2, "open_deals": 1, "amount": 2500.0}]),
                             "EUR").rows.to_dict("records")
    alert = check_alert(MISSING_FX, rows, "2026-05-20")
    assert alert.scopes == {"(no currency)": "error"}
    assert alert.lines[0].startswith("2 deal(s) in (no currency) worth 2.5k (1 open) have no rate to EUR")


def test_the_cli_line_names_currency_deals_and_amount_with_crm_text_made_harmless(workspace):
    lines = missing_fx_lines(workspace)
    assert lines[0].startswith("Missing FX: 3 deal(s) in KZT worth 180 KZT (2 open) have no rate to USD: "
                               "they count as 0 in bookings, the pipeline and the forecast; add KZT rates")
    assert "\x1b" not in lines[1] and "\n" not in lines[1] and "K?[2JZ?T" in lines[1]
