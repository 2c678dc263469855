"""Pipedrive: deals export, stages JSON, deal flow JSON."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from voronka.errors import ExportFormatError

TS = pd.Timestamp


def test_deals_export(read, fixtures):
    export = read(fixtures / "pipedrive" / "deals.csv", timezone="Europe/Lisbon", companions=[])
    deals = export.frames["deals"].set_index("native_id")
    assert deals.index.tolist() == ["1", "2", "3", "4", "6"]
    assert deals["outcome"].tolist() == ["open", "won", "lost", "open", "open"]
    # closed deals sit in the Won/Lost stages; their last open stage stays in attributes
    assert deals["current_stage"].tolist() == ["Proposal made", "Won", "Lost", "Lead In", "Proposal made"]
    assert json.loads(deals.loc["3", "attributes"])["Deal - Stage"] == "Qualified"
    assert deals["amount"].tolist() == [4500.0, 1200.0, 300.0, 0.0, 4500.0]
    assert deals.loc["2", "closed_at"] == TS("2024-02-20 15:00")  # Lisbon is UTC in February
    assert deals.loc["3", "closed_at"] == TS("2024-02-05 08:00")
    assert deals.loc["3", "lost_reason"] == "Too expensive"
    assert deals.loc["1", "expected_close_date"] == TS("2024-03-31")
    reasons = {r.row_number: r.reason for r in export.rejected}
    assert "unknown outcome 'Pending' (column 'Deal - Status'" in reasons[5]
    assert "duplicate Deal - ID '1' (first seen in row 1) with conflicting data" in reasons[7]
    stages = export.frames["pipeline_stages"]
    sales = stages[stages["pipeline"] == "Sales"]
    assert set(sales["stage"]) == {"Qualified", "Negotiations started", "Proposal made", "Won", "Lost"}
    assert sales[sales["kind"] != "open"][["stage", "kind"]].values.tolist() == [["Won", "won"], ["Lost", "lost"]]


def test_stages_json_and_deals_with_it(read, fixtures):
    stages_file = fixtures / "pipedrive" / "api" / "stages.json"
    stages = read(stages_file).frames["pipeline_stages"]
    sales = stages[stages["pipeline"] == "Sales"].sort_values("stage_order")
    assert sales["stage"].tolist() == ["Qualified", "Contact Made", "Proposal made", "Negotiations started"]
    assert sales["crm_probability"].tolist() == [0.1, 0.2, 0.6, 0.8]
    export = read(fixtures / "pipedrive" / "deals.csv", companions=[stages_file])
    listed = export.frames["pipeline_stages"]
    assert listed[listed["pipeline"] == "Sales"].sort_values("stage_order")["stage"].tolist() == [
        "Qualified", "Contact Made", "Proposal made", "Negotiations started", "Won", "Lost"]
    assert not export.warnings


def test_flow_gives_stage_and_status_events(read, fixtures):
    export = read(fixtures / "pipedrive" / "api" / "flow.json")
    frame = export.frames["stage_events"]
    derived = frame["_derived"].eq(True)
    events = frame[~derived]
    assert events[["deal_key", "pipeline", "stage", "entered_at"]].values.tolist() == [
        ["pipedrive:2", "Sales", "Proposal made", TS("2024-02-05 09:30")],
        ["pipedrive:2", "Sales", "Negotiations started", TS("2024-02-12 09:30")],
        ["pipedrive:2", "Sales", "Won", TS("2024-02-20 15:00")],
    ]
    # old_value of deal 2's first stage change (stage id 1): the stage it was created in.
    assert frame[derived][["deal_key", "stage", "entered_at", "origin"]].values.tolist() == [
        ["pipedrive:2", "Qualified", TS("2024-02-05 09:29:59"), "created"]]
    reasons = {r.row_number: r.reason for r in export.rejected}
    assert "unknown stage id '99'" in reasons[7]
    assert "status change of deal '3' whose pipeline is unknown" in reasons[6]
    assert export.rows_read == 5 and "2 flow items are not stage or status changes" in export.warnings[0]


def test_flow_without_stages_export_is_refused(read, fixtures):
    with pytest.raises(ExportFormatError, match="stages export"):
        read(fixtures / "pipedrive" / "api" / "flow.json", companions=[])
