"""What every CRM writer shares: the simulated company as arrays (`_View`), values as the text an
export holds (times in a zone, dates, decimals, JSON strings), and files written under `*.partial`
and renamed (CSV, JSON, JSON pages). The leading underscores mark the writers' internals: the
package's API is `voronka.simulator.native_writers.write_native`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from voronka.simulator.company import SimulatedCompany

EXPORT_TIMEZONES = {
    "canonical": "UTC",
    "amocrm": "Europe/Moscow",  # the account's zone: the deals export writes local times
    "bitrix24": "Asia/Yekaterinburg",  # the portal's zone; every time carries its offset (+05:00)
    "hubspot": "America/New_York",  # the portal's zone: the UI export writes local times (with DST)
    "salesforce": "UTC",  # Data Loader writes UTC ('...Z')
    "pipedrive": "Europe/Berlin",  # the exporting user's zone (deals export); the flow API is UTC
}

CHUNK_ITEMS = 200_000  # JSON items built at once: every Arrow string array stays far below 2 GB
UTF8_BOM = "\ufeff".encode("utf-8")


@dataclass
class _View:
    """The company as flat arrays. Stages are numbered globally (g) in pipeline order, then stage
    order; times are int64 unix seconds (-1 = none); events are sorted by deal, then time."""

    company: SimulatedCompany
    deals: pd.DataFrame
    pipelines: list
    stages: pd.DataFrame  # pipeline_stages + pipe (index) and local (0-based place in its pipeline)
    deal_pipe: np.ndarray
    deal_g: np.ndarray  # current stage
    native: np.ndarray  # simulator ids (str)
    native_int: np.ndarray
    created: np.ndarray
    closed: np.ndarray
    expected_day: np.ndarray  # days since epoch, -1 = none
    ev_deal: np.ndarray
    ev_g: np.ndarray
    ev_t: np.ndarray
    ev_first: np.ndarray
    ev_prev_g: np.ndarray  # -1 for a deal's first event
    last_change: np.ndarray  # per deal: the time of its newest event (its creation if none)
    last_open_g: np.ndarray  # per deal: the open stage it was last in (-1 if none)
    last_open_t: np.ndarray  # ... and when it entered it

    @property
    def n(self) -> int:
        return len(self.deals)

    @property
    def kind(self) -> np.ndarray:
        return self.stages["kind"].to_numpy(object)

    def column(self, name: str) -> np.ndarray:
        return self.deals[name].to_numpy(object)

    def names(self, key: str, pipe: int) -> list[str]:
        """Owners or lead sources of a pipeline in the spec's order (else in order of appearance)."""
        for p in self.company.params.get("pipelines", []):
            if p.get("name") == self.pipelines[pipe]:
                return [x["name"] for x in p.get(key, [])]
        column = {"owners": "owner", "lead_sources": "lead_source"}[key]
        return list(pd.unique(self.deals.loc[self.deal_pipe == pipe, column].dropna()))

    def all_names(self, key: str) -> list[str]:
        out: list[str] = []
        for p in range(len(self.pipelines)):
            out += [x for x in self.names(key, p) if x not in out]
        column = {"owners": "owner", "lead_sources": "lead_source"}[key]
        out += [x for x in pd.unique(self.deals[column].dropna()) if x not in out]
        return out

    @classmethod
    def of(cls, company: SimulatedCompany) -> "_View":
        deals = company.deals.reset_index(drop=True)
        stages = company.pipeline_stages.copy()
        pipelines = list(pd.unique(stages["pipeline"]))
        stages["pipe"] = pd.Categorical(stages["pipeline"], categories=pipelines).codes.astype(np.int64)
        stages = stages.sort_values(["pipe", "stage_order"], kind="stable").reset_index(drop=True)
        stages["local"] = stages.groupby("pipe").cumcount()

        deal_pipe = _codes(deals["pipeline"], pipelines, "deals.pipeline")
        deal_g = _stage_ids(stages, deal_pipe, deals["current_stage"].to_numpy(object), "deals.current_stage")
        native = deals["native_id"].astype(str).to_numpy(object)
        native_int = pd.to_numeric(pd.Series(native), errors="coerce")
        if native_int.isna().any():
            raise ValueError("native writers need numeric simulator ids (native_id)")

        ev = company.stage_events
        ev_deal = pd.Index(native).get_indexer(ev["native_id"].astype(str).to_numpy(object))
        if (ev_deal < 0).any():
            raise ValueError("stage_events name a deal that is not in deals")
        ev_t = _seconds(ev["entered_at"])
        order = np.lexsort((np.arange(len(ev)), ev_t, ev_deal))
        ev_deal, ev_t = ev_deal[order], ev_t[order]
        ev_pipe = _codes(ev["pipeline"].iloc[order], pipelines, "stage_events.pipeline")
        ev_g = _stage_ids(stages, ev_pipe, ev["stage"].to_numpy(object)[order], "stage_events.stage")
        ev_first = np.ones(len(ev_deal), bool)
        ev_first[1:] = ev_deal[1:] != ev_deal[:-1]
        ev_prev_g = np.where(ev_first, -1, np.roll(ev_g, 1))

        created = _seconds(deals["created_at"])
        last_change = created.copy()
        np.maximum.at(last_change, ev_deal, ev_t)
        is_open = stages["kind"].to_numpy(object)[ev_g] == "open"
        last_pos = np.full(len(deals), -1, np.int64)
        open_pos = np.flatnonzero(is_open)
        np.maximum.at(last_pos, ev_deal[open_pos], open_pos)
        has = last_pos >= 0
        last_open_g = np.where(has, ev_g[np.maximum(last_pos, 0)], -1)
        last_open_t = np.where(has, ev_t[np.maximum(last_pos, 0)], -1)
        expected = deals["expected_close_date"].to_numpy("datetime64[ns]")
        expected_day = np.where(np.isnat(expected), -1, expected.astype("datetime64[D]").astype(np.int64))
        return cls(company=company, deals=deals, pipelines=pipelines, stages=stages, deal_pipe=deal_pipe,
                   deal_g=deal_g, native=native, native_int=native_int.to_numpy(np.int64), created=created,
                   closed=_seconds(deals["closed_at"]), expected_day=expected_day, ev_deal=ev_deal, ev_g=ev_g,
                   ev_t=ev_t, ev_first=ev_first, ev_prev_g=ev_prev_g, last_change=last_change,
                   last_open_g=last_open_g, last_open_t=last_open_t)


