"""Reporting periods: months ('2026-01') and quarters ('2026-Q1')."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Period:
    grain: str  # month | quarter
    label: str
    start: date
    end: date  # inclusive

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


def _month_end(year: int, month: int) -> date:
    first_next = date(year + month // 12, month % 12 + 1, 1)
    return first_next - timedelta(days=1)


def month_of(day: date, offset: int = 0) -> Period:
    index = day.year * 12 + day.month - 1 + offset
    year, month = divmod(index, 12)
    month += 1
    return Period("month", f"{year:04d}-{month:02d}", date(year, month, 1), _month_end(year, month))


def quarter_of(day: date, offset: int = 0) -> Period:
    index = day.year * 4 + (day.month - 1) // 3 + offset
    year, q = divmod(index, 4)
    first_month = q * 3 + 1
    return Period("quarter", f"{year:04d}-Q{q + 1}", date(year, first_month, 1),
                  _month_end(year, first_month + 2))


def current_and_next(as_of: date) -> list[Period]:
    """The periods a forecast and the coverage checks look at: this and next month and quarter."""
    return [month_of(as_of), month_of(as_of, 1), quarter_of(as_of), quarter_of(as_of, 1)]


def parse_period(label: str) -> Period:
    """'2026-01' or '2026-Q1' -> Period; ValueError on anything else."""
    label = label.strip()
    year, _, rest = label.partition("-")
    if not year.isdigit() or not rest:
        raise ValueError(f"not a period: {label!r} (expected YYYY-MM or YYYY-Qn)")
    if rest.upper().startswith("Q") and rest[1:].isdigit() and 1 <= int(rest[1:]) <= 4:
        return quarter_of(date(int(year), (int(rest[1:]) - 1) * 3 + 1, 1))
    if rest.isdigit() and 1 <= int(rest) <= 12:
        return month_of(date(int(year), int(rest), 1))
    raise ValueError(f"not a period: {label!r} (expected YYYY-MM or YYYY-Qn)")
