"""The leadership report in a real browser: headless Chromium loads the file the daily run wrote,
without console errors or outside requests, draws its charts and shows the headline numbers.

Chromium is Debian's `chromium` package (scripts/install_chromium.sh installs it); it is driven
over the DevTools protocol with the standard library (voronka/report/browser.py). The
demo warehouse is the one tests/voronka/report/test_report.py builds (one per session).
"""

from __future__ import annotations

import json
import struct

import duckdb
import pytest
import test_report
from test_report import END, IMG, SCRIPT, copy_warehouse, money_value

from ml.periods import quarter_of
from voronka.report.browser import find_chromium, inspect_page
from voronka.report.data import report_data
from voronka.report.render import render_report

pytestmark = [pytest.mark.slow,  # a browser on the demo run's report
              pytest.mark.skipif(find_chromium() is None,
                                 reason="Chromium not installed: run scripts/install_chromium.sh")]

PROBE = """JSON.stringify({
  charset: document.characterSet,
  scripts: document.scripts.length,
  svgs: [...document.querySelectorAll('svg')].map(s => {
    const r = s.getBoundingClientRect();
    return {id: s.id, width: r.width, height: r.height,
            rects: [...s.querySelectorAll('rect')].filter(e => e.getBBox().height > 0).length,
            labels: s.querySelectorAll('text').length};
  }),
  numbers: Object.fromEntries([...document.querySelectorAll('[data-k]')].map(e => [e.dataset.k, e.textContent])),
  text: document.body.innerText,
  pwned: typeof window.pwned !== 'undefined',
})"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_report_loads_cleanly_draws_its_charts_and_shows_the_headline(tmp_path):
    demo = test_report.demo_workspace()
    report = demo.reports / "voronka_report.html"
    page = inspect_page(report, expression=PROBE, user_data_dir=tmp_path / "chromium")
    seen = json.loads(page.value)
    assert page.console_errors == []
    assert page.requests == [report.resolve().as_uri()]  # nothing fetched from anywhere else
    assert seen["charset"] == "UTF-8" and seen["scripts"] == 0
    svgs = {s["id"]: s for s in seen["svgs"]}
    assert {"fan-chart", "waterfall-chart"} <= set(svgs)
    for svg in seen["svgs"]:
        assert svg["width"] > 100 and svg["height"] > 100, svg
    with duckdb.connect(str(demo.warehouse), read_only=True) as con:
        months = con.execute("select count(*) from main.mart_bookings where period_grain = 'month' and "
                             "pipeline = 'all' and period > ?", [f"{END.year - 1}-{END.month:02d}"]).fetchone()[0]
        forecast = con.execute("select p50, p10, p90 from main.revenue_forecast where period = ? and pipeline = 'all' "
                               "order by method = 'model' desc limit 1", [quarter_of(END).label]).fetchone()
        stages = [r[0] for r in con.execute("select stage from main.mart_funnel_conversion").fetchall()]
    # One bar per month with bookings (12 months up to this one), drawn with a height.
    assert svgs["fan-chart"]["rects"] >= months - 2 >= 8
    assert svgs["waterfall-chart"]["rects"] >= 4
    for key, value in zip(("p50", "p10", "p90"), forecast):
        assert money_value(seen["numbers"][f"headline.{key}"]) == pytest.approx(value, rel=0.006)
    assert all(stage in seen["text"] for stage in stages)  # Cyrillic and Latin stage names
    assert "Not available yet." not in seen["text"].split("Pushed repeatedly")[0]
    shot = tmp_path / "report.png"
    shot.write_bytes(page.screenshot)
    width, height = png_size(shot.read_bytes())
    assert width == 1100 and height >= 2000 and height == pytest.approx(page.size[1], abs=2)


def test_planted_markup_in_crm_text_does_not_run_in_the_browser(tmp_path):
    demo = test_report.demo_workspace()
    path = copy_warehouse(demo, tmp_path)
    payload = "<script>window.pwned = 1</script>" + IMG
    with duckdb.connect(str(path)) as con:
        con.execute("update main.mart_pipeline_snapshot set title = ?", [payload])
        con.execute("update main.deal_scores set owner = ?, is_stalled = true", [SCRIPT])
        con.execute("update main.mart_funnel_conversion set stage = stage || ?", [IMG])
        data = report_data(con)
    report = tmp_path / "planted.html"
    report.write_text(render_report(data), encoding="utf-8")
    page = inspect_page(report, expression=PROBE, screenshot=False, user_data_dir=tmp_path / "chromium")
    seen = json.loads(page.value)
    assert page.console_errors == [] and seen["scripts"] == 0 and not seen["pwned"]
    assert page.requests == [report.resolve().as_uri()]  # the <img src=x> was never requested
    assert payload in seen["text"] and SCRIPT in seen["text"]  # shown as the text it is