def _codes(values: pd.Series, categories: list, what: str) -> np.ndarray:
    codes = pd.Categorical(values.to_numpy(object), categories=categories).codes.astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"{what}: a value with no stages in pipeline_stages")
    return codes


def _stage_ids(stages: pd.DataFrame, pipes: np.ndarray, names: np.ndarray, what: str) -> np.ndarray:
    g = np.full(len(pipes), -1, np.int64)
    for p, group in stages.groupby("pipe"):
        sel = pipes == p
        codes = pd.Categorical(names[sel], categories=group["stage"].tolist()).codes
        g[sel] = np.where(codes >= 0, group.index.to_numpy()[np.maximum(codes, 0)], -1)
    if (g < 0).any():
        raise ValueError(f"{what}: a stage that is not in its pipeline's stages")
    return g


# ---------------------------------------------------------------------------- values as text

def _seconds(values) -> np.ndarray:
    """datetime64 values -> int64 unix seconds, -1 where missing."""
    a = np.asarray(pd.to_datetime(values).to_numpy(), dtype="datetime64[ns]")
    out = a.astype("datetime64[s]").astype(np.int64)
    out[np.isnat(a)] = -1
    return out


def _local(seconds: np.ndarray, tz: str) -> np.ndarray:
    """Unix seconds -> local wall-clock seconds in `tz`."""
    if tz == "UTC":
        return seconds
    idx = pd.DatetimeIndex(np.maximum(seconds, 0).astype("datetime64[s]")).tz_localize("UTC").tz_convert(tz)
    return idx.tz_localize(None).as_unit("s").asi8


