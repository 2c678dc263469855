"""The whole Dagster graph on a small simulated company, checked against pandas computed here."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.definitions import build_definitions
from voronka.cli import main
from voronka.config import Workspace
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company

pytestmark = pytest.mark.slow  # the whole graph materialised on a demo company

END = date(2026, 5, 20)
AS_OF = datetime(2026, 5, 20, 23, 59, 59)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    home = tmp_path_factory.mktemp("ws")
    workspace = Workspace(home).create()
    # The weekly backtest runs with everything here: two origins keep it short.
    workspace.config_path.write_text("models_dir: models\nbacktest_max_origins: 2\nbacktest_draws: 200\n",
                                     encoding="utf-8")
    company = simulate_company(n_deals=2000, seed=11, end_date=END)
    write_canonical(company, workspace.inbox, home / "truth")
    defs = build_definitions(str(home))
    everything = defs.resolve_implicit_global_asset_job_def()
    result = everything.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    con = duckdb.connect(str(workspace.warehouse), read_only=True)
    yield company, workspace, result, con
    con.close()


def fx_to_usd(company, currency: str, day) -> float:
    """Independent FX: the latest rate on or before the day (rates are quoted in USD)."""
    if currency == "USD":
        return 1.0
    fx = company.fx_rates
    rates = fx[(fx.currency == currency) & (pd.to_datetime(fx.rate_date) <= pd.Timestamp(day))]
    return float(rates.sort_values("rate_date").rate.iloc[-1])


def test_the_run_succeeds_and_loads_every_row(run):
    company, _, result, con = run
    assert result.success
    assert con.execute("select count(*) from raw.deals").fetchone()[0] == len(company.deals)
    assert con.execute("select count(*) from raw.stage_events").fetchone()[0] == len(company.stage_events)
    assert con.execute("select count(*) from raw.quarantine").fetchone()[0] == 0
    assert con.execute("select sum(rows_read) - sum(rows_loaded) - sum(rows_quarantined) "
                       "from raw.ingest_log").fetchone()[0] == 0


def test_funnel_reached_counts_match_pandas(run):
    company, _, _, con = run
    stages = company.pipeline_stages
    events = company.stage_events.merge(stages, on=["pipeline", "stage"])
    deals = company.deals
    for pipeline, pstages in stages.groupby("pipeline"):
        ev = events[events.pipeline == pipeline]
        max_open = ev[ev.kind == "open"].groupby("native_id").stage_order.max()
        won = set(deals[(deals.pipeline == pipeline) & (deals.outcome == "won")].native_id)
        created = int((deals.pipeline == pipeline).sum())
        mart = con.execute("select stage, reached, cumulative_conversion from main.mart_funnel_conversion "
                           "where pipeline = ?", [pipeline]).df().set_index("stage")
        for s in pstages[pstages.kind == "open"].itertuples():
            reached_ids = set(max_open[max_open >= s.stage_order].index) | won
            assert mart.loc[s.stage, "reached"] == len(reached_ids), (pipeline, s.stage)
            assert mart.loc[s.stage, "cumulative_conversion"] == pytest.approx(len(reached_ids) / created)
        won_stage = pstages[pstages.kind == "won"].stage.iloc[0]
        assert mart.loc[won_stage, "reached"] == len(won)


def test_dbt_table_models_carry_their_row_counts(run):
    _, _, result, con = run
    shown = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
             for e in result.get_asset_materialization_events()}
    for model in ("fct_deals", "fct_stage_transitions", "mart_funnel_conversion"):
        count = con.execute(f"select count(*) from main.{model}").fetchone()[0]
        assert shown[model]["dagster/row_count"].value == count > 0, model
    assert "dagster/row_count" not in shown["stg_crm__deals"]  # a view: not counted


def test_the_models_read_the_warehouse_in_a_fixed_order(run):
    """DuckDB returns rows in the order its threads finish; the models' seeded sampling picks rows
    by position, so an unordered read trained different models from the same warehouse."""
    from voronka.warehouse_reads import canonical_frames

    _, _, _, con = run
    frames = canonical_frames(con, AS_OF)
    deals, events = frames["deals"], frames["stage_events"]
    assert deals["deal_key"].is_monotonic_increasing and deals["deal_key"].is_unique
    order = events[["deal_key", "entered_at"]].apply(tuple, axis=1)
    assert order.is_monotonic_increasing
    assert canonical_frames(con, AS_OF)["stage_events"].equals(events)


def test_bookings_this_quarter_match_pandas(run):
    company, _, _, con = run
    won = company.deals[company.deals.outcome == "won"].copy()
    closed = pd.to_datetime(won.closed_at)
    won = won[(closed >= "2026-04-01") & (closed <= AS_OF)]
    expected = sum(float(r.amount) * fx_to_usd(company, r.currency, pd.Timestamp(r.closed_at).date())
                   for r in won.itertuples())
    got = con.execute("select won_amount_reporting from main.mart_bookings "
                      "where period = '2026-Q2' and pipeline = 'all'").fetchone()[0]
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_weighted_forecast_expected_matches_pandas(run):
    company, _, _, con = run
    deals = company.deals[company.deals.outcome == "open"].merge(
        company.pipeline_stages, left_on=["pipeline", "current_stage"], right_on=["pipeline", "stage"])
    close = pd.to_datetime(deals.expected_close_date)
    in_q2 = close.isna() | (close <= pd.Timestamp("2026-06-30"))  # overdue or due this quarter
    amount = deals.amount.astype(float) * deals.currency.map(lambda c: fx_to_usd(company, c, END))
    expected_open = float((amount * deals.crm_probability)[in_q2.to_numpy()].sum())
    row = con.execute("select booked, expected, p10, p50, p90 from main.revenue_forecast "
                      "where period = '2026-Q2' and pipeline = 'all' and method = 'weighted_pipeline'").fetchone()
    booked, expected, p10, p50, p90 = map(float, row)
    assert expected - booked == pytest.approx(expected_open, rel=1e-6)
    assert booked <= p10 <= p50 <= p90


def test_coverage_check_and_alert_agree(run):
    _, workspace, result, con = run
    coverage = con.execute("select * from main.pipeline_coverage").df()
    assert set(coverage.period) >= {"2026-Q2", "2026-Q3"}
    short = coverage[coverage.status != "ok"]
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["coverage_meets_requirement"].passed == short.empty
    alerts = workspace.home / "alerts" / "alerts.jsonl"
    records = [json.loads(line) for line in alerts.read_text(encoding="utf-8").splitlines()]
    coverage_records = [r for r in records if r["kind"] == "pipeline_coverage"]
    assert len(coverage_records) == (0 if short.empty else 1)
    if not short.empty:
        assert len(coverage_records[0]["rows"]) == len(short)
    # The demo's exports are dated END, long before today's wall clock: "no export for N days".
    [late] = [r for r in records if r["kind"] == "export_freshness"]
    assert list(late["scopes"]) == ["demo"] and "no export for" in late["lines"][0]


def test_read_commands_print_the_documented_json_keys(run, capsys):
    _, workspace, _, _ = run
    for command, keys in (("funnel", {"pipeline", "stage", "stage_order", "reached", "step_conversion",
                                      "cumulative_conversion", "lost_here"}),
                          ("forecast", {"period", "pipeline", "currency", "target", "booked", "expected",
                                        "from_open_pipeline", "from_new_pipeline", "p10", "p50", "p90",
                                        "prob_hit_target", "method"}),
                          ("coverage", {"period", "pipeline", "target", "booked", "open_pipeline", "coverage",
                                        "required_coverage", "status"})):
        assert main([command, "--workspace", str(workspace.home), "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows and keys <= set(rows[0]), command


def test_reading_an_empty_workspace_is_one_clear_error(tmp_path, capsys):
    assert main(["forecast", "--workspace", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no warehouse" in err[0] and "voronka demo" in err[0]


def test_every_open_deal_is_scored_by_the_promoted_models(run):
    company, workspace, result, con = run
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert checks[("win_model", "model_quality_gate")].passed
    assert checks[("time_to_close_model", "model_quality_gate")].passed
    scores = con.execute("select * from main.deal_scores").df()
    open_keys = set("demo:" + company.deals.loc[company.deals.outcome == "open", "native_id"])
    assert set(scores.deal_key) == open_keys
    assert scores.p_win.between(0, 1).all() and scores.p_win_baseline.between(0, 1).all()
    assert (scores.p_close_this_period + scores.p_close_next_period <= 1 + 1e-9).all()
    assert (scores.top_drivers.str.len() > 0).all()
    # Stalled means longer in the stage than that stage's Kaplan–Meier p90.
    stalled = scores[scores.is_stalled]
    assert (stalled.days_in_stage > stalled.stage_p90_days).all()
    assert 0 < len(stalled) < len(scores)
    # The model ranks eventual winners higher than the stage baseline does (truth from the simulator).
    truth = company.truth.assign(deal_key="demo:" + company.truth.native_id)
    merged = scores.merge(truth[["deal_key", "p_win_true"]], on="deal_key")
    assert merged.p_win.corr(merged.p_win_true) > merged.p_win_baseline.corr(merged.p_win_true)


def test_evaluate_prints_the_model_figures_beside_the_baselines(run, capsys):
    _, workspace, _, _ = run
    assert main(["evaluate", "--workspace", str(workspace.home), "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    win, ttc = figures["win_model"], figures["time_to_close"]
    assert {"auc", "brier", "ece", "log_loss", "baseline_auc", "baseline_brier", "n_train", "n_test"} <= set(win)
    assert {"c_index", "baseline_c_index", "ibs", "baseline_ibs", "n_train", "n_test"} <= set(ttc)
    assert win["auc"] >= win["baseline_auc"] and ttc["c_index"] >= ttc["baseline_c_index"]
    assert main(["deals", "--open", "--workspace", str(workspace.home), "--format", "json", "--limit", "5"]) == 0
    deals = json.loads(capsys.readouterr().out)
    assert len(deals) == 5 and {"p_win", "expected_close_date", "is_stalled", "top_drivers"} <= set(deals[0])


def test_model_forecast_adds_up_and_the_baseline_stays_available(run, capsys):
    _, workspace, result, con = run
    f = con.execute("select * from main.revenue_forecast").df()
    assert set(f.method) == {"model", "weighted_pipeline"}
    model = f[f.method == "model"]
    assert np.allclose(model.expected, model.booked + model.from_open_pipeline + model.from_new_pipeline)
    assert (model.from_new_pipeline > 0).all() and (model.p10 <= model.p50).all() and (model.p50 <= model.p90).all()
    # Both methods read the same bookings; each pipeline's rows add up to 'all' in expectation.
    for method, rows in f.groupby("method"):
        q = rows[rows.period == "2026-Q2"].set_index("pipeline")
        assert q.loc["all", "expected"] == pytest.approx(q.drop(index="all").expected.sum(), rel=1e-9), method
    targeted = model[model.target.notna()]
    assert len(targeted) and targeted.prob_hit_target.between(0, 1).all()
    assert main(["forecast", "--workspace", str(workspace.home), "--format", "json"]) == 0
    assert {r["method"] for r in json.loads(capsys.readouterr().out)} == {"model"}
    assert main(["forecast", "--workspace", str(workspace.home), "--format", "json", "--method", "all"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(f)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {"prob_hit_target_above_floor", "new_pipeline_meets_target_need", "stalled_share_within_limit",
            "exports_are_fresh", "model_beats_baselines"} <= set(checks)
    # The demo's exports are dated END, long before today's wall clock: stale, but not on a replay.
    assert not checks["exports_are_fresh"].passed


def test_backtest_command_prints_origins_and_metrics(run, capsys):
    _, workspace, _, con = run
    results = con.execute("select * from main.backtest_results").df()
    assert set(results.method) == {"model", "weighted_pipeline", "stage_win_rate", "seasonal_naive"}
    assert results.origin.nunique() == 2
    assert main(["backtest", "--workspace", str(workspace.home), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["origins"]) == len(results)
    assert {"method", "horizon", "wape", "bias", "interval_coverage", "n_origins"} <= set(out["metrics"][0])
    model = [m for m in out["metrics"] if m["method"] == "model" and m["horizon"] == "month+0"][0]
    assert model["n_origins"] == 2 and 0 <= model["interval_coverage"] <= 1


def test_a_degraded_win_model_is_blocked_by_the_gate_and_the_promoted_one_keeps_scoring(run, tmp_path,
                                                                                        monkeypatch):
    """The gate through Dagster: a retraining whose win model learns from shuffled labels is
    stored for the record, the blocking check fails and says why, and the deal scores keep
    coming from the version promoted before."""
    from ml.registry import ModelStore
    from ml.win_model import WinModel

    _, workspace, _, _ = run
    home = tmp_path / "ws"
    shutil.copytree(workspace.home, home, ignore=shutil.ignore_patterns("dagster_home", "*.wal"))
    store = ModelStore(Workspace(home).models_dir())
    promoted = store.current_version("win_model")
    assert promoted is not None

    real_fit = WinModel.fit

    def fit_on_shuffled_labels(self, X, y, sample_time=None, groups=None):
        shuffled = np.random.default_rng(0).permutation(np.asarray(y))
        return real_fit(self, X, shuffled, sample_time, groups)

    monkeypatch.setattr(WinModel, "fit", fit_on_shuffled_labels)
    defs = build_definitions(str(home))
    instance = dg.DagsterInstance.ephemeral()
    retrain = defs.resolve_job_def("weekly_retrain").execute_in_process(
        instance=instance, raise_on_error=False,
        asset_selection=[dg.AssetKey("win_model"), dg.AssetKey("time_to_close_model")])
    gate = {e.asset_key.to_user_string(): e for e in retrain.get_asset_check_evaluations()}
    assert not gate["win_model"].passed and gate["win_model"].blocking
    reason = gate["win_model"].metadata["reason"].value
    assert "auc" in reason and "worse" in reason, reason
    assert gate["win_model"].metadata["version_in_use"].value == promoted
    assert len(store.versions("win_model")) == 2 and store.current_version("win_model") == promoted

    scores = defs.resolve_job_def("daily_refresh").execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("deal_scores")])
    materialized = scores.asset_materializations_for_node("deal_scores")[0]
    assert materialized.metadata["win_model_version"].value == promoted


def test_a_day_with_nothing_new_skips_dbt_and_a_new_export_or_as_of_rebuilds(run, tmp_path):
    from orchestration import runner

    _, workspace, _, _ = run
    copy = Workspace(tmp_path / "ws")
    shutil.copytree(workspace.home, copy.home)
    # The graph built the marts from these exports as of their newest data: nothing to do.
    assert "nothing new" in runner.current_marts_note(copy, None)
    # Another as_of (time travel) or reporting currency: rebuild.
    assert runner.current_marts_note(copy, "2026-04-30") is None
    copy.config_path.write_text(copy.config_path.read_text(encoding="utf-8") + "reporting_currency: EUR\n",
                                encoding="utf-8")
    assert runner.current_marts_note(copy, None) is None
    shutil.copy(workspace.config_path, copy.config_path)
    # A new day of exports loaded: rebuild; once built, current again.
    write_canonical(simulate_company(n_deals=2000, seed=11, end_date=date(2026, 5, 21)),
                    copy.inbox, tmp_path / "truth")  # the same files, one day newer
    defs = build_definitions(str(copy.home))
    instance = dg.DagsterInstance.ephemeral()
    runner.run_stage(defs, instance, "ingest", "ingest")
    assert runner.current_marts_note(copy, None) is None
    runner.run_stage(defs, instance, "transform", "dbt build")
    assert "nothing new" in runner.current_marts_note(copy, None)
