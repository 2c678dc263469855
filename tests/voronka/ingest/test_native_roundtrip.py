"""Round trip through every CRM format the simulator writes: simulate -> write_native ->
load_files into DuckDB -> the simulator's canonical data back, up to what the format carries.

What each format cannot carry is stated in FORMATS below and the comparison applies exactly that
loss to the simulator's data (the `expected_*` functions), then asks for equality: deal count,
outcomes, amounts and currencies, created/closed times in UTC (to the precision the format
keeps), the stage event sequence of every deal, the stage lists — and nothing quarantined.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dbt_helpers import invoke_dbt

from voronka import cli
from voronka.cli import run_commands
from voronka.ingest.canonical import CREATION_EVENT_PREFIX
from voronka.ingest.loader import load_files
from voronka.ingest.readers import detect_format
from voronka.simulator.company import simulate_company
from voronka.simulator.native_writers import CRMS, EXPORT_TIMEZONES, write_native

END_DATE = date(2025, 12, 31)
N_DEALS = 400
REFERENCE_FILES = {"targets.csv", "fx_rates.csv", "marketing_spend.csv"}  # canonical in every format


@dataclass(frozen=True)
class Carries:
    """What a format keeps of the canonical data (everything else is compared exactly)."""

    history_file: str  # the file (pattern) whose events are the CRM's stage history
    time_unit: str = "s"  # precision of created_at and of event times
    closed_unit: str = "s"  # precision of closed_at ("D": a date)
    event_tz: str = "UTC"  # zone the event times are written in (local wall clock)
    deal_tz: str = "UTC"  # zone of the deals export's times
    pipelines: dict | None = None  # canonical pipeline -> the format's (None: same names)
    terminal_stages: dict | None = None  # canonical won/lost stage kind -> the format's name
    creation_event: bool = True  # the event into the first stage at creation is in the history
    # (else a history of moves: the reader writes a 'crt-' event, settled by dbt's int_stage_events)
    latest_entry_only: bool = False  # one time per (deal, stage): its latest entry
    owner_as_id: bool = False  # owners are user ids (a one-to-one relabelling)
    lead_source_as_id: bool = False  # lead sources are source ids (a one-to-one relabelling)
    lost_reason: bool = True
    region_product: bool = False  # mapped to canonical region/product (else kept in attributes)
    expected_close: str = "all"  # all | open (closed deals carry their close date) | none
    crm_probability: bool = True
    segment_attribute: str | None = None  # the attributes key holding the segment
    not_carried: tuple = field(default_factory=tuple)  # for the reader of this test


FORMATS = {
    "canonical": Carries("stage_events.csv", region_product=True),
    "amocrm": Carries(
        "amocrm_events_lead_status_changed.json", deal_tz="Europe/Moscow", creation_event=False,
        region_product=True, expected_close="none", crm_probability=False, segment_attribute="Сегмент",
        not_carried=("the time of the event into the first stage: the events API has only moves "
                     "(lead_status_changed; value_before names the stage, dbt puts it at created_at)",
                     "expected close date (no such standard field)", "stage probabilities",
                     "segment (custom field, kept in attributes)")),
    "bitrix24": Carries(
        "bitrix24_crm.stagehistory.list.json", owner_as_id=True, lead_source_as_id=True,
        lost_reason=False, expected_close="open", crm_probability=False, segment_attribute="UF_CRM_SEGMENT",
        # pipeline names come back: crm.category.list names the categories (0, 1)
        not_carried=("owner names (user ids)",
                     "lead source names (source ids)", "lost reason, segment, region, product "
                     "(UF_CRM_ fields in attributes)", "expected close of closed deals (CLOSEDATE "
                     "is then the close)", "stage probabilities")),
    "hubspot": Carries(
        "hubspot-crm-exports-all-deals-*.csv", time_unit="min", closed_unit="min",
        event_tz="America/New_York", deal_tz="America/New_York", latest_entry_only=True,
        expected_close="open", segment_attribute="Segment",
        not_carried=("seconds (the UI export writes minutes)", "repeated entries into a stage: "
                     "`Date entered` keeps the latest", "expected close of closed deals",
                     "which of the two fall-back hours a local time was (read as standard time)")),
    "salesforce": Carries(
        "OpportunityHistory.csv", closed_unit="D", pipelines={"Продажи B2B": "default", "SaaS": "default"},
        expected_close="open", segment_attribute="Segment__c",
        not_carried=("pipelines: one org-wide pipeline 'default' (record types in attributes)",
                     "close time: CloseDate is a day", "expected close of closed deals")),
    "pipedrive": Carries(
        "pipedrive_deals_flow.json", deal_tz="Europe/Berlin", creation_event=False,
        terminal_stages={"won": "Won", "lost": "Lost"}, segment_attribute="Deal - Segment",
        not_carried=("won/lost stage names: Pipedrive has statuses, Voronka names them Won/Lost",
                     "the time of the event into the first stage: the flow has only changes "
                     "(old_value names the stage, dbt puts it at created_at)",
                     "which of the two fall-back hours a local time was (read as standard time)")),
}


@dataclass
class Loaded:
    crm: str
    carries: Carries
    con: duckdb.DuckDBPyConnection
    results: list
    files: list
    keys: pd.DataFrame  # native_id -> deal_key, from the truth directory
    base: Path  # holds warehouse.duckdb


@pytest.fixture(scope="module")
def company():
    return simulate_company(n_deals=N_DEALS, seed=11, end_date=END_DATE, years=2.0)


@pytest.fixture(scope="module", params=CRMS)
def loaded(request, company, tmp_path_factory):
    crm = request.param
    base = tmp_path_factory.mktemp(crm)
    files = write_native(company, base / "inbox", crm, base / "truth")
    con = duckdb.connect(str(base / "warehouse.duckdb"))
    results = load_files(con, files, timezone=EXPORT_TIMEZONES[crm])
    keys = pd.read_csv(base / "truth" / "deal_keys.csv", dtype=str)
    yield Loaded(crm, FORMATS[crm], con, results, files, keys, base)
    con.close()


# ------------------------------------------------------------------ what the format keeps

def as_written(ts: pd.Series, tz: str, unit: str) -> pd.Series:
    """UTC times as the format writes them (wall clock of `tz`, to `unit`) and read back in UTC;
    a time in a fall-back hour is read as standard time, as written it cannot say which."""
    local = ts.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None).dt.floor(unit)
    if tz == "UTC":
        return local
    back = local.dt.tz_localize(tz, ambiguous=np.zeros(len(local), dtype=bool), nonexistent="shift_forward")
    return back.dt.tz_convert("UTC").dt.tz_localize(None)


def stage_kinds(company) -> dict:
    stages = company.pipeline_stages
    return dict(zip(zip(stages["pipeline"], stages["stage"]), stages["kind"]))


def rename(c: Carries, pipeline: pd.Series, stage: pd.Series, kinds: dict) -> tuple[pd.Series, pd.Series]:
    new_pipeline = pipeline.map(c.pipelines) if c.pipelines else pipeline
    if c.terminal_stages:
        kind = pd.Series([kinds[(p, s)] for p, s in zip(pipeline, stage)], index=stage.index)
        stage = stage.where(~kind.isin(list(c.terminal_stages)), kind.map(c.terminal_stages))
    return new_pipeline, stage


def expected_deals(company, lo: Loaded) -> pd.DataFrame:
    c, d = lo.carries, company.deals.copy()
    d["deal_key"] = d["native_id"].map(dict(zip(lo.keys["native_id"], lo.keys["deal_key"])))
    d["pipeline_out"], d["stage_out"] = rename(c, d["pipeline"], d["current_stage"], stage_kinds(company))
    d["created_out"] = as_written(d["created_at"], c.deal_tz, c.time_unit)
    if c.closed_unit == "D":  # a date: midnight, or the creation time for a same-day close
        day = d["closed_at"].dt.floor("D")
        d["closed_out"] = day.where(~(day < d["created_at"]), d["created_at"])
    else:
        d["closed_out"] = as_written(d["closed_at"], c.deal_tz, c.closed_unit)
    return d.set_index("deal_key")


def expected_events(company, lo: Loaded) -> pd.DataFrame:
    c, ev = lo.carries, company.stage_events.copy()
    ev["deal_key"] = ev["native_id"].map(dict(zip(lo.keys["native_id"], lo.keys["deal_key"])))
    ev = ev.sort_values(["deal_key", "entered_at"], kind="stable")
    if not c.creation_event:
        ev = ev[ev["deal_key"].duplicated()]
    if c.latest_entry_only:
        ev = ev.drop_duplicates(["deal_key", "pipeline", "stage"], keep="last")
    ev["pipeline"], ev["stage"] = rename(c, ev["pipeline"], ev["stage"], stage_kinds(company))
    ev["entered_at"] = as_written(ev["entered_at"], c.event_tz, c.time_unit)
    return ev[["deal_key", "pipeline", "stage", "entered_at"]]


def expected_stages(company, c: Carries) -> pd.DataFrame:
    st = company.pipeline_stages.copy()
    st["pipeline"], st["stage"] = rename(c, st["pipeline"], st["stage"], stage_kinds(company))
    if c.pipelines and len(set(c.pipelines.values())) == 1:  # one org-wide list: open, won, lost
        st["t"] = st["kind"].map({"open": 0, "won": 1, "lost": 2})
        st = st.reset_index(drop=True).reset_index().sort_values(["t", "index"])
        st["stage_order"] = np.arange(1, len(st) + 1)
    if not c.crm_probability:
        st["crm_probability"] = np.nan
    return st[["pipeline", "stage", "stage_order", "kind", "crm_probability"]]


def one_to_one(a: pd.Series, b: pd.Series) -> bool:
    pairs = pd.DataFrame({"a": a.to_numpy(), "b": b.to_numpy()}).drop_duplicates()
    return pairs["a"].is_unique and pairs["b"].is_unique


# ------------------------------------------------------------------ tests

def test_every_file_loads_and_nothing_is_quarantined(loaded):
    assert {r.status for r in loaded.results} == {"loaded"}, [(r.file, r.message) for r in loaded.results]
    assert sum(r.rows_quarantined for r in loaded.results) == 0
    assert loaded.con.execute("select count(*) from raw.quarantine").fetchone()[0] == 0


def test_deals_come_back(company, loaded):
    c = loaded.carries
    got = loaded.con.execute("select * from raw.deals").df().set_index("deal_key")
    want = expected_deals(company, loaded)
    assert len(got) == len(want) == N_DEALS
    assert set(got.index) == set(want.index)
    got = got.loc[want.index]

    assert (got["outcome"] == want["outcome"]).all()
    assert (got["pipeline"] == want["pipeline_out"]).all()
    assert (got["current_stage"] == want["stage_out"]).all()
    assert (got["title"] == want["title"]).all()
    assert np.allclose(got["amount"].astype(float), want["amount"].astype(float), rtol=0, atol=0.005)
    assert (got["currency"] == want["currency"]).all()
    assert (got["created_at"] == want["created_out"]).all()
    closed = want["closed_out"].notna()
    assert (got["closed_at"].isna() == ~closed).all()
    assert (got["closed_at"][closed] == want["closed_out"][closed]).all()

    if c.owner_as_id:
        assert one_to_one(got["owner"], want["owner"])
    else:
        assert (got["owner"] == want["owner"]).all()
    if c.lead_source_as_id:
        assert one_to_one(got["lead_source"], want["lead_source"])
    else:
        assert (got["lead_source"] == want["lead_source"]).all()
    lost = want["outcome"] == "lost"
    if c.lost_reason:
        assert (got["lost_reason"][lost] == want["lost_reason"][lost]).all()
        assert got["lost_reason"][~lost].isna().all()
    if c.region_product:
        assert (got["region"] == want["region"]).all() and (got["product"] == want["product"]).all()
    expected = pd.to_datetime(got["expected_close_date"])
    if c.expected_close == "none":
        assert expected.isna().all()
    else:
        rows = want.index if c.expected_close == "all" else want.index[want["outcome"] == "open"]
        assert (expected[rows] == want.loc[rows, "expected_close_date"]).all()


def test_custom_fields_stay_in_attributes(company, loaded):
    key = loaded.carries.segment_attribute
    if key is None:
        pytest.skip("the canonical format maps segment to its column")
    got = loaded.con.execute("select deal_key, attributes from raw.deals").df()
    segment = got["attributes"].map(lambda a: json.loads(a).get(key))
    want = expected_deals(company, loaded).loc[got["deal_key"], "segment"]
    assert (segment.to_numpy() == want.to_numpy()).all()


def test_stage_history_comes_back_in_order(company, loaded):
    history = [r.file for r in loaded.results if fnmatch.fnmatch(r.file, loaded.carries.history_file)]
    assert len(history) == 1
    got = loaded.con.execute(
        "select deal_key, pipeline, stage, entered_at from raw.stage_events where export_file = ? "
        f"and not starts_with(event_key, '{CREATION_EVENT_PREFIX}')", history).df()
    want = expected_events(company, loaded)
    order = ["deal_key", "entered_at", "stage"]
    got = got.sort_values(order).reset_index(drop=True)
    want = want.sort_values(order).reset_index(drop=True)
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # the history holds what the simulator exercises: moves back and reopened deals
    truth = company.truth
    assert truth["has_backward_move"].any() and truth["is_reopened"].any()


@pytest.mark.slow  # dbt run per CRM
def test_a_history_of_moves_gives_the_stage_each_deal_was_created_in(company, loaded, tmp_path):
    """amoCRM's events and Pipedrive's flow have only moves; the stage a deal left on its first
    move is the stage it was created in. The reader writes it one second before that move, and
    dbt's int_stage_events puts it at the deal's created_at: then every deal with a move has its
    whole sequence back, the entry into its first stage included."""
    c = loaded.carries
    if c.creation_event:
        pytest.skip("this format's history has the creation event itself")
    con = loaded.con
    created = con.execute("select deal_key, pipeline, stage, entered_at from raw.stage_events "
                          f"where starts_with(event_key, '{CREATION_EVENT_PREFIX}')").df()
    moves = expected_events(company, loaded)
    first_move = moves.groupby("deal_key")["entered_at"].min()
    assert set(created["deal_key"]) == set(first_move.index)
    [result] = [r for r in loaded.results if fnmatch.fnmatch(r.file, c.history_file)]
    # derived rows are reported as such, not as rows of the file
    assert result.stage_events_derived == len(first_move)
    assert result.stage_events == result.rows_read - result.rows_quarantined
    assert (created.set_index("deal_key")["entered_at"]
            == first_move.reindex(created["deal_key"]).to_numpy() - pd.Timedelta(seconds=1)).all()

    con.execute("checkpoint")
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(loaded.base / "warehouse.duckdb", warehouse)
    run = invoke_dbt(["run", "--select", "+int_stage_events"], warehouse, tmp_path)
    assert run.success, run.exception
    with duckdb.connect(str(warehouse), read_only=True) as built:
        got = built.execute("select deal_key, pipeline, stage, entered_at from main.int_stage_events").df()
    got = got[got["deal_key"].isin(first_move.index)]
    whole = dataclasses.replace(loaded, carries=dataclasses.replace(c, creation_event=True))
    want = expected_events(company, whole)
    want = want[want["deal_key"].isin(first_move.index)]
    # The creation event is at created_at as the deals export writes it (its zone, its precision).
    deals = expected_deals(company, loaded)
    is_first = ~want["deal_key"].duplicated()
    want.loc[is_first, "entered_at"] = deals.loc[want.loc[is_first, "deal_key"], "created_out"].to_numpy()
    order = ["deal_key", "entered_at", "stage"]
    got = got.sort_values(order).reset_index(drop=True)
    want = want.sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_stage_lists_come_back(company, loaded):
    got = loaded.con.execute(
        "select pipeline, stage, stage_order, kind, crm_probability from raw.pipeline_stages").df()
    want = expected_stages(company, loaded.carries)
    key = ["pipeline", "stage_order"]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, atol=1e-9)


def test_the_warehouse_is_funnel_ready(company, loaded):
    """Every stage a deal is in or entered is in raw.pipeline_stages; targets and marketing spend
    name the pipelines and lead sources the deals carry."""
    con = loaded.con
    missing = con.execute("""
        select pipeline, current_stage from raw.deals
        except select pipeline, stage from raw.pipeline_stages
        union all
        select pipeline, stage from raw.stage_events
        except select pipeline, stage from raw.pipeline_stages
    """).fetchall()
    assert missing == []
    pipelines = {p for (p,) in con.execute("select distinct pipeline from raw.deals").fetchall()}
    targeted = {p for (p,) in con.execute("select distinct scope_pipeline from raw.targets").fetchall()}
    assert targeted == pipelines
    sources = {s for (s,) in con.execute("select distinct lead_source from raw.deals").fetchall()}
    spent = {s for (s,) in con.execute("select distinct lead_source from raw.marketing_spend").fetchall()}
    assert sources <= spent
    assert con.execute("select count(*) from raw.fx_rates").fetchone()[0] == len(company.fx_rates)
    if loaded.crm == "salesforce":  # one pipeline: the pipeline targets summed in USD
        rows = con.execute("select distinct currency from raw.targets").fetchall()
        assert rows == [("USD",)]


def test_each_file_is_recognised_as_its_crm(tmp_path, company):
    for crm in CRMS:
        files = write_native(company, tmp_path / crm, crm, tmp_path / "truth" / crm)
        sources = {detect_format(f).split(".")[0] for f in files if f.name not in REFERENCE_FILES}
        assert sources == {crm}


def test_demo_writes_the_chosen_crm_and_its_timezone(tmp_path, monkeypatch):
    monkeypatch.setattr("orchestration.runner.run_pipeline", lambda workspace, **kw: {"checks_failed": []})
    monkeypatch.setattr(run_commands, "_print_summary", lambda workspace, fmt: None)
    home = tmp_path / "ws"
    assert cli.main(["demo", "--workspace", str(home), "--crm", "hubspot", "--deals", "50",
                     "--end-date", "2025-12-31", "--quiet"]) == 0
    config = (home / "voronka.yaml").read_text(encoding="utf-8")
    assert "timezone: America/New_York" in config and "# time zone of exports" in config
    names = sorted(p.name for p in (home / "inbox").iterdir())
    assert "hubspot_pipelines_deals.json" in names and "targets.csv" in names
    assert json.loads((home / "truth" / "export.json").read_text())["crm"] == "hubspot"
    assert cli.build_parser().parse_args(["demo"]).crm == "canonical"
