"""Mapped sources are remembered, refused and mostly-quarantined files are said and fail the
command, the quarantine can be read without SQL (issue 13, items 2 and 7)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from orchestration.assets.ingest import raw_tables
from orchestration.resources import WorkspaceResource
from voronka.cli import main, run_commands, source_pattern
from voronka.config import resolve_workspace
from voronka.errors import MappingError
from voronka.ingest.readers import read_export

MAPPING = """source_system: sheet
columns: {native_id: Opp, current_stage: Stage, created_at: Created, closed_at: Closed, amount: Value}
outcome: {column: Result}
"""
HEADER = "Opp,Stage,Created,Closed,Value,Result\n"


def export(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def deals_in(ws: Path) -> list[str]:
    con = duckdb.connect(str(ws / "warehouse.duckdb"), read_only=True)
    try:
        return [k for (k,) in con.execute("select deal_key from raw.deals order by deal_key").fetchall()]
    finally:
        con.close()


def ingest_inbox(ws: Path) -> dg.ExecuteInProcessResult:
    """The inbox as `voronka run` and the sensor's job read it: the ingest asset."""
    return dg.materialize([raw_tables], resources={"workspace": WorkspaceResource(home=str(ws))})


@pytest.mark.parametrize("name,pattern", [("deals_2024-05-01.csv", "deals_*.csv"), ("export 12.xlsx", "export *.xlsx"),
                                          ("pipeline.csv", "pipeline.csv")])
def test_the_pattern_remembered_matches_the_next_exports(name, pattern):
    assert source_pattern(name) == pattern


def test_a_mapped_source_is_remembered_and_its_next_export_in_the_inbox_is_read_with_it(tmp_path, capsys):
    ws = tmp_path / "ws"
    (tmp_path / "sheet.yaml").write_text(MAPPING)
    first = export(tmp_path / "opps_2024-05.csv", ["1,New,2024-05-01 10:00,,100,open",
                                                    "2,Signed,2024-05-02 10:00,2024-05-20 10:00,200,won"])
    assert main(["ingest", str(first), "--mapping", str(tmp_path / "sheet.yaml"), "--workspace", str(ws),
                 "--quiet"]) == 0
    config = yaml.safe_load((ws / "voronka.yaml").read_text())
    assert config["sources"] == [{"pattern": "opps_*.csv", "mapping": str(tmp_path / "sheet.yaml")}]
    assert resolve_workspace(ws).config().sources == (("opps_*.csv", str(tmp_path / "sheet.yaml")),)
    # The next export dropped in the inbox (before: refused with no message) is read with the mapping.
    export(ws / "inbox" / "opps_2024-06.csv", ["1,Signed,2024-05-01 10:00,2024-06-03 10:00,100,won",
                                               "3,New,2024-06-02 10:00,,50,open"])
    assert ingest_inbox(ws).success
    assert deals_in(ws) == ["sheet:1", "sheet:2", "sheet:3"]
    summary = json.loads((ws / "logs" / "last_ingest.json").read_text())
    assert summary["problems"] == []
    assert [f["file"] for f in summary["files"] if f["status"] == "loaded"] == ["opps_2024-06.csv"]
    # A second source with an existing `sources:` list: the user's list is not rewritten, the CLI says what to add.
    other = export(tmp_path / "other.csv", ["9,New,2024-05-01 10:00,,1,open"])
    capsys.readouterr()
    assert main(["ingest", str(other), "--mapping", str(tmp_path / "sheet.yaml"), "--workspace", str(ws),
                 "--quiet"]) == 0
    assert 'add to `sources:`' in capsys.readouterr().err
    assert yaml.safe_load((ws / "voronka.yaml").read_text())["sources"] == config["sources"]


