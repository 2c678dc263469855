"""Render report_data's dict as one self-contained HTML file (no Dagster, no JavaScript).

The template (report.html beside this file) is rendered with autoescaping on, so every string
from a CRM (deal titles, owners, pipelines, stages, lost reasons) is escaped wherever it lands,
in HTML text, attributes or the inline SVG. CSS is inline; there are no external requests, so the
file opens offline and prints on A4 (landscape-free, sections never split across pages).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path

import jinja2

from voronka.report import charts

TEMPLATE = "report.html"
LATEST_NAME = "voronka_report.html"
MINUS = "\u2212"


# ---------------------------------------------------------------- number formats

def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def money(v, currency: str | None = None, signed: bool = False) -> str:
    """Compact money: 1.74M, 456K, 12.3K, 850 (with the currency code when given)."""
    if not _finite(v):
        return "–"
    a = abs(v)
    if a >= 1e9:
        text = f"{a / 1e9:.2f}B"
    elif a >= 1e6:
        text = f"{a / 1e6:.2f}M"
    elif a >= 1e5:
        text = f"{a / 1e3:.0f}K"
    elif a >= 1e3:
        text = f"{a / 1e3:.1f}K"
    else:
        text = f"{a:,.0f}"
    sign = MINUS if v < 0 and text != "0" else ("+" if signed and v > 0 and text != "0" else "")
    return f"{sign}{text}" + (f" {currency}" if currency else "")


def money_full(v, currency: str | None = None) -> str:
    if not _finite(v):
        return "–"
    text = f"{abs(v):,.0f}"
    return (MINUS if v < 0 and round(abs(v)) else "") + text + (f" {currency}" if currency else "")


def pct(v, digits: int | None = None) -> str:
    """A share as a percentage; small values keep a decimal (0.6%, not 1%)."""
    if not _finite(v):
        return "–"
    if digits is None:
        digits = 1 if 0 < abs(v) < 0.095 else 0
    return f"{v * 100:.{digits}f}%".replace("-", MINUS)


def ratio(v) -> str:
    return f"{v:.2f}×" if _finite(v) else "–"


def count(v) -> str:
    return f"{int(v):,}" if _finite(v) else "–"


def days(v) -> str:
    if not _finite(v):
        return "–"
    return f"{v:.1f} d" if v < 10 else f"{v:.0f} d"


def day(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, datetime):
        v = v.date()
    if isinstance(v, date):
        return f"{v.day} {v:%b %Y}"
    return str(v)


def when(v) -> str:
    if isinstance(v, datetime):
        return f"{v.day} {v:%b %Y, %H:%M} UTC"
    return day(v)


def month_label(period: str) -> str:
    """'2026-11' -> 'Nov ’26' (other labels unchanged)."""
    try:
        d = datetime.strptime(period, "%Y-%m")
    except (TypeError, ValueError):
        return str(period)
    return f"{d:%b} \u2019{d:%y}"


def raw(v) -> str:
    """The exact value behind a shown number (data-v attributes; tests read them)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


STATUS_TEXT = {"ok": "on track", "warn": "below required", "error": "critical", None: "no target"}


# ---------------------------------------------------------------- rendering

def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
        autoescape=True,  # every template, whatever its name: CRM text is untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(money=money, money_full=money_full, pct=pct, ratio=ratio, count=count,
                       days=days, day=day, when=when, raw=raw,
                       month_label=month_label)
    env.globals.update(status_text=STATUS_TEXT)
    return env


def chart_data(data: dict) -> dict:
    """The SVG geometry for the charts in `data` (None where there is nothing to draw)."""
    fan = data["fan"]
    changes = data["changes"]
    models = data["quality"]["models"]
    reliability = (models.get("win_model") or {}).get("reliability") if models.get("available") else None
    return {
        "fan": charts.fan_chart(fan["points"]) if fan.get("available") else None,
        "waterfall": charts.waterfall_chart(changes["start"], changes["steps"], changes["end"])
        if changes.get("available") and changes.get("start") is not None else None,
        "reliability": charts.reliability_chart(reliability) if reliability else None,
    }


def render_report(data: dict, title: str = "Voronka — revenue and funnel report") -> str:
    """The HTML text of the report."""
    return environment().get_template(TEMPLATE).render(data=data, charts=chart_data(data), title=title)


def write_report(html: str, reports_dir: Path, as_of: datetime | date | None = None) -> tuple[Path, Path | None]:
    """Write reports/voronka_report.html and a dated copy voronka_report_<as-of date>.html."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    latest = reports_dir / LATEST_NAME
    _atomic_write(latest, html)
    dated = None
    if as_of is not None:
        stamp = (as_of.date() if isinstance(as_of, datetime) else as_of).isoformat()
        dated = reports_dir / f"voronka_report_{stamp}.html"
        _atomic_write(dated, html)
    return latest, dated


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
