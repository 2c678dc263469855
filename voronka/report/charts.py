"""Geometry of the report's inline SVG charts: numbers in, coordinates out.

No text from the data is placed here: the template writes the labels, so Jinja's autoescaping
covers every string that came from a CRM. Values are already computed in report_data; this only
maps them onto pixels and picks round axis ticks.
"""

from __future__ import annotations

import math


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top` (about `count` steps)."""
    if not top or top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def _y(value: float, top: float, plot_top: float, plot_bottom: float) -> float:
    return plot_bottom - (value / top) * (plot_bottom - plot_top) if top else plot_bottom


def fan_chart(points: list[dict], width: int = 920, height: int = 300) -> dict | None:
    """Monthly actuals as bars, the target as a step line, the forecast as a P10–P90 band with the
    P50 line. points: period, actual, target, p10, p50, p90, is_current, is_future."""
    if not points:
        return None
    left, right, top_pad, bottom_pad = 64, 16, 16, 34
    values = [v for p in points for v in (p.get("actual"), p.get("target"), p.get("p90"), p.get("p50"))
              if v is not None]
    ticks = nice_ticks(max(values) if values else 1.0)
    y_top = ticks[-1] or 1.0
    plot_w = width - left - right
    slot = plot_w / len(points)
    bar_w = slot * 0.56
    plot_top, plot_bottom = top_pad, height - bottom_pad

    def y(v):
        return round(_y(v, y_top, plot_top, plot_bottom), 1)

    bars, targets, band_upper, band_lower, median, boxes, labels = [], [], [], [], [], [], []
    box_w = min(slot * 0.7, 56)
    for i, p in enumerate(points):
        cx = left + slot * (i + 0.5)
        labels.append({"x": round(cx, 1), "y": height - 12, "period": p["period"],
                       "is_current": p.get("is_current", False)})
        if p.get("actual") is not None:
            h = max(plot_bottom - y(p["actual"]), 0)
            bars.append({"x": round(cx - bar_w / 2, 1), "y": round(plot_bottom - h, 1), "w": round(bar_w, 1),
                         "h": round(h, 1), "partial": p.get("is_current", False), "period": p["period"]})
        if p.get("target") is not None:
            targets.append({"x1": round(cx - slot / 2 + 2, 1), "x2": round(cx + slot / 2 - 2, 1),
                            "y": y(p["target"])})
        if p.get("p50") is not None:
            y10, y50, y90 = y(p["p10"]), y(p["p50"]), y(p["p90"])
            band_upper.append((round(cx, 1), y90))
            band_lower.append((round(cx, 1), y10))
            median.append((round(cx, 1), y50))
            boxes.append({"x": round(cx - box_w / 2, 1), "w": round(box_w, 1), "cx": round(cx, 1),
                          "y90": y90, "h": round(max(y10 - y90, 1.0), 1), "y10": y10, "y50": y50,
                          "p50": p["p50"]})
    # A band and a line read well across several months; one or two months are boxes.
    many = len(median) >= 3
    band = " ".join(f"{x},{yy}" for x, yy in band_upper + band_lower[::-1]) if many else None
    return {
        "width": width, "height": height, "left": left, "right": width - right,
        "plot_top": plot_top, "plot_bottom": plot_bottom,
        "ticks": [{"value": t, "y": y(t)} for t in ticks],
        "bars": bars, "targets": targets, "band": band,
        "median": " ".join(f"{x},{yy}" for x, yy in median) if many else None,
        "boxes": [] if many else boxes, "points": boxes, "labels": labels,
    }


def waterfall_chart(start: float, steps: list[dict], end: float, width: int = 560,
                    height: int = 270) -> dict:
    """Bars from the open pipeline a week ago through each change to the pipeline now.
    steps: change, amount (signed), deals."""
    left, right, top_pad, bottom_pad = 64, 12, 26, 30
    columns = [{"kind": "total", "change": "start", "amount": start, "deals": None}]
    columns += [{"kind": "step", **s} for s in steps]
    columns.append({"kind": "total", "change": "end", "amount": end, "deals": None})
    running, peaks = 0.0, []
    for c in columns:
        if c["kind"] == "total":
            c["lo"], c["hi"] = 0.0, c["amount"]
            running = c["amount"]
        else:
            after = running + (c["amount"] or 0.0)
            c["lo"], c["hi"] = min(running, after), max(running, after)
            running = after
        peaks.append(c["hi"])
    ticks = nice_ticks(max(peaks + [1.0]))
    y_top = ticks[-1] or 1.0
    plot_top, plot_bottom = top_pad, height - bottom_pad
    slot = (width - left - right) / len(columns)
    bar_w = slot * 0.6

    def y(v):
        return round(_y(v, y_top, plot_top, plot_bottom), 1)

    bars = []
    for i, c in enumerate(columns):
        x = left + slot * i + (slot - bar_w) / 2
        y_hi, y_lo = y(c["hi"]), y(c["lo"])
        bars.append({**c, "x": round(x, 1), "w": round(bar_w, 1), "y": y_hi, "h": round(max(y_lo - y_hi, 1.0), 1),
                     "cx": round(x + bar_w / 2, 1),
                     "connector_y": y(c["hi"] if c["kind"] == "total" or (c["amount"] or 0) >= 0 else c["lo"]),
                     "next_x": round(x + bar_w + (slot - bar_w), 1)})
    return {"width": width, "height": height, "left": left, "right": width - right,
            "plot_top": plot_top, "plot_bottom": plot_bottom, "label_y": height - 10,
            "ticks": [{"value": t, "y": y(t)} for t in ticks], "bars": bars}


def reliability_chart(bins: list[dict], size: int = 150) -> dict | None:
    """Predicted against observed win rate per probability bin (the calibration curve)."""
    if not bins:
        return None
    pad = 22
    span = size - 2 * pad

    def xy(p, o):
        return round(pad + p * span, 1), round(size - pad - o * span, 1)

    points = [xy(b["mean_predicted"], b["observed_rate"]) for b in bins
              if b.get("mean_predicted") is not None and b.get("observed_rate") is not None]
    return {"size": size, "pad": pad, "end": size - pad,
            "line": " ".join(f"{x},{y}" for x, y in points),
            "points": [{"x": x, "y": y} for x, y in points]}