def _times(seconds: np.ndarray, fmt: str, tz: str = "UTC", missing: str | None = None) -> pa.Array:
    """Unix seconds as text in `fmt` (strftime codes %Y %m %d %H %M %S) at `tz` wall-clock time;
    -1 -> `missing` (null). Built from numpy's ISO text by rearranging bytes (fast at millions)."""
    seconds = np.asarray(seconds, np.int64)
    none = seconds < 0
    local = _local(np.where(none, 0, seconds), tz)
    iso = np.datetime_as_string(local.astype("datetime64[s]"), unit="s").astype("S19")
    source, literal = _time_template(fmt)
    chars = iso.view(np.uint8).reshape(len(iso), 19)[:, np.maximum(source, 0)]
    chars[:, source < 0] = literal[source < 0]
    text = np.ascontiguousarray(chars).view(f"S{len(source)}").ravel()
    out = _array(text, pa.binary(), mask=none).cast(pa.string())
    return pc.fill_null(out, missing) if missing is not None else out


_ISO_PARTS = {"Y": (0, 4), "m": (5, 7), "d": (8, 10), "H": (11, 13), "M": (14, 16), "S": (17, 19)}


def _time_template(fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """For each output byte of `fmt`: the byte of 'YYYY-MM-DDTHH:MM:SS' it copies (-1: a literal)."""
    source, literal, i = [], [], 0
    while i < len(fmt):
        if fmt[i] == "%":
            lo, hi = _ISO_PARTS[fmt[i + 1]]
            source += list(range(lo, hi))
            literal += [0] * (hi - lo)
            i += 2
        else:
            for b in fmt[i].encode("utf-8"):
                source.append(-1)
                literal.append(b)
            i += 1
    return np.array(source, np.int64), np.array(literal, np.uint8)


def _iso_offset(seconds: np.ndarray, tz: str) -> pa.Array:
    """ISO-8601 with the zone's offset at that instant: 2021-05-08T03:59:51+05:00 (null if -1)."""
    seconds = np.asarray(seconds, np.int64)
    none = seconds < 0
    offset = _local(np.where(none, 0, seconds), tz) - np.where(none, 0, seconds)
    values, inverse = np.unique(offset, return_inverse=True)
    texts = np.array([f"{'+' if v >= 0 else '-'}{abs(v) // 3600:02d}:{abs(v) % 3600 // 60:02d}" for v in values],
                     dtype=object)
    wall = _times(seconds, "%Y-%m-%dT%H:%M:%S", tz)
    return pc.binary_join_element_wise(wall, _array(texts[inverse.ravel()], pa.string()), "")


def _days(days: np.ndarray, fmt: str = "%Y-%m-%d") -> pa.Array:
    days = np.asarray(days, np.int64)
    return _times(np.where(days < 0, -1, days * 86_400), fmt)


def _array(values, type=None, mask=None) -> pa.Array:
    """pa.array, always one contiguous Array (large numpy string inputs come back chunked)."""
    arr = pa.array(values, type=type, mask=mask, from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _constant(text: str, n: int) -> pa.Array:
    return _array(np.full(n, text, dtype=object), pa.string())


def _text(values) -> pa.Array:
    return _array(np.asarray(values, dtype=object), pa.string())


def _int_text(values) -> pa.Array:
    return _array(np.asarray(values, np.int64)).cast(pa.string())


def _decimal(values, mask=None) -> pa.Array:
    """Money with two decimals: 150000.00."""
    return _array(np.round(np.asarray(values, float), 2), mask=mask).cast(pa.decimal128(18, 2)).cast(pa.string())


def _plain_number(values, mask=None) -> pa.Array:
    """A number as the shortest text: 4500, 12.5."""
    return _array(np.round(np.asarray(values, float), 2), mask=mask).cast(pa.string())


def _where(mask: np.ndarray, yes, no) -> pa.Array:
    return pc.if_else(_array(np.asarray(mask, bool)), yes, no)


def _nulls(n: int) -> pa.Array:
    return pa.nulls(n, pa.string())


def _take(table, index: np.ndarray) -> pa.Array:
    """table[index] as text (table: a list of texts or None)."""
    return _array(np.asarray(table, dtype=object)[np.asarray(index)], pa.string())


def _lookup(mapping: dict, values: np.ndarray) -> np.ndarray:
    """Values mapped through a dict (per distinct value; a missing value stays None)."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    mapped = np.array([mapping.get(u) for u in uniques] + [None], dtype=object)
    return mapped[np.where(codes < 0, len(uniques), codes)]


# ---------------------------------------------------------------------------- files

def _replace(partial: Path, path: Path) -> Path:
    os.replace(partial, path)
    return path


def _write_csv(path: Path, columns: list[tuple[str, pa.Array]], *, bom: bool = False,
               quote_all: bool = False) -> Path:
    """A CSV with exactly these headers (repeats allowed); strings quoted, nulls empty."""
    table = pa.Table.from_arrays([c for _, c in columns], names=[h for h, _ in columns])
    partial = path.with_name(path.name + ".partial")
    options = pcsv.WriteOptions(quoting_style="all_valid" if quote_all else "needed")
    with open(partial, "wb") as fh:
        if bom:
            fh.write(UTF8_BOM)
        pcsv.write_csv(table, fh, options)
    return _replace(partial, path)


def _write_json(path: Path, document) -> Path:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return _replace(partial, path)


_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def _jstr(values) -> pa.Array:
    """JSON string literals ("null" where missing)."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else _text(values)
    for old, new in _JSON_ESCAPES:
        arr = pc.replace_substring(arr, old, new)
    return pc.fill_null(pc.binary_join_element_wise('"', arr, '"', ""), "null")


def _jquote(values) -> pa.Array:
    """JSON string literals of text that needs no escaping (ids, codes, numbers, ISO times);
    "null" where missing."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else _text(values)
    return pc.fill_null(pc.binary_join_element_wise('"', arr, '"', ""), "null")


def _jobjects(fields: list[tuple[str, pa.Array | str]], lo: int = 0, hi: int | None = None) -> pa.Array:
    """One JSON object per row from (key, JSON text array or constant JSON text) pairs, rows lo:hi."""
    parts: list = []
    literal = "{"
    for i, (key, value) in enumerate(fields):
        literal += ("," if i else "") + json.dumps(key, ensure_ascii=False) + ":"
        if isinstance(value, str):
            literal += value
            continue
        parts += [literal, value.slice(lo, (hi if hi is not None else len(value)) - lo)]
        literal = ""
    parts.append(literal + "}")
    return pc.binary_join_element_wise(*parts, "")


def _write_json_pages(path: Path, bounds: np.ndarray, records: Callable[[int, int], pa.Array],
                      head: Callable[[np.ndarray], pa.Array | str],
                      tail: Callable[[np.ndarray], pa.Array | str]) -> Path:
    """A JSON list of API responses: page i holds items bounds[i]:bounds[i+1], wrapped in
    head(i) ... tail(i). Items are built a chunk of pages at a time."""
    partial = path.with_name(path.name + ".partial")
    n_pages = len(bounds) - 1
    with open(partial, "w", encoding="utf-8") as fh:
        fh.write("[\n")
        p = 0
        while p < n_pages:
            q = int(np.searchsorted(bounds, bounds[p] + CHUNK_ITEMS, side="right")) - 1
            q = min(max(q, p + 1), n_pages)
            lo, hi = int(bounds[p]), int(bounds[q])
            offsets = pa.array((bounds[p:q + 1] - lo).astype(np.int32))
            items = records(lo, hi) if hi > lo else pa.array([], pa.string())
            if isinstance(items, pa.ChunkedArray):
                items = items.combine_chunks()
            bodies = pc.binary_join(pa.ListArray.from_arrays(offsets, items), ",")
            pages_idx = np.arange(p, q)
            pages = pc.binary_join_element_wise(head(pages_idx), bodies, tail(pages_idx), "")
            if p:
                fh.write(",\n")
            fh.write(",\n".join(pages.to_pylist()))
            p = q
        fh.write("\n]\n")
    return _replace(partial, path)


def _page_bounds(n: int, size: int) -> np.ndarray:
    return np.append(np.arange(0, n, size), n) if n else np.array([0, 0])
