"""The per-row checks every CRM reader shares: the reader's `Context` and `Rows`, whose checks
reject a row with a reason.

A reader resolves the export's columns (`Rows.column`), parses them with the vectorised parsers
of `parsers` (each failure rejects the row with a reason naming the canonical field, the file's
column and the value), and hands the typed columns to `frames.deals_frame` /
`frames.events_frame`. Rows are rejected once, with the first reason found; `frames.finish`
builds the ParsedExport so that rows_read == len(primary frame) + len(rejected) always holds.
What else a reader uses: `attributes` (the `attributes` JSON of unused columns), `stage_order`
(a stage list inferred when the export has none) and `formats` (the format registry, detection
and companion files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from voronka.errors import ExportFormatError
from voronka.ingest.canonical import RejectedRow
from voronka.ingest.readers import parsers
from voronka.ingest.readers.attributes import attributes_json
from voronka.ingest.readers.rawtable import RawTable

FUTURE_SLACK = timedelta(days=1)  # clock skew and time zones: a day after the file was written


def norm(name: str) -> str:
    """Header comparison key: case-folded, whitespace collapsed, quotes unified."""
    name = re.sub(r"\s+", " ", str(name)).strip().casefold()
    return name.replace("“", '"').replace("”", '"').replace("ё", "е")


@dataclass
class Context:
    """Settings a reader gets from the caller (per source: time zone, default currency)."""

    path: Path
    timezone: str = "UTC"
    currency: str | None = None
    mapping: Path | None = None
    companions: list | None = None  # explicit companion files; None = look beside the file
    warnings: list = field(default_factory=list)

    @property
    def file(self) -> str:
        return self.path.name

    def written_at(self) -> datetime:
        """When the file was written (its mtime, naive UTC): no data in it can be later."""
        try:
            return datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc).replace(tzinfo=None)
        except OSError:
            return parsers.naive_utc_now()


class Rows:
    """The rows of a tabular export with their rejection reasons (first reason wins)."""

    def __init__(self, table: RawTable, ctx: Context):
        self.table, self.ctx = table, ctx
        self.raw = table.frame
        self.n = len(self.raw)
        self.reasons = pd.Series("", index=self.raw.index, dtype=object)
        self.used: set[str] = set()
        # (field, text, parsed, time zone) of every date/time column read: deals_frame finds the
        # text a deal's close and creation came from to compare them by day (day_flags).
        self.stamps: list[tuple[str, pd.Series, pd.Series, str]] = []
        self._by_norm: dict[str, str] = {}
        for col in self.raw.columns:
            self._by_norm.setdefault(norm(col), col)
        if table.encoding == "utf-8 (damaged)":
            for col in self.raw.columns:
                bad = self.raw[col].str.contains("\ufffd", regex=False)
                self.reject(bad, f"undecodable bytes in column {col!r} (the file is not valid UTF-8)")

    # -- columns ---------------------------------------------------------------------------
    def column(self, *aliases: str, required: bool = False, field: str | None = None,
               mark: bool = True) -> str | None:
        """The file's name of the first alias present (case and spacing ignored). Marked used
        (kept out of `attributes`) unless mark=False."""
        for alias in aliases:
            found = self._by_norm.get(norm(alias))
            if found is not None:
                if mark:
                    self.used.add(found)
                return found
        if required:
            raise ExportFormatError(
                f"missing required column {aliases[0]!r}"
                + (f" (for {field})" if field else "")
                + f"; the header has: {_preview(self.raw.columns)}",
                file=self.ctx.file, column=aliases[0])
        return None

    def columns_matching(self, pattern: str) -> list[str]:
        rx = re.compile(pattern, re.IGNORECASE)
        return [c for c in self.raw.columns if rx.search(c)]

    def text(self, col: str | None) -> pd.Series:
        """Stripped text, None where empty (or where the column is absent)."""
        if col is None:
            return pd.Series(None, index=self.raw.index, dtype=object)
        s = self.raw[col]
        return s.where(s != "", None)

    def text_or(self, col: str | None, default: str | None) -> pd.Series:
        """Text of the column, `default` where it is empty or absent."""
        values = self.text(col)
        return values.fillna(default) if default is not None else values

    # -- rejecting ---------------------------------------------------------------------------
    def reject(self, mask, message) -> None:
        """Reject the rows in mask not rejected yet. message: a text, a Series of texts, or a
        function of the rejected rows' index returning either (built only when needed)."""
        mask = pd.Series(mask, index=self.raw.index).fillna(False).astype(bool) & (self.reasons == "")
        if not mask.any():
            return
        idx = mask.index[mask.to_numpy()]
        if callable(message):
            message = message(idx)
        self.reasons.loc[idx] = message.reindex(idx) if isinstance(message, pd.Series) else message

    def _value_reason(self, what: str, field: str, col: str, values: pd.Series):
        def build(idx):
            shown = values.reindex(idx).fillna("").astype(str).str.slice(0, 80)
            return f"{what} {field} '" + shown + f"' (column {col!r})"
        return build

    def require(self, col: str | None, field: str) -> pd.Series:
        values = self.text(col)
        self.reject(values.isna(), f"missing {field} (column {col!r})" if col else f"missing {field}")
        return values

    def timestamps(self, col: str | None, field: str, *, required: bool = False, future: bool = True,
                   tz: str | None = None, fmt: str | None = None, dayfirst: bool | None = None,
                   null_words: tuple = ()) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        if null_words:
            raw = raw.where(~raw.str.casefold().isin({w.casefold() for w in null_words}), "")
        if required:
            self.reject(raw == "", f"missing {field} (column {col!r})" if col else f"missing {field}")
        parsed, bad = parsers.parse_timestamps(raw, tz or self.ctx.timezone, fmt=fmt, dayfirst=dayfirst)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        self.stamps.append((field, raw, parsed, tz or self.ctx.timezone))
        if future:
            self.reject_future(parsed, field, col, raw)
        return parsed

    def reject_future(self, parsed: pd.Series, field: str, col: str | None, raw: pd.Series | None = None) -> None:
        limit = self.ctx.written_at() + FUTURE_SLACK
        late = parsed > limit
        if late.any():
            def build(idx):
                shown = raw.reindex(idx) if raw is not None else \
                    parsed.reindex(idx).dt.strftime("%Y-%m-%d %H:%M:%S")
                return (f"future {field} '" + shown.astype(str) + f"' (column {col!r}; "
                        f"after the file was written on {limit - FUTURE_SLACK:%Y-%m-%d})")
            self.reject(late, build)

    def dates(self, col: str | None, field: str, *, fmt: str | None = None, dayfirst: bool | None = None,
              null_words: tuple = ()) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        if null_words:
            raw = raw.where(~raw.str.casefold().isin({w.casefold() for w in null_words}), "")
        parsed, bad = parsers.parse_dates(raw, fmt=fmt, dayfirst=dayfirst)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        self.stamps.append((field, raw, parsed, "UTC"))
        return parsed

    def numbers(self, col: str | None, field: str, *, negative_ok: bool = False,
                decimal: str | None = None) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        if decimal is None and self.table.delimiter == ";":
            decimal = ","
        parsed, bad = parsers.parse_numbers(raw, decimal)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        if not negative_ok:
            self.reject(parsed < 0, self._value_reason("negative", field, col, raw))
        return parsed

    def bools(self, col: str | None, field: str) -> pd.Series:
        raw = self.raw[col] if col else pd.Series("", index=self.raw.index)
        parsed, bad = parsers.parse_bools(raw)
        self.reject(bad, self._value_reason("unparseable", field, col, raw))
        return parsed

    def reject_duplicates(self, ids: pd.Series, col: str) -> None:
        """A native id seen again in the file: the first valid row wins; a later row is rejected,
        saying whether it repeats the first or conflicts with it (and where)."""
        live = ids.notna() & (self.reasons == "")
        dup = live & ids.where(live).duplicated(keep="first")
        if not dup.any():
            return
        numbers = pd.Series(self.table.row_numbers, index=self.raw.index)
        positions = pd.Series(self.raw.index, index=self.raw.index).where(live)
        first_index = positions.groupby(ids.where(live)).transform("first")
        messages = ("duplicate " + col + " '" + ids.astype(str) + "' (first seen in row "
                    + numbers.reindex(first_index.fillna(0).astype(int).to_numpy()).astype(str).to_numpy()
                    + ")").where(dup, "")
        for i in np.flatnonzero(dup.to_numpy())[:1000]:  # say how the first thousand differ
            idx = self.raw.index[i]
            j = int(first_index.loc[idx])
            a, b = self.raw.loc[j], self.raw.loc[idx]
            differs = [c for c in self.raw.columns if a[c] != b[c]]
            head = f"duplicate {col} '{ids.loc[idx]}' (first seen in row {numbers.loc[j]})"
            if differs:
                c = differs[0]
                more = f" and {len(differs) - 1} more" if len(differs) > 1 else ""
                messages.loc[idx] = (f"{head} with conflicting data: column {c!r} is "
                                     f"'{str(a[c])[:40]}' there, '{str(b[c])[:40]}' here{more}")
            else:
                messages.loc[idx] = f"{head}, the same data repeated"
        self.reject(dup, messages)

    # -- results -----------------------------------------------------------------------------
    @property
    def good(self) -> pd.Series:
        return self.reasons == ""

    def row_numbers(self) -> np.ndarray:
        return self.table.row_numbers

    def rejected(self) -> list[RejectedRow]:
        bad = np.flatnonzero((self.reasons != "").to_numpy())
        if not len(bad):
            return []
        sub = self.raw.iloc[bad]
        records = sub.to_dict(orient="records")
        return [RejectedRow(int(self.table.row_numbers[i]), rec, self.reasons.iloc[i])
                for i, rec in zip(bad, records)]

    def unused_columns(self) -> list[str]:
        return [c for c in self.raw.columns if c not in self.used]

    def attributes(self, columns: list[str] | None = None) -> pd.Series:
        cols = self.unused_columns() if columns is None else columns
        return attributes_json(self.raw, cols)


def map_unique(values: pd.Series, func) -> pd.Series:
    """func applied once per distinct value (stage names repeat: a million rows, a dozen names)."""
    uniques = pd.unique(values.dropna())
    table = dict(zip(uniques, func(pd.Series(uniques, dtype=object)).tolist())) if len(uniques) else {}
    return values.map(table)


def _preview(columns, limit: int = 12) -> str:
    cols = [str(c) for c in columns]
    shown = ", ".join(repr(c) for c in cols[:limit])
    return shown + (f" … ({len(cols)} in all)" if len(cols) > limit else "")

