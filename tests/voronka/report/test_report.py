"""The leadership report: its numbers are the marts', CRM text is escaped, missing marts degrade to
"not available yet", and exports neutralise spreadsheet formulas.

One small demo company is simulated and run through the whole pipeline (simulator + runner, the
same stages `voronka run` materialises, including the leadership_report asset) once per session;
tests that change the warehouse work on a copy of its file. tests/voronka/report/test_report_browser.py reuses it.
"""

from __future__ import annotations

import atexit
import csv
import functools
import json
import math
import re
import shutil
import tempfile
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ml.periods import quarter_of
from orchestration.runner import run_pipeline, workspace_instance
from voronka.cli import _compact_money, main, render
from voronka.config import Workspace
from voronka.report.data import report_data
from voronka.report.export import neutralise
from voronka.report.render import render_report
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company

pytestmark = pytest.mark.slow  # the demo run (whole graph) the report is read from

END = date(2026, 11, 20)
SCRIPT = "<script>alert('pwned')</script>"
IMG = "<img src=x onerror=alert(1)>"


@functools.lru_cache(maxsize=1)
def demo_workspace() -> Workspace:
    """A small demo company, run end to end once per test session (both report test modules)."""
    home = Path(tempfile.mkdtemp(prefix="voronka-report-demo-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    workspace = Workspace(home).create()
    # A short backtest (two origins) so the report's quality footnote has real rows to read.
    workspace.config_path.write_text("models_dir: models\nforecast_draws: 500\nbacktest_max_origins: 2\n"
                                     "backtest_draws: 200\n", encoding="utf-8")
    company = simulate_company(n_deals=400, seed=7, end_date=END)
    write_canonical(company, workspace.inbox, home / "truth")
    run_pipeline(workspace, quiet=True, retrain=True)
    return workspace


@pytest.fixture(scope="module")
def demo() -> Workspace:
    return demo_workspace()


@pytest.fixture(scope="module")
def con(demo):
    connection = duckdb.connect(str(demo.warehouse), read_only=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def data(demo, con):
    return report_data(con, model_store=demo.models_dir())


@pytest.fixture(scope="module")
def html(data):
    return render_report(data)


def copy_warehouse(demo: Workspace, tmp_path: Path) -> Path:
    target = tmp_path / "warehouse.duckdb"
    shutil.copy2(demo.warehouse, target)
    return target


class Numbers(HTMLParser):
    """Every shown number (data-k → (data-v, text)), every tag and attribute name, and the text."""

    def __init__(self):
        super().__init__()
        self.numbers, self.tags, self.attributes, self.text = {}, [], [], []
        self._open = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]
        attrs = dict(attrs)
        if "data-k" in attrs:
            self._open.append([attrs["data-k"], attrs.get("data-v", ""), ""])

    def handle_endtag(self, tag):
        if tag == "span" and self._open:
            key, value, text = self._open.pop()
            self.numbers[key] = (value, text)

    def handle_data(self, data):
        self.text.append(data)
        for entry in self._open:
            entry[2] += data


def parse(html: str) -> Numbers:
    parser = Numbers()
    parser.feed(html)
    return parser


def money_value(text: str) -> float:
    """'1.74M' → 1.74e6, '456K' → 456e3, '−12.3K' → -12300 (what a reader takes from the page)."""
    m = re.fullmatch(r"([−+-]?)([\d,.]+)([KMB]?)", text.strip())
    assert m, text
    value = float(m.group(2).replace(",", "")) * {"": 1, "K": 1e3, "M": 1e6, "B": 1e9}[m.group(3)]
    return -value if m.group(1) in ("−", "-") else value


# ---------------------------------------------------------------- the numbers are the marts'

def test_the_headline_is_this_quarters_forecast_and_coverage_from_the_marts(con, data, html):
    quarter, next_quarter = quarter_of(END).label, quarter_of(END, 1).label
    forecast = con.execute("select * from main.revenue_forecast where period = ? and pipeline = 'all'",
                           [quarter]).df()
    method = "model" if "model" in set(forecast.method) else "weighted_pipeline"
    row = forecast[forecast.method == method].iloc[0]
    h = data["headline"]
    assert h["period"] == quarter and h["method"] == method
    for key in ("p10", "p50", "p90", "target", "booked", "prob_hit_target"):
        assert h[key] == pytest.approx(float(row[key])), key
    shown = parse(html).numbers
    for key in ("p10", "p50", "p90", "target", "booked"):
        value, text = shown[f"headline.{key}"]
        assert float(value) == pytest.approx(float(row[key]))
        # What the reader sees rounds to three significant figures at most.
        assert money_value(text) == pytest.approx(float(row[key]), rel=0.006, abs=500), (key, text)
    value, text = shown["headline.prob_hit_target"]
    assert float(value) == pytest.approx(float(row.prob_hit_target))
    assert float(text.rstrip("%")) == pytest.approx(100 * float(row.prob_hit_target), abs=0.5)
    for period in (quarter, next_quarter):
        cov = con.execute("select coverage, status from main.pipeline_coverage where period = ? and pipeline = 'all'",
                          [period]).fetchone()
        value, text = shown[f"coverage.{period}"]
        assert float(value) == pytest.approx(cov[0]) and text == f"{cov[0]:.2f}×"
        assert f'class="card cov s-{cov[1]}"' in html  # coloured by its status


def test_the_funnel_shows_the_marts_reached_conversion_and_losses(con, html):
    funnel = con.execute("select pipeline, stage, reached, step_conversion, lost_here, stage_order "
                         "from main.mart_funnel_conversion").df()
    shown = parse(html).numbers
    assert len(funnel) >= 10
    for r in funnel.itertuples():
        value, text = shown[f"funnel.{r.pipeline}.{r.stage}.reached"]
        assert int(value) == r.reached and text == f"{r.reached:,}"
        value, text = shown[f"funnel.{r.pipeline}.{r.stage}.step_conversion"]
        if r.step_conversion is None or math.isnan(r.step_conversion):
            assert value == "" and text == "–"
        else:
            assert float(value) == pytest.approx(r.step_conversion)
            assert float(text.rstrip("%")) == pytest.approx(100 * r.step_conversion, abs=0.5)
    # Russian and English stage names reach the page intact.
    assert "Отправлено КП" in html and "Negotiation" in html and '<meta charset="utf-8">' in html


def test_lost_reasons_match_the_lost_deals_counted_independently(con, data):
    lost = con.execute("""
        select pipeline, coalesce(nullif(trim(lost_reason), ''), '(none)') as reason, count(*) as n
        from raw.deals where outcome = 'lost' and closed_at <= (select max(as_of) from main.revenue_forecast)
        group by all
    """).df()
    lost_here = con.execute("select pipeline, sum(lost_here) as n from main.mart_funnel_conversion group by all").df()
    for f in data["funnel"]["pipelines"]:
        expected = lost[lost.pipeline == f["pipeline"]].set_index("reason")["n"]
        assert f["lost"] == int(lost_here.set_index("pipeline").loc[f["pipeline"], "n"])
        assert f["lost"] == int(expected.sum())  # every demo loss happens at an open stage
        named = {r["reason"]: r["deals"] for r in f["lost_reasons"] if not r.get("other")}
        assert named and all(expected[reason] == n for reason, n in named.items())
        assert list(named.values()) == sorted(named.values(), reverse=True)
        assert sum(r["deals"] for r in f["lost_reasons"]) == f["lost"]
        assert sum(r["share"] for r in f["lost_reasons"]) == pytest.approx(1.0)


def test_the_waterfall_adds_up_to_the_open_pipeline_now(con, data, html):
    changes = data["changes"]
    assert changes["available"]
    assert changes["start"] + sum(s["amount"] for s in changes["steps"]) == pytest.approx(changes["end"], rel=1e-9)
    open_now = con.execute("select count(*), sum(coalesce(amount_reporting, 0)) from main.mart_pipeline_snapshot").fetchone()
    assert changes["deals_now"] == open_now[0]
    assert changes["end"] == pytest.approx(open_now[1], rel=1e-9)
    won = {s["change"]: s for s in changes["steps"]}["won"]
    won_in_week = con.execute("""
        select count(*) from main.int_deals_restated_as_of
        where status_as_of = 'won' and closed_at_as_of > (select max(as_of) from main.revenue_forecast) - interval 7 day
    """).fetchone()[0]
    assert won["deals"] == won_in_week and (won["amount"] < 0 or won_in_week == 0)
    assert parse(html).numbers["changes.end"][0] == repr(changes["end"])


def test_deals_needing_attention_come_from_the_scores_with_their_owners(con, data):
    scores = con.execute("select deal_key, owner, amount_reporting, p_win, p_win_baseline, is_stalled "
                         "from main.deal_scores").df().set_index("deal_key")
    attention = data["attention"]
    assert attention["stalled_total"] == int(scores.is_stalled.sum()) > 0
    amounts = [d["amount_reporting"] for d in attention["stalled"]]
    assert amounts == sorted(amounts, reverse=True)
    for d in attention["stalled"] + attention["at_risk"]:
        assert d["owner"] == scores.loc[d["deal_key"], "owner"] and d["owner"]
    for d in attention["stalled"]:
        assert scores.loc[d["deal_key"], "is_stalled"]
    rule = attention["at_risk_rule"]
    for d in attention["at_risk"]:
        assert d["p_win"] < rule["p_win_below"] or d["p_win"] < d["p_win_baseline"] - rule["below_stage_by"]
    risk = [d["amount_reporting"] * (1 - d["p_win"]) for d in attention["at_risk"]]
    assert risk == sorted(risk, reverse=True)


def test_the_model_footnote_reads_the_model_cards_and_the_backtest(demo, con, data, html):
    from ml.registry import ModelStore

    store = ModelStore(demo.models_dir())
    win = data["quality"]["models"]["win_model"]
    # The promoted version, else the newest one (then marked as not in use).
    expected = store.current_version("win_model") or store.versions("win_model")[-1]
    assert win["version"] == expected and win["promoted"] == (store.current_version("win_model") == expected)
    card = store.card("win_model", expected)
    value, text = parse(html).numbers["model.auc"]
    assert float(value) == pytest.approx(card["metrics"]["auc"]) and text == f"{card['metrics']['auc']:.3f}"
    assert ("not in use" in html) == (not win["promoted"])
    backtest = data["quality"]["backtest"]
    if backtest["available"]:  # the short backtest the fixture ran: WAPE = Σ|P50 − actual| / Σ actual
        rows = con.execute("select p50, actual from main.backtest_results where method = 'model' "
                           "and pipeline = 'all' and horizon = ? and p50 is not null and actual is not null",
                           [backtest["horizon"]]).fetchall()
        wape = sum(abs(e - a) for e, a in rows) / sum(a for _, a in rows)
        assert backtest["model_wape"] == pytest.approx(wape)
        assert parse(html).numbers["backtest.model.wape"][0] == repr(backtest["model_wape"])
    else:
        assert "Backtest:</b> not available yet" in html


# ---------------------------------------------------------------- escaping

def test_crm_text_is_escaped_everywhere_it_lands(demo, tmp_path):
    path = copy_warehouse(demo, tmp_path)
    with duckdb.connect(str(path)) as con:
        risky = con.execute("select deal_key from main.deal_scores order by amount_reporting desc limit 1").fetchone()[0]
        con.execute("update main.mart_pipeline_snapshot set title = ? where deal_key = ?", [SCRIPT, risky])
        con.execute("update main.deal_scores set owner = ?, is_stalled = true, p_win = 0.01 where deal_key = ?",
                    ['"><script>alert("owner")</script>', risky])
        pipeline = con.execute("select min(pipeline) from main.mart_funnel_conversion").fetchone()[0]
        stage = con.execute("select min(stage) from main.mart_funnel_conversion where pipeline = ?",
                            [pipeline]).fetchone()[0]
        con.execute("update main.mart_funnel_conversion set stage = ? where pipeline = ? and stage = ?",
                    [IMG, pipeline, stage])
        for table in ("main.mart_funnel_conversion", "main.revenue_forecast", "main.pipeline_coverage"):
            con.execute(f"update {table} set pipeline = ? where pipeline = ?", [SCRIPT + "</style>", pipeline])
        data = report_data(con)
    html = render_report(data)
    page = parse(html)
    assert "script" not in page.tags and "img" not in page.tags and "style" in page.tags
    assert not [a for a in page.attributes if a.startswith("on")]
    text = "".join(page.text)
    # The planted text is shown as text, not dropped.
    assert SCRIPT in text and IMG in text and '"><script>alert("owner")</script>' in text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html


# ---------------------------------------------------------------- degrading

def test_an_empty_warehouse_renders_every_section_as_not_available(tmp_path):
    with duckdb.connect(str(tmp_path / "empty.duckdb")) as con:
        data = report_data(con)
    html = render_report(data)
    assert set(data["missing"]) == {"headline", "fan", "funnel", "changes", "attention"}
    assert html.count("Not available yet.") >= 5 and "<svg" not in html


def test_missing_scores_and_forecast_degrade_while_the_funnel_stays(demo, tmp_path):
    path = copy_warehouse(demo, tmp_path)
    with duckdb.connect(str(path)) as con:
        for table in ("deal_scores", "stage_durations", "revenue_forecast", "mart_time_in_stage",
                      "mart_pipeline_waterfall"):
            kind = con.execute("select table_type from information_schema.tables where table_schema = 'main' "
                               "and table_name = ?", [table]).fetchone()
            if kind:
                con.execute(f"drop {'view' if kind[0] == 'VIEW' else 'table'} main.{table}")
        data = report_data(con)
    html = render_report(data)
    assert {"headline", "attention"} <= set(data["missing"]) and "funnel" not in data["missing"]
    assert "main.revenue_forecast is not built yet" in html and "main.deal_scores is not built yet" in html
    assert data["funnel"]["durations_note"] == "time in stage is not available yet"
    assert "Отправлено КП" in html and 'id="fan-chart"' in html  # actuals and targets still drawn
    assert data["changes"]["source"].startswith("computed")  # the waterfall falls back to the deals


def test_model_forecast_and_backtest_are_used_when_present(demo, tmp_path):
    path = copy_warehouse(demo, tmp_path)
    quarter = quarter_of(END).label
    with duckdb.connect(str(path)) as con:
        columns = [r[0] for r in con.execute("describe main.revenue_forecast").fetchall()]
        for extra in ("from_open_pipeline", "from_new_pipeline"):
            if extra not in columns:
                con.execute(f"alter table main.revenue_forecast add column {extra} double")
        con.execute("delete from main.revenue_forecast where method = 'model'")
        con.execute("""insert into main.revenue_forecast by name
                       select * replace ('model' as method, p50 * 1.1 as p50, 0.42 as prob_hit_target,
                                         1000.0 as from_open_pipeline, 2000.0 as from_new_pipeline)
                       from main.revenue_forecast where method = 'weighted_pipeline'""")
        con.execute("create or replace table main.backtest_results as select * from (values "
                    "('2026-06-30', 'model', 0.18), ('2026-09-30', 'model', 0.22), "
                    "('2026-06-30', 'weighted_pipeline', 0.35), ('2026-09-30', 'weighted_pipeline', 0.45)) "
                    "as t(origin, method, wape)")
        baseline = con.execute("select p50 from main.revenue_forecast where period = ? and pipeline = 'all' "
                               "and method = 'weighted_pipeline'", [quarter]).fetchone()[0]
        data = report_data(con)
    h = data["headline"]
    assert h["method"] == "model" and h["p50"] == pytest.approx(baseline * 1.1)
    assert h["prob_hit_target"] == 0.42 and h["baseline_p50"] == pytest.approx(baseline)
    assert data["quality"]["backtest"]["model_wape"] == pytest.approx(0.20)
    assert data["quality"]["backtest"]["weighted_pipeline_wape"] == pytest.approx(0.40)
    shown = parse(render_report(data)).numbers
    assert shown["headline.from_new_pipeline"] == ("2000.0", "2.0K")
    assert shown["backtest.model.wape"][1] == "20%" and shown["backtest.weighted_pipeline.wape"][1] == "40%"
    # The backtest's per-origin rows (P50 and mean against actual) are summarised the same way.
    with duckdb.connect(str(path)) as con:
        con.execute("create or replace table main.backtest_results as select * from (values "
                    "('2026-07-01', 'model', 'quarter+0', 'all', 90.0, 80.0, 95.0, 120.0, 100.0), "
                    "('2026-10-01', 'model', 'quarter+0', 'all', 130.0, 110.0, 125.0, 150.0, 100.0), "
                    "('2026-10-01', 'model', 'month+0', 'all', 500.0, 1.0, 400.0, 900.0, 100.0), "
                    "('2026-10-01', 'model', 'quarter+0', 'SaaS', 500.0, 1.0, 400.0, 900.0, 100.0)) "
                    "as t(origin, method, horizon, pipeline, expected, p10, p50, p90, actual)")
        backtest = report_data(con)["quality"]["backtest"]
    assert backtest["horizon"] == "quarter+0" and backtest["model_wape"] == pytest.approx((5 + 25) / 200)
    assert backtest["methods"][0]["bias"] == pytest.approx(20 / 200)
    assert backtest["methods"][0]["interval_coverage"] == pytest.approx(0.5)


def test_deals_pushed_again_and_again_appear_once_close_date_history_exists(demo, data, tmp_path):
    assert data["attention"]["pushed"] is None  # one export: no history, said so
    path = copy_warehouse(demo, tmp_path)
    with duckdb.connect(str(path)) as con:
        key, amount = con.execute("select deal_key, amount_reporting from main.deal_scores "
                                  "order by amount_reporting desc limit 1").fetchone()
        first = con.execute("select export_file, origin from raw.close_date_history limit 1").fetchone()
        for changed_at, close in (("2026-09-01 10:00:00", "2026-09-30"), ("2026-10-01 10:00:00", "2026-10-31"),
                                  ("2026-11-18 10:00:00", "2026-12-20"), ("2026-11-19 10:00:00", "2026-12-10")):
            con.execute("insert into raw.close_date_history (deal_key, changed_at, expected_close_date, "
                        "export_file, origin) values (?, ?, ?, ?, ?)", [key, changed_at, close, *first])
        con.execute("delete from raw.close_date_history where deal_key = ? and changed_at > '2026-11-19 10:00:00'",
                    [key])
        pushed_data = report_data(con)
    attention = pushed_data["attention"]
    assert '<td class="r"><b>2</b></td>' in render_report(pushed_data)  # the pushes column of the table
    # Pushed to a later month twice (Sep → Oct → Dec); pulled in once (Dec 20 → Dec 10) is no push.
    assert [(d["deal_key"], d["pushes"]) for d in attention["pushed"]] == [(key, 2)]
    assert attention["pushed"][0]["amount_reporting"] == pytest.approx(amount)


# ---------------------------------------------------------------- the asset, the CLI, exports

def test_the_daily_run_wrote_the_report_with_metadata(demo, con):
    report = demo.reports / "voronka_report.html"
    dated = demo.reports / f"voronka_report_{END.isoformat()}.html"
    assert report.exists() and dated.exists()
    p50 = con.execute("select p50 from main.revenue_forecast where period = ? and pipeline = 'all' "
                      "order by method = 'model' desc limit 1", [quarter_of(END).label]).fetchone()[0]
    assert parse(report.read_text(encoding="utf-8")).numbers["headline.p50"][0] == repr(p50)
    instance = workspace_instance(demo)
    event = instance.get_latest_materialization_event(dg.AssetKey("leadership_report"))
    metadata = event.asset_materialization.metadata
    assert metadata["path"].value == str(report)
    assert metadata["p50"].value == pytest.approx(p50)
    assert "| pipeline | stage | reached |" in metadata["funnel"].value


def test_voronka_report_writes_the_file_and_prints_the_headline(demo, tmp_path, capsys, data):
    out = tmp_path / "out" / "leadership.html"
    assert main(["report", "--workspace", str(demo.home), "--out", str(out), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)[0]
    assert printed["path"] == str(out) and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert printed["p50"] == pytest.approx(data["headline"]["p50"])
    assert main(["report", "--workspace", str(tmp_path / "nowhere")]) == 1
    assert "no warehouse" in capsys.readouterr().err


def test_exports_neutralise_formulas_and_keep_numbers(demo, tmp_path, capsys):
    from openpyxl import load_workbook

    home = tmp_path / "ws"
    Workspace(home).create()
    copy_warehouse(demo, home)
    planted = ['=HYPERLINK("http://evil.example","click")', "+7 495 000", "-1+2", "@SUM(A1:A9)", "\t=1+1"]
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        keys = [r[0] for r in con.execute("select deal_key from main.mart_pipeline_snapshot order by deal_key "
                                          "limit 5").fetchall()]
        for key, text in zip(keys, planted):
            con.execute("update main.mart_pipeline_snapshot set title = ?, owner = ? where deal_key = ?",
                        [text, text, key])
        con.execute("update main.mart_pipeline_snapshot set amount_reporting = -5 where deal_key = ?", [keys[0]])
    for suffix in ("csv", "xlsx"):
        out = tmp_path / f"snapshot.{suffix}"
        assert main(["export", "--table", "mart_pipeline_snapshot", "--out", str(out),
                     "--workspace", str(home), "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["rows"] > 5
        if suffix == "csv":
            with open(out, encoding="utf-8-sig", newline="") as f:
                rows = {r["deal_key"]: r for r in csv.DictReader(f)}
            titles = [rows[k]["title"] for k in keys]
            assert rows[keys[0]]["amount_reporting"] in ("-5", "-5.0")
        else:
            sheet = load_workbook(out).active
            header = [c.value for c in sheet[1]]
            cells = {r[0].value: dict(zip(header, r)) for r in sheet.iter_rows(min_row=2)}
            assert all(c.data_type != "f" for row in cells.values() for c in row.values())
            titles = [cells[k]["title"].value for k in keys]
            assert cells[keys[0]]["amount_reporting"].value == -5
        assert titles == ["'" + t for t in planted]
    assert neutralise("Сделка = 5") == "Сделка = 5" and neutralise(-3) == -3
    assert main(["export", "--table", "raw.deals; drop table x", "--out", str(tmp_path / "x.csv"),
                 "--workspace", str(home)]) == 1
    assert "no table" in capsys.readouterr().err
    assert main(["export", "--table", "mart_bookings", "--out", str(tmp_path / "x.txt"), "--workspace", str(home)]) == 1
    assert ".csv or .xlsx" in capsys.readouterr().err


def test_cli_tables_fit_the_terminal_and_say_the_currency():
    rows = [{"period": "2026-Q4", "pipeline": "Продажи B2B очень длинное имя воронки", "currency": "USD",
             "target": 2203628.7, "booked": 455954.7, "p50": 1744124.9, "prob_hit_target": 0.006,
             "coverage": 1.358, "status": "warn"}]
    keys = ["period", "pipeline", "currency", "target", "booked", "p50", "prob_hit_target", "coverage", "status"]
    wide = render(rows, keys, "table", width=None)
    assert "target (USD)" in wide and "2,203,629" in wide and "0.6%" in wide and "1.36x" in wide
    assert "currency" not in wide.splitlines()[0]  # folded into the money headers
    narrow = render(rows, keys, "table", width=70)
    assert all(len(line) <= 70 for line in narrow.splitlines()[:-1])
    assert "2.20M" in narrow and "(money in USD)" in narrow and "warn" in narrow
    assert "456K" in narrow  # three significant digits, as the report shows money
    assert [_compact_money(v) for v in (95231.4, 132004.0, -1587.0, 999.4)] == ["95.2K", "132K", "-1.59K", "999"]
    assert json.loads(render(rows, keys, "json"))[0]["target"] == 2203628.7
    with pytest.raises(SystemExit) as exit_:  # a usage error is a user error: 1, not argparse's 2
        main(["funnel", "--no-such-option"])
    assert exit_.value.code == 1
