"""HubSpot: deals export with "Date entered" history columns, API property names, pipelines JSON."""

from __future__ import annotations

import json

import pandas as pd
import pytest

TS = pd.Timestamp


def test_deals_export_values_and_history(read, fixtures):
    export = read(fixtures / "hubspot" / "deals.csv", timezone="America/New_York", companions=[])
    deals = export.frames["deals"].set_index("deal_key")
    assert deals["outcome"].to_dict() == {"hubspot:9001": "open", "hubspot:9002": "won",
                                          "hubspot:9003": "lost", "hubspot:9004": "won"}
    assert deals.loc["hubspot:9001", "amount"] == 12500.0
    assert pd.isna(deals.loc["hubspot:9003", "amount"])
    assert deals.loc["hubspot:9004", "currency"] == "EUR"
    assert deals.loc["hubspot:9003", "lost_reason"] == "Budget"
    # New York is UTC-4 in April
    assert deals.loc["hubspot:9001", "created_at"] == TS("2024-04-01 13:00")
    assert deals.loc["hubspot:9001", "expected_close_date"] == TS("2024-06-30")
    assert pd.isna(deals.loc["hubspot:9001", "closed_at"])
    assert deals.loc["hubspot:9002", "closed_at"] == TS("2024-05-15 21:00")
    # a formula-looking title is data, kept as written
    assert deals.loc["hubspot:9004", "title"] == '=HYPERLINK("http://evil.example","Umbrella")'
    attrs = json.loads(deals.loc["hubspot:9001", "attributes"])
    assert attrs['Date exited "Appointment Scheduled (Sales Pipeline)"'] == "2024-04-03 10:00"
    assert attrs["Deal Type"] == "existingbusiness"

    events = export.frames["stage_events"]
    deal2 = events[events["deal_key"] == "hubspot:9002"]
    assert deal2[["pipeline", "stage", "entered_at"]].values.tolist() == [
        ["Sales Pipeline", "Appointment Scheduled", TS("2024-04-02 15:00")],
        ["Sales Pipeline", "Qualified To Buy", TS("2024-04-10 12:00")],
        ["Sales Pipeline", "Closed Won", TS("2024-05-15 21:00")],
    ]
    assert len(events) == 11 and set(events["origin"]) == {"history"}
    assert events["event_key"].is_unique


def test_stage_order_inferred_from_how_deals_move(read, fixtures):
    export = read(fixtures / "hubspot" / "deals.csv", companions=[])
    stages = export.frames["pipeline_stages"]
    sales = stages[stages["pipeline"] == "Sales Pipeline"]
    assert sales[["stage", "stage_order", "kind"]].values.tolist() == [
        ["Appointment Scheduled", 1, "open"], ["Qualified To Buy", 2, "open"], ["Contract Sent", 3, "open"],
        ["Closed Won", 4, "won"], ["Closed Lost", 5, "lost"]]
    partners = stages[stages["pipeline"] == "Partners"]
    assert partners["stage"].tolist() == ["Intro", "Closed Won", "Closed Lost"]
    assert any("'Sales Pipeline'" in w and "order deals move" in w for w in export.warnings)


def test_pipelines_json_gives_order_probability_and_kind(read, fixtures):
    export = read(fixtures / "hubspot" / "pipelines.json")
    stages = export.frames["pipeline_stages"]
    sales = stages[stages["pipeline"] == "Sales Pipeline"]
    assert sales[["stage", "stage_order", "kind", "crm_probability"]].values.tolist() == [
        ["Appointment Scheduled", 1, "open", 0.2], ["Qualified To Buy", 2, "open", 0.4],
        ["Contract Sent", 3, "open", 0.9], ["Closed Won", 4, "won", 1.0], ["Closed Lost", 5, "lost", 0.0]]


def test_api_property_export_is_named_through_the_pipelines_json(read, fixtures):
    export = read(fixtures / "hubspot" / "deals_api.csv")  # pipelines.json is in the same folder
    deals = export.frames["deals"]
    assert deals[["deal_key", "pipeline", "current_stage", "created_at"]].values.tolist() == [
        ["hubspot:7001", "Sales Pipeline", "Contract Sent", TS("2024-04-01 09:00")],
        ["hubspot:7002", "Partners", "Intro", TS("2024-04-03 09:00")]]
    events = export.frames["stage_events"]
    assert events[["deal_key", "stage"]].values.tolist() == [
        ["hubspot:7001", "Appointment Scheduled"], ["hubspot:7001", "Contract Sent"], ["hubspot:7002", "Intro"]]
    assert export.frames["pipeline_stages"]["crm_probability"].notna().all()


def test_closed_stage_with_ambiguous_probability_is_kept_with_unknown_kind(read, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"results": [{"id": "p", "label": "P", "stages": [
        {"id": "a", "label": "Open", "displayOrder": 0, "metadata": {"isClosed": "false", "probability": "0.5"}},
        {"id": "b", "label": "Half", "displayOrder": 1, "metadata": {"isClosed": "true", "probability": "0.5"}}]}]}))
    export = read(path)
    # closed, but neither won (1.0) nor lost (0.0): a closed stage of unknown outcome
    assert export.frames["pipeline_stages"][["stage", "kind"]].values.tolist() == [
        ["Open", "open"], ["Half", "unknown"]]
    assert export.rejected == []


@pytest.mark.parametrize("won,closed,stage,expected", [
    ("true", "true", "Whatever", "won"),
    ("false", "true", "Whatever", "lost"),
    ("false", "false", "Closed Lost", "open"),  # Is closed is the truth, not the name
])
def test_outcome_comes_from_the_closed_flags(read, tmp_path, won, closed, stage, expected):
    path = tmp_path / "d.csv"
    path.write_text("Record ID,Deal Name,Deal Stage,Pipeline,Create Date,Close Date,Is Closed Won,Is closed\n"
                    f"1,A,{stage},P,2024-01-01 10:00,2024-01-02 10:00,{won},{closed}\n")
    assert read(path, companions=[]).frames["deals"]["outcome"].tolist() == [expected]
