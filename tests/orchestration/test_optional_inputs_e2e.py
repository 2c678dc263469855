"""`voronka run` on exports that lack what a real export lacks: no targets at all, and one
currency with no FX rate. The run exits 0, the forecast and funnel are as usual, coverage says
"no target" and how to add one, and the missing rate is a failing check and a line naming the
currency, the deals and their amount."""

from __future__ import annotations

import io
import json
from datetime import date

import pandas as pd
import pytest

from voronka.cli import main
from voronka.config import Workspace
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    home = tmp_path_factory.mktemp("ws")
    workspace = Workspace(home).create()
    workspace.config_path.write_text("models_dir: models\nbacktest_max_origins: 2\nbacktest_draws: 200\n"
                                     "forecast_draws: 500\n", encoding="utf-8")
    company = simulate_company(n_deals=500, seed=7, end_date=date(2026, 5, 20))
    write_canonical(company, workspace.inbox, home / "truth")
    (workspace.inbox / "targets.csv").unlink()
    deals_file = workspace.inbox / "deals.csv"
    deals = pd.read_csv(deals_file, dtype=str, keep_default_na=False)
    moved = deals["currency"] == "EUR"  # EUR deals become tenge, which has no rate
    deals.loc[moved, "currency"] = "KZT"
    deals.to_csv(deals_file, index=False)
    amounts = pd.to_numeric(deals.loc[moved, "amount"], errors="coerce")
    expected = {"deals": int((amounts.fillna(0) != 0).sum()), "amount": float(amounts.sum())}
    with pytest.MonkeyPatch.context() as patch:
        out, err = io.StringIO(), io.StringIO()
        patch.setattr("sys.stdout", out)
        patch.setattr("sys.stderr", err)
        code = main(["run", "--workspace", str(home), "--format", "json"])
    return workspace, expected, code, out.getvalue(), err.getvalue()


def test_a_run_without_targets_and_with_a_currency_without_rate_exits_0(run):
    _, expected, code, out, err = run
    assert expected["deals"] > 0
    assert code == 0, err
    summary = json.loads(out)
    assert summary["coverage"] == [] and summary["funnel"] and summary["forecast"]
    # The missing rate: one line naming the currency, the deals and their amount.
    [line] = [x for x in err.splitlines() if x.startswith("Missing FX:")]
    assert line.startswith(f"Missing FX: {expected['deals']} deal(s) in KZT worth {expected['amount']:,.0f} KZT")
    checks = [x for x in err.splitlines() if x.startswith("Checks that did not pass")]
    assert checks and "revenue_forecast:amounts_convert_to_reporting_currency" in checks[0]
    # No target is not a failure of the coverage or P(hit target) checks.
    assert "coverage_meets_requirement" not in checks[0] and "prob_hit_target_above_floor" not in checks[0]


def test_coverage_says_no_target_and_how_to_add_one(run, capsys):
    workspace = run[0]
    assert main(["coverage", "--workspace", str(workspace.home)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("Pipeline coverage: no target loaded") and "docs/crm-exports.md#targets" in out
    assert main(["coverage", "--workspace", str(workspace.home), "--fail-on-check"]) == 0
