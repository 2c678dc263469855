"""The benchmark's floors compute what they claim: both give every stage event a transition, and a
funnel whose first stage counts every deal of its pipeline, on a small simulated company."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from floors import duckdb_floor, pandas_floor  # noqa: E402


@pytest.fixture(scope="module")
def inbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("floors")
    company = simulate_company(n_deals=400, seed=3, end_date=date(2026, 11, 20))
    write_canonical(company, root / "inbox", root / "truth")
    return root / "inbox", company


def test_duckdb_and_pandas_floors_agree_and_count_every_event(inbox, tmp_path):
    folder, company = inbox
    in_duckdb = duckdb_floor(folder, tmp_path / "floor.duckdb")
    in_pandas = pandas_floor(folder)
    assert in_duckdb["transitions"] == in_pandas["transitions"] == len(company.stage_events)
    open_stages = int((company.pipeline_stages["kind"] == "open").sum())
    assert in_duckdb["funnel_rows"] == in_pandas["funnel_rows"] == open_stages


def test_the_first_stage_of_the_duckdb_funnel_counts_every_deal_of_its_pipeline(inbox, tmp_path):
    folder, company = inbox
    duckdb_floor(folder, tmp_path / "floor.duckdb")
    con = duckdb.connect(str(tmp_path / "floor.duckdb"))
    first = dict(con.execute("select pipeline, reached from funnel where stage_order = 1").fetchall())
    won = dict(con.execute("select pipeline, won from funnel where stage_order = 1").fetchall())
    con.close()
    assert first == company.deals.groupby("pipeline").size().to_dict()
    assert won == company.deals[company.deals["outcome"] == "won"].groupby("pipeline").size().to_dict()
