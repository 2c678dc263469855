"""The value parsers every reader stands on, vectorised.

`parse_timestamps`, `parse_dates`, `parse_numbers`, `parse_bools` and `epoch_seconds` take a
Series of stripped strings ('' = empty) and return the parsed Series and a mask of the non-empty
values that did not parse. Timestamps come out as naive UTC; `check_timezone` refuses a zone name
that is not an IANA one.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from voronka.errors import ExportFormatError

_TZ_SUFFIX = r"(?:Z|z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)"
_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?\s*" + _TZ_SUFFIX + "?$")
_ISO_AWARE = re.compile(r"\d(?:Z|z|\s*UTC|\s*GMT|[+-]\d{2}(?::?\d{2})?)$")
_DOTTED = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})(?:,?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_SLASHED = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:,?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?$")
_SERIAL = re.compile(r"^\d{4,5}(?:[.,]\d+)?$")
EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def _empty_ts(index) -> pd.Series:
    return pd.Series(pd.NaT, index=index, dtype="datetime64[ns]")


def parse_timestamps(text: pd.Series, tz: str = "UTC", *, fmt: str | None = None,
                     dayfirst: bool | None = None) -> tuple[pd.Series, pd.Series]:
    """Naive-UTC timestamps from text. Values with an offset (`Z`, `+03:00`) keep their instant;
    values without one are local times in `tz`. Understands ISO-8601, `DD.MM.YYYY[ HH:MM[:SS]]`,
    `MM/DD/YYYY[ HH:MM[:SS][ AM]]` (day first when a value shows it, or `dayfirst`), and Excel
    serial day numbers; or exactly `fmt` (strftime codes) when given."""
    text = text.fillna("").astype(str)
    out = _empty_ts(text.index)
    filled = text != ""
    if not filled.any():
        return out, filled
    if fmt:
        parsed = pd.to_datetime(text.where(filled), format=fmt, errors="coerce")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            out.loc[filled] = parsed[filled]
        else:
            out.loc[filled] = _localize(parsed[filled], tz)
        return out, filled & out.isna()
    rest = _fast_formats(text, filled, out, tz)
    if not rest.any():
        return out, filled & out.isna()
    text = text.where(rest, "")
    filled = rest
    iso = filled & text.str.match(_ISO)
    if iso.any():
        aware = iso & text.str.contains(_ISO_AWARE)
        if aware.any():
            vals = text[aware].str.replace(r"\s*(UTC|GMT)$", "+00:00", regex=True).str.replace(",", ".")
            parsed = pd.to_datetime(vals, format="ISO8601", utc=True, errors="coerce")
            out.loc[aware] = parsed.dt.tz_convert(None)
        naive = iso & ~aware
        if naive.any():
            parsed = pd.to_datetime(text[naive].str.replace(",", "."), format="ISO8601", errors="coerce")
            out.loc[naive] = _localize(parsed, tz)
    dotted = filled & ~iso & text.str.match(_DOTTED)
    if dotted.any():
        parts = text[dotted].str.extract(_DOTTED)
        out.loc[dotted] = _localize(_from_parts(parts[2], parts[1], parts[0], parts[3], parts[4], parts[5]), tz)
    slashed = filled & ~iso & ~dotted & text.str.match(_SLASHED)
    if slashed.any():
        parts = text[slashed].str.extract(_SLASHED)
        first, second = parts[0].astype(int), parts[1].astype(int)
        if dayfirst is None:
            dayfirst = bool((first > 12).any() and not (second > 12).any())
        day, month = (parts[0], parts[1]) if dayfirst else (parts[1], parts[0])
        hour = parts[3].fillna("0").astype(int)
        ampm = parts[6].fillna("").str.upper()
        hour = np.where(ampm == "PM", hour % 12 + 12, np.where(ampm == "AM", hour % 12, hour))
        out.loc[slashed] = _localize(
            _from_parts(parts[2], month, day, pd.Series(hour, index=parts.index).astype(str), parts[4], parts[5]), tz)
    serial = filled & ~iso & ~dotted & ~slashed & text.str.match(_SERIAL)
    if serial.any():
        days = pd.to_numeric(text[serial].str.replace(",", "."), errors="coerce")
        days = days.where((days >= 10000) & (days < 100000))
        out.loc[serial] = _localize(EXCEL_EPOCH + pd.to_timedelta(days, unit="D").round("s"), tz)
    return out, (out.isna() & filled)


# Exact formats tried first on a whole column (C speed); what none of them parses goes through
# the general (slower, per-value) classification below.
_NAIVE_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S",
                  "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d",
                  "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f")
_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z")


def _fast_formats(text: pd.Series, filled: pd.Series, out: pd.Series, tz: str) -> pd.Series:
    """Parse with the exact formats a sample of the column matches; returns what is left."""
    rest = filled.copy()
    sample = text[filled].head(200)
    if sample.empty:
        return rest
    for fmt in _NAIVE_FORMATS + _AWARE_FORMATS:
        aware = fmt in _AWARE_FORMATS
        hits = pd.to_datetime(sample, format=fmt, errors="coerce", utc=aware).notna()
        if not hits.any():
            continue
        sub = text[rest]
        parsed = pd.to_datetime(sub, format=fmt, errors="coerce", utc=aware)
        parsed = parsed.dt.tz_convert(None) if aware else _localize(parsed, tz)
        ok = parsed.notna()
        if ok.any():
            idx = ok.index[ok.to_numpy()]
            out.loc[idx] = parsed[ok]
            rest.loc[idx] = False
            sample = sample[rest.reindex(sample.index).to_numpy()]
        if not rest.any() or sample.empty:
            break
    return rest


def _from_parts(year, month, day, hour, minute, second) -> pd.Series:
    frame = pd.DataFrame({
        "year": pd.to_numeric(year, errors="coerce"),
        "month": pd.to_numeric(month, errors="coerce"),
        "day": pd.to_numeric(day, errors="coerce"),
        "hour": pd.to_numeric(hour, errors="coerce").fillna(0),
        "minute": pd.to_numeric(minute, errors="coerce").fillna(0),
        "second": pd.to_numeric(second, errors="coerce").fillna(0),
    })
    bad = ~frame["month"].between(1, 12) | ~frame["day"].between(1, 31) | \
        ~frame["hour"].between(0, 23) | ~frame["minute"].between(0, 59) | ~frame["second"].between(0, 60)
    frame.loc[bad, "year"] = np.nan
    return pd.to_datetime(frame, errors="coerce")


def _localize(parsed: pd.Series, tz: str) -> pd.Series:
    """Local wall times in `tz` -> naive UTC. Ambiguous (DST fall-back) hours and times skipped
    by a DST jump (a clock not yet moved forward) are read as standard time."""
    parsed = pd.to_datetime(parsed, errors="coerce")
    if tz in (None, "", "UTC", "utc", "Etc/UTC"):
        return parsed
    try:
        local = parsed.dt.tz_localize(tz, ambiguous=np.zeros(len(parsed), dtype=bool),
                                      nonexistent=pd.Timedelta(hours=1))
    except Exception as err:  # unknown zone name: a configuration mistake, not a bug
        raise ExportFormatError(f"unknown time zone {tz!r} ({err})") from None
    return local.dt.tz_convert("UTC").dt.tz_localize(None)


def check_timezone(tz: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExportFormatError(f"unknown time zone {tz!r} (use an IANA name such as "
                                "'Europe/Moscow')") from None
    return tz


def parse_dates(text: pd.Series, *, fmt: str | None = None, dayfirst: bool | None = None
                ) -> tuple[pd.Series, pd.Series]:
    """Calendar dates (datetime64 at midnight) as written: a time or offset after the date is
    ignored, never converted (a close date is a date in the CRM's own calendar)."""
    text = text.fillna("").astype(str)
    if fmt:
        parsed, bad = parse_timestamps(text, "UTC", fmt=fmt)
        return parsed.dt.normalize(), bad
    filled = text != ""
    out = _empty_ts(text.index)
    rest = filled.copy()
    for date_fmt in ("%Y-%m-%d", "%d.%m.%Y"):
        if not rest.any():
            break
        parsed = pd.to_datetime(text[rest], format=date_fmt, errors="coerce")
        ok = parsed.notna()
        if ok.any():
            idx = ok.index[ok.to_numpy()]
            out.loc[idx] = parsed[ok]
            rest.loc[idx] = False
    if not rest.any():
        return out, filled & out.isna()
    text = text.where(rest, "")
    iso_date = text.str.extract(r"^(\d{4}-\d{1,2}-\d{1,2})(?:[T ].*)?$")[0]
    stripped = text.where(iso_date.isna(), iso_date)
    dotted = text.str.extract(r"^(\d{1,2}\.\d{1,2}\.\d{4})(?:,?\s.*)?$")[0]
    stripped = stripped.where(dotted.isna(), dotted)
    parsed, bad = parse_timestamps(stripped.fillna(""), "UTC", dayfirst=dayfirst)
    out.loc[rest] = parsed[rest].dt.normalize()
    return out, filled & out.isna()


def epoch_seconds(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Unix seconds (number or numeric text) -> naive UTC."""
    text = values.fillna("").astype(str).str.strip()
    filled = text != ""
    num = pd.to_numeric(text.where(filled), errors="coerce")
    num = num.where((num > 0) & (num < 1e10))
    out = pd.to_datetime(num, unit="s", errors="coerce").dt.round("s")
    return out, filled & out.isna()


_NUM_OK = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def parse_numbers(text: pd.Series, decimal: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Numbers written by people and by Excel in any locale: `1 500 000,50` (spaces or NBSP as
    thousands), `1.500,50`, `1,500.50`, `1500.5`, `1,5`, `1.5E+06`, currency signs around them.
    A lone separator followed by exactly three digits (`1,500`) is a thousands separator unless
    `decimal` says it is the decimal mark."""
    text = text.fillna("").astype(str)
    filled = text != ""
    fast = pd.to_numeric(text.where(filled), errors="coerce").astype(float)
    sure = fast.notna() & np.isfinite(fast)
    if decimal == ",":  # "1.500" parsed as 1.5 may be 1500: leave fractions to the slow path
        sure &= fast == np.floor(fast)
    rest = filled & ~sure
    if not rest.any():
        return fast.where(sure), filled & ~sure
    slow, bad = _parse_numbers_slow(text[rest], decimal)
    out = fast.where(sure)
    out.loc[rest] = slow
    return out, filled & out.isna()


def _parse_numbers_slow(text: pd.Series, decimal: str | None) -> tuple[pd.Series, pd.Series]:
    filled = text != ""
    s = text.str.replace(r"[\s\u00a0\u202f\u2009'’₽$€£¥]", "", regex=True)
    s = s.str.replace(r"(?i)(руб\.?|р\.)$", "", regex=True)
    has_comma = s.str.contains(",", regex=False)
    has_dot = s.str.contains(".", regex=False)
    both = has_comma & has_dot
    if both.any():
        last_comma = s.str.rfind(",")
        last_dot = s.str.rfind(".")
        comma_decimal = both & (last_comma > last_dot)
        s = s.mask(comma_decimal, s.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
        s = s.mask(both & ~comma_decimal, s.str.replace(",", "", regex=False))
    only_comma = has_comma & ~has_dot
    if only_comma.any():
        many = s.str.count(",") > 1
        thousands_like = s.str.match(r"^[+-]?\d{1,3}(,\d{3})+$")
        as_thousands = only_comma & (many | (thousands_like & (decimal != ",")))
        s = s.mask(as_thousands, s.str.replace(",", "", regex=False))
        s = s.mask(only_comma & ~as_thousands, s.str.replace(",", ".", regex=False))
    only_dot = has_dot & ~has_comma
    if only_dot.any():
        many = s.str.count(r"\.") > 1
        thousands_like = s.str.match(r"^[+-]?\d{1,3}(\.\d{3})+$")
        as_thousands = only_dot & (many | (thousands_like & (decimal == ",")))
        s = s.mask(as_thousands, s.str.replace(".", "", regex=False))
    ok = s.str.match(_NUM_OK)
    out = pd.to_numeric(s.where(filled & ok), errors="coerce")
    return out.astype(float), filled & out.isna()


_TRUE = {"true", "1", "yes", "y", "t", "да", "д", "y.", "истина"}
_FALSE = {"false", "0", "no", "n", "f", "нет", "н", "ложь"}


def parse_bools(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """true/false, 1/0, yes/no, Y/N, да/нет -> nullable boolean."""
    low = text.fillna("").astype(str).str.strip().str.lower()
    out = pd.Series(pd.NA, index=text.index, dtype="boolean")
    out[low.isin(_TRUE)] = True
    out[low.isin(_FALSE)] = False
    return out, (low != "") & out.isna()


def naive_utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)
