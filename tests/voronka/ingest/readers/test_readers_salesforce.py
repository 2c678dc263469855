"""Salesforce: Opportunity.csv (Windows-1252, multi-currency), OpportunityHistory, OpportunityStage."""

from __future__ import annotations

import pandas as pd

TS = pd.Timestamp
SF = "tests/voronka/ingest/readers/fixtures/salesforce"


def test_opportunities_windows_1252_and_multi_currency(read, fixtures):
    export = read(fixtures / "salesforce" / "Opportunity.csv", companions=[])
    deals = export.frames["deals"].set_index("native_id")
    assert deals["title"].tolist() == ["Société Générale – renewal", "Müller GmbH", "Café Crème", "Björk AB"]
    assert deals["currency"].tolist() == ["EUR", "USD", "EUR", "SEK"]
    assert deals["amount"].tolist() == [25000.0, 1200.5, 300.0, 5000.0]
    assert deals["outcome"].tolist() == ["open", "won", "lost", "open"]  # 1/1 and true/false both read
    assert deals["pipeline"].unique().tolist() == ["default"]
    won = deals.loc["0065g00000AbCdFAAV"]
    assert won["closed_at"] == TS("2024-07-10") and won["expected_close_date"] == TS("2024-07-10")
    assert won["created_at"] == TS("2024-06-02 09:00")
    assert deals.loc["0065g00000AbCdGAAV", "lost_reason"] == "Price"
    assert pd.isna(deals.loc["0065g00000AbCdEAAV", "closed_at"])
    assert [(r.row_number, r.reason) for r in export.rejected] == [
        (5, "deleted in Salesforce (column 'IsDeleted' is true)"),
        (6, "unknown outcome: column 'IsWon' is true but 'IsClosed' is false")]


def test_stage_order_inferred_from_probabilities(read, fixtures):
    export = read(fixtures / "salesforce" / "Opportunity.csv", companions=[])
    stages = export.frames["pipeline_stages"]
    assert stages[["stage", "stage_order", "kind", "crm_probability"]].values.tolist() == [
        ["Prospecting", 1, "open", 0.1], ["Negotiation/Review", 2, "open", 0.9],
        ["Closed Won", 3, "won", 1.0], ["Closed Lost", 4, "lost", 0.0]]
    assert "the CRM probabilities" in export.warnings[0]


def test_opportunity_stage_beside_gives_the_real_stage_list(read, fixtures):
    export = read(fixtures / "salesforce" / "org" / "Opportunity.csv")
    stages = export.frames["pipeline_stages"]
    assert stages["stage"].tolist() == ["Prospecting", "Qualification", "Negotiation/Review",
                                        "Closed Won", "Closed Lost"]
    assert stages["crm_probability"].tolist() == [0.1, 0.2, 0.9, 1.0, 0.0]
    assert not export.warnings


def test_history_yields_stage_changes_and_close_date_history(read, fixtures):
    export = read(fixtures / "salesforce" / "org" / "OpportunityHistory.csv")
    assert export.primary_table == "stage_events"
    events = export.frames["stage_events"]
    first = events[events["deal_key"] == "salesforce:0065g00000AbCdEAAV"]
    # the amount-only change on 06-10 and the close-date-only change on 07-15 are no stage events
    assert first[["stage", "entered_at"]].values.tolist() == [
        ["Prospecting", TS("2024-06-01 08:30")], ["Negotiation/Review", TS("2024-06-20 09:00")]]
    assert len(events) == 6
    closes = export.frames["close_date_history"]
    slip = closes[closes["deal_key"] == "salesforce:0065g00000AbCdEAAV"]
    assert slip[["changed_at", "expected_close_date"]].to_dict("records") == [
        {"changed_at": TS("2024-06-01 08:30"), "expected_close_date": TS("2024-08-31")},
        {"changed_at": TS("2024-07-15 10:00"), "expected_close_date": TS("2024-09-30")}]
    # rows_read counts the rows that are stage events or rejected (see the module's docstring)
    assert export.rows_read == 7
    assert "2 history rows change no stage" in export.warnings[0]
    [bad] = export.rejected
    assert bad.row_number == 9 and "unparseable entered_at 'not a date'" in bad.reason


def test_migration_day_first_events_are_marked_inferred(read, tmp_path):
    lines = ["Id,OpportunityId,CreatedDate,StageName,CloseDate"]
    for i in range(30):  # 30 deals migrated on 2023-03-01, each entering mid-pipeline
        lines.append(f"h{i},opp{i},2023-03-01T0{i % 10}:00:00Z,{'Proposal' if i % 2 else 'Negotiation'},2023-06-30")
    for i in range(5):  # deals created later, one a day
        lines.append(f"n{i},new{i},2023-04-0{i + 1}T10:00:00Z,Prospecting,2023-07-31")
    lines.append("h99,opp0,2023-03-10T10:00:00Z,Closed Won,2023-03-10")
    path = tmp_path / "OpportunityHistory.csv"
    path.write_text("\n".join(lines) + "\n")
    export = read(path)
    events = export.frames["stage_events"]
    migrated = events[events["entered_at"].dt.normalize() == TS("2023-03-01")]
    assert len(migrated) == 30 and set(migrated["origin"]) == {"inferred"}
    assert set(events[events["entered_at"].dt.normalize() != TS("2023-03-01")]["origin"]) == {"history"}
    assert "migrated into Salesforce" in export.warnings[0] and "2023-03-01" in export.warnings[0]


def test_opportunity_stage_file(read, fixtures):
    export = read(fixtures / "salesforce" / "org" / "OpportunityStage.csv")
    stages = export.frames["pipeline_stages"]
    assert stages[["stage", "stage_order", "kind"]].values.tolist() == [
        ["Prospecting", 1, "open"], ["Qualification", 2, "open"], ["Negotiation/Review", 3, "open"],
        ["Closed Won", 4, "won"], ["Closed Lost", 5, "lost"]]
