"""Short summaries of report_data for the Dagster UI and the CLI (plain values, no Dagster)."""

from __future__ import annotations

from voronka.report.render import count, money, pct, ratio


def headline_summary(data: dict) -> dict:
    """The headline numbers as flat, JSON-friendly values (None where not available)."""
    h = data["headline"]
    coverage = {c["period"]: c for c in h.get("coverage", [])}
    this_q, next_q = coverage.get(h["period"], {}), coverage.get(h["next_period"], {})
    attention = data["attention"]
    return {
        "as_of": str(data["as_of"]),
        "currency": data["currency"],
        "quarter": h["period"],
        "forecast_method": h.get("method"),
        "p50": h.get("p50"),
        "p10": h.get("p10"),
        "p90": h.get("p90"),
        "target": h.get("target"),
        "booked": h.get("booked"),
        "prob_hit_target": h.get("prob_hit_target"),
        "coverage_this_quarter": this_q.get("coverage"),
        "coverage_this_quarter_status": this_q.get("status"),
        "next_quarter": h["next_period"],
        "coverage_next_quarter": next_q.get("coverage"),
        "coverage_next_quarter_status": next_q.get("status"),
        "stalled_deals": attention.get("stalled_total"),
        "deals_at_risk": attention.get("at_risk_total"),
        "sections_not_available": ", ".join(data.get("missing", [])) or "none",
    }


def headline_lines(data: dict) -> list[str]:
    """Two or three lines a person reads in a terminal."""
    s = headline_summary(data)
    cur = s["currency"]
    if s["p50"] is None:
        return [f"{s['quarter']}: no forecast yet ({data['headline'].get('note')})"]
    lines = [f"{s['quarter']} forecast P50 {money(s['p50'], cur)} (P10–P90 {money(s['p10'])} – {money(s['p90'])}), "
             f"target {money(s['target'], cur)}, booked {money(s['booked'], cur)}, "
             f"P(hit target) {pct(s['prob_hit_target'])}"]
    lines.append(f"coverage {s['quarter']} {ratio(s['coverage_this_quarter'])} ({s['coverage_this_quarter_status']}), "
                 f"{s['next_quarter']} {ratio(s['coverage_next_quarter'])} ({s['coverage_next_quarter_status']}); "
                 f"{count(s['stalled_deals'])} stalled, {count(s['deals_at_risk'])} at risk")
    return lines


def funnel_markdown(data: dict) -> str:
    """The funnel per pipeline as one Markdown table (for the Dagster UI)."""
    funnel = data["funnel"]
    if not funnel.get("available"):
        return f"_not available yet: {funnel.get('note')}_"
    rows = ["| pipeline | stage | reached | step conversion | median days | p90 days | lost here | main reason |",
            "|---|---|---:|---:|---:|---:|---:|---|"]

    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    for f in funnel["pipelines"]:
        for s in f["stages"]:
            rows.append("| " + " | ".join(cell(v) for v in (
                f["pipeline"], s["stage"], count(s["reached"]), pct(s["step_conversion"]),
                "–" if s.get("median_days") is None else f"{s['median_days']:.1f}",
                "–" if s.get("p90_days") is None else f"{s['p90_days']:.1f}",
                count(s["lost_here"]), s.get("top_reason") or "")) + " |")
    return "\n".join(rows)