def test_a_refused_inbox_file_is_one_line_a_non_zero_exit_and_a_file_alert(tmp_path, capsys, monkeypatch):
    ws = resolve_workspace(tmp_path / "ws").create().home
    (ws / "inbox" / "leads.csv").write_text("Lead,Status\n1,hot\n", encoding="utf-8")

    def run_ingest_only(workspace, **_):
        assert ingest_inbox(workspace.home).success  # a refused file does not fail the asset
        return {"timings": {}, "checks_failed": []}

    import orchestration.runner

    monkeypatch.setattr(orchestration.runner, "run_pipeline", run_ingest_only)
    monkeypatch.setattr(run_commands, "_print_summary", lambda *a: None)
    assert main(["run", "--workspace", str(ws), "--quiet"]) == 1
    [line] = [x for x in capsys.readouterr().err.splitlines() if x.startswith("voronka:")]  # not Dagster's log
    assert line.startswith("voronka: refused leads.csv: no known export format matches the header")
    assert "voronka ingest --mapping M.yaml FILE" in line
    alerts = [json.loads(x) for x in (ws / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert [(a["kind"], a["rows"][0]["file"]) for a in alerts] == [("inbox_file_refused", "leads.csv")]
    # The same refusal on the next run is said again but alerted once.
    assert main(["run", "--workspace", str(ws), "--quiet"]) == 1
    assert len((ws / "alerts" / "alerts.jsonl").read_text().splitlines()) == 1


def test_a_file_above_the_quarantine_limit_fails_with_its_top_reasons_and_the_rest_loads(tmp_path, capsys):
    ws = tmp_path / "ws"
    (tmp_path / "sheet.yaml").write_text(MAPPING)
    rows = [f"{i},New,2024-05-01 10:00,,100,open" for i in range(1, 19)]
    rows += ["19,New,someday,,100,open", "20,New,2024-05-01 10:00,,-1,open"]  # 2 of 20 = 10% > 5%
    path = export(tmp_path / "opps.csv", rows)
    code = main(["ingest", str(path), "--mapping", str(tmp_path / "sheet.yaml"), "--workspace", str(ws),
                 "--quiet", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 1
    [row] = json.loads(out)
    assert (row["rows_read"], row["rows_loaded"], row["rows_quarantined"]) == (20, 18, 2)
    [line] = err.strip().splitlines()
    assert "opps.csv: 2 of 20 rows quarantined (10%, above the 5% allowed), the other 18 loaded" in line
    assert "unparseable created_at (column 'Created') (1)" in line and "negative amount (column 'Value') (1)" in line
    assert len(deals_in(ws)) == 18
    # Within the limit (configurable): exit 0.
    (ws / "voronka.yaml").write_text((ws / "voronka.yaml").read_text() + "max_quarantined_share: 0.2\n")
    path2 = export(tmp_path / "opps2.csv", rows[:-1] + ["21,New,2024-05-01 10:00,,-1,open"])
    assert main(["ingest", str(path2), "--mapping", str(tmp_path / "sheet.yaml"), "--workspace", str(ws),
                 "--quiet"]) == 0


def test_voronka_quarantine_shows_and_exports_the_rows_with_their_reasons(tmp_path, capsys):
    ws = tmp_path / "ws"
    (tmp_path / "sheet.yaml").write_text(MAPPING)
    path = export(tmp_path / "opps.csv", ["1,New,2024-05-01 10:00,,100,open", "=HYPERLINK(1),New,x,,5,open"])
    main(["ingest", str(path), "--mapping", str(tmp_path / "sheet.yaml"), "--workspace", str(ws), "--quiet"])
    capsys.readouterr()
    assert main(["quarantine", "--workspace", str(ws), "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["export_file"], row["row_number"]) == ("opps.csv", 2)
    assert row["reason"] == "unparseable created_at 'x' (column 'Created')"
    assert json.loads(row["raw_row"])["Opp"] == "=HYPERLINK(1)"
    assert main(["quarantine", "--workspace", str(ws), "--format", "csv"]) == 0
    [parsed] = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert parsed["reason"].startswith("unparseable created_at")
    assert main(["quarantine", "--workspace", str(ws), "--file", "other.csv", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["quarantine", "--workspace", str(ws)]) == 0
    assert "unparseable created_at" in capsys.readouterr().out
    # Exported like a mart: a cell that starts like a formula is written as text.
    assert main(["export", "--table", "quarantine", "--out", str(tmp_path / "q.csv"), "--workspace", str(ws),
                 "--quiet"]) == 0
    with open(tmp_path / "q.csv", encoding="utf-8-sig") as fh:
        [exported] = list(csv.DictReader(fh))
    assert exported["reason"].startswith("unparseable created_at") and exported["row_number"] == "2"
    assert main(["quarantine", "--workspace", str(ws), "--out", str(tmp_path / "q.xlsx"), "--quiet"]) == 0
    import openpyxl

    sheet = openpyxl.load_workbook(tmp_path / "q.xlsx").active
    assert [c.value for c in sheet[1]] == ["export_file", "row_number", "reason", "raw_row"]
    assert sheet.cell(2, 3).data_type == "s"


def test_a_mapping_column_typo_is_one_line_naming_the_closest_headers(tmp_path, capsys):
    ws = tmp_path / "ws"
    (tmp_path / "sheet.yaml").write_text(MAPPING.replace("closed_at: Closed", "closed_at: Closd"))
    path = export(tmp_path / "opps.csv", ["1,New,2024-05-01 10:00,,100,open"])
    assert main(["ingest", str(path), "--mapping", str(tmp_path / "sheet.yaml"), "--workspace", str(ws),
                 "--quiet"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "column 'Closd' (for closed_at) is not in opps.csv; closest headers: 'Closed'" in line
    assert deals_in(ws) == []  # nothing half-loaded
    assert "sources" not in yaml.safe_load((ws / "voronka.yaml").read_text())


def test_a_stage_history_mapping_may_give_the_stage_as_a_constant(tmp_path):
    (tmp_path / "won.csv").write_text("deal,when\nA-1,2024-01-10T09:00:00\n")
    (tmp_path / "m.yaml").write_text("source_system: inhouse\ntable: stage_events\n"
                                     "columns: {native_id: deal, entered_at: when}\n"
                                     "constants: {pipeline: Direkt, stage: Gewonnen}\n")
    events = read_export(tmp_path / "won.csv", mapping=tmp_path / "m.yaml").frames["stage_events"]
    assert events[["deal_key", "pipeline", "stage"]].values.tolist() == [["inhouse:A-1", "Direkt", "Gewonnen"]]
    (tmp_path / "m.yaml").write_text("source_system: inhouse\ntable: stage_events\n"
                                     "columns: {native_id: deal, entered_at: when}\n")
    with pytest.raises(MappingError, match="required field 'stage'"):
        read_export(tmp_path / "won.csv", mapping=tmp_path / "m.yaml")


@pytest.mark.parametrize("text,words", [
    ("sources: {pattern: a}\n", "sources must be a list"),
    ("sources:\n  - {pattern: 'a*.csv'}\n", "sources entry 1 must be"),
    ("stage_outcomes: {'*': {Выдано: maybe}}\n", "stage_outcomes.*.Выдано: 'maybe' is not won, lost or open"),
    ("stage_outcomes: [Выдано]\n", "stage_outcomes must map pipelines"),
    ("max_quarantined_share: 5\n", "max_quarantined_share must be between 0 and 1"),
])
def test_ingest_settings_mistakes_are_one_line(tmp_path, text, words):
    from voronka.errors import ConfigError

    ws = resolve_workspace(tmp_path).create()
    ws.config_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=words.replace("*", r"\*").replace("(", r"\(")):
        ws.config()


def test_ingest_settings_are_read(tmp_path):
    ws = resolve_workspace(tmp_path).create()
    ws.config_path.write_text("sources:\n  - {pattern: 'leads_*.csv', mapping: maps/leads.yaml}\n"
                              "stage_outcomes: {Лизинг: {Отложенные: Lost}}\nmax_quarantined_share: 0.1\n",
                              encoding="utf-8")
    config = ws.config()
    assert ws.sources() == (("leads_*.csv", tmp_path.resolve() / "maps" / "leads.yaml"),)
    assert config.stage_outcomes == {"Лизинг": {"отложенные": "lost"}}
    assert config.max_quarantined_share == 0.1
    # The default voronka.yaml (comments included) stays valid.
    assert resolve_workspace(tmp_path / "fresh").create().config().sources == ()
