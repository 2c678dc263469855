"""Write a simulated company as the export files of a real CRM, so the demo can start from any
format and tests can round-trip: simulate -> native export -> readers -> the same canonical data
(up to what each format can carry; docs/simulator.md has the table).

`write_native(company, inbox, crm, truth_dir)` writes, for `crm`:

- amocrm: the deals export (CSV with BOM, Russian headers, `Бюджет ` with its trailing space,
  repeated columns, local times `DD.MM.YYYY HH:MM:SS` of the account's zone, `не закрыта`), the
  API v4 pipelines JSON and the API v4 events (`lead_status_changed`, a list of pages of 100).
- bitrix24: REST `crm.category.list` (entityTypeId 2: the pipelines' names), `crm.status.list`,
  `crm.stagehistory.list` and `crm.deal.list` (lists of pages of 50); pipelines are deal
  categories (`0` the default one, `C1:` stage prefixes in category 1), named by the category list.
- hubspot: the pipelines JSON and the UI deals export with `Date entered "<Stage> (<Pipeline>)"`
  columns (local times to the minute; one time per stage: its latest entry).
- salesforce: OpportunityStage.csv, OpportunityHistory.csv and Opportunity.csv of a
  multi-currency org (Data Loader style: every field quoted, 18-character ids, UTC `...Z` times).
- pipedrive: the stages JSON, the deal flow JSON (one `/v1/deals/{id}/flow` response per deal)
  and the deals export (`Deal - …` headers, local times).
- canonical: `write_canonical`.

Besides the CRM files every format gets the tables no CRM exports — targets.csv, fx_rates.csv,
marketing_spend.csv — as canonical CSVs, their pipelines and lead sources named as the CRM names
them (Bitrix24: the pipelines by name, as its category list names them, and source ids;
Salesforce: its one pipeline `default`, targets summed in USD). The truth directory gets truth.csv and params.json (as `write_canonical`),
deal_keys.csv (simulator native_id -> the deal_key the warehouse will hold) and export.json (the
CRM, its time zone, the files).

Time zones: `EXPORT_TIMEZONES[crm]` is the zone the export's local times are written in; pass it
to the readers (`load_files(..., timezone=...)`, the workspace's `timezone` setting);
`voronka demo --crm` writes it into voronka.yaml.

Everything is vectorised (numpy, pandas, Arrow compute): loops run over pipelines, stages and
chunks of rows, never over deals. Each file is written under `*.partial` and renamed; stage lists
first, then histories, then deals, so a sensor never reads deals without their stage list.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from voronka.simulator.canonical_writer import write_canonical, write_csv
from voronka.simulator.company import (
    FX_RATES_COLUMNS,
    MARKETING_SPEND_COLUMNS,
    TARGETS_COLUMNS,
    SimulatedCompany,
)

CRMS = ("canonical", "amocrm", "bitrix24", "hubspot", "salesforce", "pipedrive")
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

# Bitrix24 source ids for the demo's lead sources (a standard id where one fits, UC_ otherwise);
# other names get UC_SOURCE_<n>. One id per name, so marketing spend still joins.
BITRIX_SOURCES = {
    "Сайт": "WEB", "Рекомендация": "RECOMMENDATION", "Холодный звонок": "UC_COLD_CALL",
    "Выставка": "TRADE_SHOW", "Реклама": "ADVERTISING", "Входящий звонок": "CALL",
    "Website": "UC_WEBSITE", "Referral": "UC_REFERRAL", "Outbound": "UC_OUTBOUND", "Event": "UC_EVENT",
    "Paid ads": "UC_PAID_ADS", "Partner": "PARTNER",
}
BITRIX_STAGE_IDS = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE")
SALESFORCE_PIPELINE = "default"
SALESFORCE_CORPORATE_CURRENCY = "USD"


def export_timezone(crm: str) -> str:
    """The zone of the local times in `crm`'s export: pass it to the readers."""
    _check_crm(crm)
    return EXPORT_TIMEZONES[crm]


def write_native(company: SimulatedCompany, inbox: Path, crm: str, truth_dir: Path) -> list[Path]:
    """Write `company` as `crm` exports it into `inbox`, and its truth into `truth_dir`.

    Returns the inbox files in the order written. Read them with timezone=EXPORT_TIMEZONES[crm]."""
    _check_crm(crm)
    inbox, truth_dir = Path(inbox), Path(truth_dir)
    if crm == "canonical":
        written = write_canonical(company, inbox, truth_dir)
        deals = company.deals
        keys = (deals["source_system"].astype(str) + ":" + deals["native_id"].astype(str)).to_numpy(object)
        _write_export_truth(company, truth_dir, crm, written, keys, with_truth=False)
        return written
    inbox.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    view = _View.of(company)
    written, crm_ids = _WRITERS[crm](view, inbox)
    written += _write_reference_tables(view, inbox, crm)
    keys = (crm + ":" + pd.Series(crm_ids, dtype=object)).to_numpy(object)
    _write_export_truth(company, truth_dir, crm, written, keys, with_truth=True)
    return written


def _check_crm(crm: str) -> None:
    if crm not in CRMS:
        raise ValueError(f"unknown CRM {crm!r} (known: {', '.join(CRMS)})")


# ---------------------------------------------------------------------------- the company as arrays

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


# ---------------------------------------------------------------------------- amoCRM

AMO_ACCOUNT = 29_514_201
AMO_HOST = "https://voronka-demo.amocrm.ru"


def _amocrm(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["amocrm"]
    kind = v.kind
    pipeline_ids = np.array([5_437_912 + 3 * p for p in range(len(v.pipelines))])
    status_id = np.where(kind == "won", 142, np.where(kind == "lost", 143,
                                                      48_112_005 + 7 * np.arange(len(kind))))
    owners = v.all_names("owners")
    user_id = {name: 7_830_211 + 17 * i for i, name in enumerate(owners)}

    # Pipelines (GET /api/v4/leads/pipelines)
    pipelines = []
    for p, name in enumerate(v.pipelines):
        st = v.stages[v.stages["pipe"] == p]
        statuses = []
        for g, row in st.iterrows():
            terminal = row["kind"] != "open"
            statuses.append({
                "id": int(status_id[g]), "name": row["stage"],
                "sort": {"won": 10000, "lost": 11000}.get(row["kind"], 10 * (int(row["local"]) + 1)),
                "is_editable": not terminal, "pipeline_id": int(pipeline_ids[p]),
                "color": {"won": "#CCFF66", "lost": "#D5D8DB"}.get(row["kind"], "#99ccff"),
                "type": 0, "account_id": AMO_ACCOUNT,
                "_links": {"self": {"href": f"{AMO_HOST}/api/v4/leads/pipelines/{pipeline_ids[p]}/statuses/{status_id[g]}"}},
            })
        pipelines.append({
            "id": int(pipeline_ids[p]), "name": name, "sort": 1 + p, "is_main": p == 0,
            "is_unsorted_on": False, "is_archive": False, "account_id": AMO_ACCOUNT,
            "_links": {"self": {"href": f"{AMO_HOST}/api/v4/leads/pipelines/{pipeline_ids[p]}"}},
            "_embedded": {"statuses": statuses},
        })
    written = [_write_json(inbox / "amocrm_leads_pipelines.json", {
        "_total_items": len(pipelines),
        "_links": {"self": {"href": f"{AMO_HOST}/api/v4/leads/pipelines"}},
        "_embedded": {"pipelines": pipelines},
    })]

    # Events (GET /api/v4/events?filter[type]=lead_status_changed): every move; the creation of
    # a deal is a lead_added event, not a status change, so it is not in this list.
    moves = np.flatnonzero(~v.ev_first)
    moves = moves[np.lexsort((moves, v.ev_t[moves]))]  # the API pages through events by time
    deal = v.ev_deal[moves]
    pipe_id = pipeline_ids[v.deal_pipe[deal]].astype(str)

    def lead_status(status: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise('[{"lead_status":{"id":', _int_text(status),
                                           ',"pipeline_id":', _text(pipe_id), "}}]", "")

    fields = [
        ("id", _jquote(pc.binary_join_element_wise("01jf", _int_text(48_000_000 + np.arange(len(moves))), ""))),
        ("type", '"lead_status_changed"'),
        ("entity_id", _int_text(v.native_int[deal])),
        ("entity_type", '"lead"'),
        ("created_by", _int_text(_lookup(user_id, v.column("owner")[deal]).astype(np.int64))),
        ("created_at", _int_text(v.ev_t[moves])),
        ("value_after", lead_status(status_id[v.ev_g[moves]])),
        ("value_before", lead_status(status_id[v.ev_prev_g[moves]])),
        ("account_id", str(AMO_ACCOUNT)),
    ]
    bounds = _page_bounds(len(moves), 100)
    written.append(_write_json_pages(
        inbox / "amocrm_events_lead_status_changed.json", bounds,
        lambda lo, hi: _jobjects(fields, lo, hi),
        lambda i: pc.binary_join_element_wise(
            '{"_page":', _int_text(i + 1), f',"_links":{{"self":{{"href":"{AMO_HOST}/api/v4/events?'
            'filter%5Btype%5D=lead_status_changed&limit=100&page=', _int_text(i + 1),
            '"}},"_embedded":{"events":[', ""),
        lambda i: "]}}"))

    # Deals export (Сделки -> Экспорт), in the order the UI lists them (newest first)
    n = v.n
    owner = _text(v.column("owner"))
    closed = v.closed >= 0
    lost = kind[v.deal_g] == "lost"
    empty = _nulls(n)
    columns = [
        ("ID", _int_text(v.native_int)),
        ("Название сделки", _text(v.column("title"))),
        ("Бюджет ", _amo_money(v.deals["amount"].to_numpy(float))),
        ("Ответственный", owner),
        ("Дата создания сделки", _times(v.created, "%d.%m.%Y %H:%M:%S", tz)),
        ("Кем создана сделка", owner),
        ("Дата редактирования", _times(v.last_change, "%d.%m.%Y %H:%M:%S", tz)),
        ("Кем редактирована", owner),
        ("Дата закрытия", _times(np.where(closed, v.closed, -1), "%d.%m.%Y %H:%M:%S", tz, missing="не закрыта")),
        ("Теги", empty),
        ("Примечание", empty), ("Примечание 2", empty), ("Примечание 3", empty),
        ("Примечание 4", empty), ("Примечание 5", empty),
        ("Этап сделки", _text(v.column("current_stage"))),
        ("Воронка", _text(v.column("pipeline"))),
        ("Полное имя контакта", empty), ("Компания контакта", empty),
        ("Ответственный за контакт", owner), ("Компания", empty),
        ("Рабочий телефон (контакт)", empty), ("Рабочий email (контакт)", empty),
        ("Город", _text(v.column("region"))),
        ("Источник", _text(v.column("lead_source"))),
        ("Должность (контакт)", empty),
        ("Товар", _text(v.column("product"))),
        ("Сегмент", _text(v.column("segment"))),
        ("Валюта", _text(v.column("currency"))),
        ("Причина отказа", _text(np.where(lost, v.column("lost_reason"), None))),
        ("utm_source", empty), ("utm_medium", empty), ("utm_campaign", empty), ("utm_term", empty),
        ("utm_content", empty), ("utm_referrer", empty), ("_ym_uid", empty), ("roistat", empty),
        ("gclid", empty), ("yclid", empty), ("fbclid", empty),
        ("Товар", empty), ("Источник", empty), ("roistat", empty),
    ]
    newest_first = np.argsort(-v.native_int, kind="stable")
    columns = [(h, c.take(pa.array(newest_first))) for h, c in columns]
    written.append(_write_csv(inbox / f"amocrm_export_leads_{v.company.end_date:%Y-%m-%d}.csv", columns, bom=True))
    return written, v.native_int.astype(str)


def _amo_money(amount: np.ndarray) -> pa.Array:
    """Budget as amoCRM writes it: '1 500 000', '48 500,50'."""
    text = pd.Series(amount).map(lambda x: f"{x:,.2f}".replace(",", " ").replace(".", ","))
    text = text.str.replace(r",00$", "", regex=True)
    return _text(text.to_numpy(object))


# ---------------------------------------------------------------------------- Bitrix24

def _bitrix_stage_ids(v: _View) -> tuple[np.ndarray, np.ndarray]:
    """STATUS_ID per stage (C<n>: prefixed outside category 0) and the category of each stage."""
    ids = []
    for g, row in v.stages.iterrows():
        cat = int(row["pipe"])
        if row["kind"] == "won":
            bare = "WON"
        elif row["kind"] == "lost":
            bare = "LOSE"
        elif row["local"] < len(BITRIX_STAGE_IDS):
            bare = BITRIX_STAGE_IDS[int(row["local"])]
        else:
            bare = "UC_" + hashlib.sha1(f"{cat}:{row['local']}".encode()).hexdigest()[:6].upper()
        ids.append(bare if cat == 0 else f"C{cat}:{bare}")
    return np.array(ids, dtype=object), v.stages["pipe"].to_numpy(np.int64)


def _bitrix_sources(v: _View) -> dict:
    names = v.all_names("lead_sources")
    out = {}
    for i, name in enumerate(names):
        code = BITRIX_SOURCES.get(name, f"UC_SOURCE_{i + 1}")
        out[name] = code if code not in out.values() else f"UC_SOURCE_{i + 1}"
    return out


def _bitrix_users(v: _View) -> dict:
    return {name: 1 + 2 * i for i, name in enumerate(v.all_names("owners"), start=1)}


def _bitrix24(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["bitrix24"]
    kind = v.kind
    stage_id, category = _bitrix_stage_ids(v)
    semantic = np.where(kind == "won", "S", np.where(kind == "lost", "F", "P")).astype(object)
    sources = _bitrix_sources(v)
    users = _bitrix_users(v)
    time_block = '"time":{"start":1700000000.1,"finish":1700000000.2,"duration":0.1,"processing":0.05}'

    # crm.category.list (entityTypeId 2): the names of the pipelines, category 0 the default
    categories = [{"id": p, "name": name, "sort": 100 * (p + 1), "entityTypeId": 2,
                   "isDefault": "Y" if p == 0 else "N"} for p, name in enumerate(v.pipelines)]
    written = [_write_json(inbox / "bitrix24_crm.category.list.json",
                           {"result": {"categories": categories}, "total": len(categories),
                            "time": {"start": 1700000000.1, "finish": 1700000000.2}})]

    # crm.status.list: the deal stages of every category, and the lead sources
    statuses, n_status = [], 0
    for g, row in v.stages.iterrows():
        n_status += 1
        cat = int(row["pipe"])
        statuses.append({
            "ID": str(n_status), "ENTITY_ID": "DEAL_STAGE" if cat == 0 else f"DEAL_STAGE_{cat}",
            "STATUS_ID": stage_id[g], "NAME": row["stage"], "NAME_INIT": row["stage"] if row["kind"] != "open" else "",
            "SORT": str({"won": 60, "lost": 70}.get(row["kind"], 10 * (int(row["local"]) + 1))),
            "SYSTEM": "Y" if row["kind"] != "open" or row["local"] == 0 else "N",
            "CATEGORY_ID": str(cat), "COLOR": {"won": "#7BD500", "lost": "#FF5752"}.get(row["kind"], "#39A8EF"),
            "SEMANTICS": {"won": "S", "lost": "F"}.get(row["kind"]),
            "EXTRA": {"SEMANTICS": {"won": "success", "lost": "failure"}.get(row["kind"], "process"),
                      "COLOR": "#39A8EF"},
        })
    for name, code in sources.items():
        n_status += 1
        statuses.append({"ID": str(n_status), "ENTITY_ID": "SOURCE", "STATUS_ID": code, "NAME": name,
                         "NAME_INIT": "", "SORT": str(10 * n_status), "SYSTEM": "N", "CATEGORY_ID": None,
                         "COLOR": None, "SEMANTICS": None})
    written.append(_write_json(inbox / "bitrix24_crm.status.list.json",
                               {"result": statuses, "total": len(statuses),
                                "time": {"start": 1700000000.1, "finish": 1700000000.2}}))

    # crm.stagehistory.list (entityTypeId 2): every stage a deal entered, creation included
    order = np.lexsort((np.arange(len(v.ev_t)), v.ev_t))
    deal = v.ev_deal[order]
    g = v.ev_g[order]
    type_id = np.where(v.ev_first[order], 1, np.where(kind[g] == "open", 2, 3))
    fields = [
        ("ID", _int_text(1 + np.arange(len(order)))),
        ("TYPE_ID", _int_text(type_id)),
        ("OWNER_ID", _int_text(v.native_int[deal])),
        ("CREATED_TIME", _jquote(_iso_offset(v.ev_t[order], tz))),
        ("CATEGORY_ID", _int_text(category[g])),
        ("STAGE_SEMANTIC_ID", _jquote(_take(semantic, g))),
        ("STAGE_ID", _jquote(_take(stage_id, g))),
    ]
    n_items = len(order)
    bounds = _page_bounds(n_items, 50)
    written.append(_write_json_pages(
        inbox / "bitrix24_crm.stagehistory.list.json", bounds,
        lambda lo, hi: _jobjects(fields, lo, hi),
        lambda i: '{"result":{"items":[',
        lambda i: pc.binary_join_element_wise(
            "]},", _bitrix_next(bounds, i, n_items), f'"total":{n_items},{time_block}}}', "")))

    # crm.deal.list with select ["*", "UF_*"]
    n = v.n
    closed = v.closed >= 0
    owner_id = _int_text(_lookup(users, v.column("owner")).astype(np.int64))
    lost = kind[v.deal_g] == "lost"
    # CLOSEDATE: the close of a closed deal, the expected close (a date) of an open one
    close_text = _where(closed, _iso_offset(v.closed, tz), _expected_midnight(v.expected_day, tz))
    modify = _iso_offset(v.last_change, tz)
    fields = [
        ("ID", _jquote(_int_text(v.native_int))),
        ("TITLE", _jstr(v.column("title"))),
        ("TYPE_ID", '"SALE"'),
        ("STAGE_ID", _jquote(_take(stage_id, v.deal_g))),
        ("PROBABILITY", "null"),
        ("CURRENCY_ID", _jquote(v.column("currency"))),
        ("OPPORTUNITY", _jquote(_decimal(v.deals["amount"].to_numpy(float)))),
        ("IS_MANUAL_OPPORTUNITY", '"Y"'),
        ("TAX_VALUE", '"0.00"'),
        ("COMPANY_ID", '"0"'),
        ("CONTACT_ID", "null"),
        ("BEGINDATE", _jquote(_expected_midnight(_local(v.created, tz) // 86_400, tz))),
        ("CLOSEDATE", _jquote(close_text)),
        ("ASSIGNED_BY_ID", _jquote(owner_id)),
        ("CREATED_BY_ID", _jquote(owner_id)),
        ("MODIFY_BY_ID", _jquote(owner_id)),
        ("DATE_CREATE", _jquote(_iso_offset(v.created, tz))),
        ("DATE_MODIFY", _jquote(modify)),
        ("OPENED", '"Y"'),
        ("CLOSED", _jquote(_where(closed, "Y", "N"))),
        ("COMMENTS", "null"),
        ("CATEGORY_ID", _jquote(_int_text(v.deal_pipe))),
        ("STAGE_SEMANTIC_ID", _jquote(_take(semantic, v.deal_g))),
        ("IS_NEW", _jquote(_where(v.last_change == v.created, "Y", "N"))),
        ("IS_RETURN_CUSTOMER", '"N"'),
        ("SOURCE_ID", _jquote(_lookup(sources, v.column("lead_source")))),
        ("SOURCE_DESCRIPTION", "null"),
        ("MOVED_BY_ID", _jquote(owner_id)),
        ("MOVED_TIME", _jquote(modify)),
        ("LAST_ACTIVITY_TIME", _jquote(modify)),
        ("UTM_SOURCE", "null"),
        ("UF_CRM_SEGMENT", _jstr(v.column("segment"))),
        ("UF_CRM_REGION", _jstr(v.column("region"))),
        ("UF_CRM_PRODUCT", _jstr(v.column("product"))),
        ("UF_CRM_LOSS_REASON", _jstr(np.where(lost, v.column("lost_reason"), None))),
    ]
    bounds = _page_bounds(n, 50)
    written.append(_write_json_pages(
        inbox / "bitrix24_crm.deal.list.json", bounds,
        lambda lo, hi: _jobjects(fields, lo, hi),
        lambda i: '{"result":[',
        lambda i: pc.binary_join_element_wise("],", _bitrix_next(bounds, i, n), f'"total":{n},{time_block}}}', "")))
    return written, v.native_int.astype(str)


def _bitrix_next(bounds: np.ndarray, pages: np.ndarray, total: int) -> pa.Array:
    """`"next":<offset>,` on every page but the last."""
    nxt = bounds[pages + 1]
    return _where(nxt < total, pc.binary_join_element_wise('"next":', _int_text(nxt), ",", ""), "")


def _expected_midnight(days: np.ndarray, tz: str) -> pa.Array:
    """A date field as Bitrix24 returns it: local midnight with the offset (null if -1)."""
    days = np.asarray(days, np.int64)
    none = days < 0
    # local midnight of that calendar day: the UTC instant whose local wall time is 00:00
    guess = np.where(none, 0, days * 86_400)
    offset = _local(guess, tz) - guess
    return _iso_offset(np.where(none, -1, guess - offset), tz)


# ---------------------------------------------------------------------------- HubSpot

def _hubspot(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["hubspot"]
    kind = v.kind
    pipeline_ids = ["default"] + [str(31_224_100 + 7 * p) for p in range(1, len(v.pipelines))]
    stage_ids = []
    for g, row in v.stages.iterrows():
        if row["pipe"] == 0 and row["kind"] in ("won", "lost"):
            stage_ids.append("closed" + row["kind"])
        else:
            stage_ids.append(str(107_000_000 + 1000 * int(row["pipe"]) + int(row["local"])))

    # Pipelines (GET /crm/v3/pipelines/deals)
    results = []
    for p, name in enumerate(v.pipelines):
        st = v.stages[v.stages["pipe"] == p]
        results.append({
            "label": name, "displayOrder": p, "id": pipeline_ids[p], "archived": False,
            "createdAt": "2021-03-01T09:00:00.000Z", "updatedAt": "2024-01-15T12:00:00.000Z",
            "stages": [{
                "label": row["stage"], "displayOrder": int(row["local"]),
                "metadata": {"isClosed": "true" if row["kind"] != "open" else "false",
                             "probability": _probability_text(row)},
                "id": stage_ids[g], "archived": False, "createdAt": "2021-03-01T09:00:00.000Z",
                "updatedAt": "2024-01-15T12:00:00.000Z", "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
            } for g, row in st.iterrows()],
        })
    written = [_write_json(inbox / "hubspot_pipelines_deals.json", {"results": results})]

    # Deals export ("all properties"); times are the portal's wall clock, to the minute
    minute = "%Y-%m-%d %H:%M"
    n = v.n
    closed = v.closed >= 0
    won = kind[v.deal_g] == "won"
    lost = kind[v.deal_g] == "lost"
    close = _where(closed, _times(v.closed, minute, tz), _days(v.expected_day, "%Y-%m-%d 00:00"))
    columns = [
        ("Record ID", _int_text(v.native_int)),
        ("Deal Name", _text(v.column("title"))),
        ("Deal Stage", _text(v.column("current_stage"))),
        ("Pipeline", _text(v.column("pipeline"))),
        ("Amount", _plain_number(v.deals["amount"].to_numpy(float))),
        ("Currency", _text(v.column("currency"))),
        ("Close Date", close),
        ("Create Date", _times(v.created, minute, tz)),
        ("Last Modified Date", _times(v.last_change, minute, tz)),
        ("Deal owner", _text(v.column("owner"))),
        ("Deal Type", _constant("New Business", n)),
        ("Is Closed Won", _where(won, "true", "false")),
        ("Is closed", _where(closed, "true", "false")),
        ("Closed Lost Reason", _text(np.where(lost, v.column("lost_reason"), None))),
        ("Source", _text(v.column("lead_source"))),
        ("Segment", _text(v.column("segment"))),
        ("Region", _text(v.column("region"))),
        ("Product", _text(v.column("product"))),
    ]
    # One "Date entered" per stage: the latest time the deal entered it.
    latest = np.full((n, len(v.stages)), -1, np.int64)
    np.maximum.at(latest, (v.ev_deal, v.ev_g), v.ev_t)
    for g, row in v.stages.iterrows():
        columns.append((f'Date entered "{row["stage"]} ({row["pipeline"]})"', _times(latest[:, g], minute, tz)))
    written.append(_write_csv(inbox / f"hubspot-crm-exports-all-deals-{v.company.end_date:%Y-%m-%d}.csv", columns))
    return written, v.native_int.astype(str)


def _probability_text(row) -> str:
    if row["kind"] == "won":
        return "1.0"
    if row["kind"] == "lost":
        return "0.0"
    p = row["crm_probability"]
    return "" if pd.isna(p) else repr(round(float(p), 4))


# ---------------------------------------------------------------------------- Salesforce

_SF_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_SF_SUFFIX = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", np.uint8)


def salesforce_ids(prefix: str, numbers) -> np.ndarray:
    """18-character Salesforce ids: key prefix (3) + '5g' + '0' + base-62 number (9) + the
    3-character checksum of which of the first 15 characters are upper case."""
    numbers = np.asarray(numbers, np.int64)
    chars = np.empty((len(numbers), 18), np.uint8)
    chars[:, :6] = np.frombuffer((prefix + "5g0").encode("ascii"), np.uint8)
    rest = numbers.copy()
    for i in range(14, 5, -1):
        chars[:, i] = _SF_ALPHABET[rest % 62]
        rest //= 62
    upper = (chars[:, :15] >= ord("A")) & (chars[:, :15] <= ord("Z"))
    weights = 1 << np.arange(5)
    for k in range(3):
        chars[:, 15 + k] = _SF_SUFFIX[(upper[:, 5 * k:5 * k + 5] * weights).sum(axis=1)]
    return chars.view("S18").ravel().astype(str).astype(object)


def _sf_forecast(prob: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ForecastCategory API value, ForecastCategoryName) per stage."""
    api = np.where(kind == "won", "Closed", np.where(kind == "lost", "Omitted",
                   np.where(prob >= 0.7, "Forecast", np.where(prob >= 0.4, "BestCase", "Pipeline"))))
    label = pd.Series(api).map({"Closed": "Closed", "Omitted": "Omitted", "Forecast": "Commit",
                                "BestCase": "Best Case", "Pipeline": "Pipeline"}).to_numpy(object)
    return api.astype(object), label


def _salesforce(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    kind = v.kind
    n = v.n
    iso = "%Y-%m-%dT%H:%M:%S.000Z"
    prob = np.where(kind == "won", 1.0, np.where(kind == "lost", 0.0,
                                                 v.stages["crm_probability"].fillna(0).to_numpy(float)))
    forecast, forecast_name = _sf_forecast(prob, kind)
    owners = v.all_names("owners")
    owner_ids = dict(zip(owners, salesforce_ids("005", 40_000 + np.arange(len(owners)))))
    opp_id = salesforce_ids("006", v.native_int)
    owner_id = _lookup(owner_ids, v.column("owner"))
    admin = salesforce_ids("005", [39_999])[0]

    # OpportunityStage: one org-wide list (both sales processes); open stages first, by pipeline
    t = np.where(kind == "open", 0, np.where(kind == "won", 1, 2))
    sort_order = np.empty(len(kind), np.int64)
    sort_order[np.lexsort((np.arange(len(kind)), t))] = 1 + np.arange(len(kind))
    stage_rows = len(kind)
    created_stage = "2019-04-01T08:00:00.000Z"
    written = [_write_csv(inbox / "OpportunityStage.csv", [
        ("Id", _text(salesforce_ids("01J", 1 + np.arange(stage_rows)))),
        ("MasterLabel", _text(v.stages["stage"].to_numpy(object))),
        ("ApiName", _text(v.stages["stage"].to_numpy(object))),
        ("IsActive", _constant("true", stage_rows)),
        ("SortOrder", _int_text(sort_order)),
        ("IsClosed", _where(kind != "open", "true", "false")),
        ("IsWon", _where(kind == "won", "true", "false")),
        ("ForecastCategory", _text(forecast)),
        ("ForecastCategoryName", _text(forecast_name)),
        ("DefaultProbability", _int_text(np.round(prob * 100))),
        ("Description", _nulls(stage_rows)),
        ("CreatedById", _constant(admin, stage_rows)),
        ("CreatedDate", _constant(created_stage, stage_rows)),
        ("LastModifiedById", _constant(admin, stage_rows)),
        ("LastModifiedDate", _constant(created_stage, stage_rows)),
        ("SystemModstamp", _constant(created_stage, stage_rows)),
    ], quote_all=True)]

    # OpportunityHistory: a row per stage change, the creation included. CloseDate: the expected
    # close while open, the day of the move on a move into a closed stage.
    e = len(v.ev_t)
    deal = v.ev_deal
    g = v.ev_g
    amount = v.deals["amount"].to_numpy(float)[deal]
    closing = kind[g] != "open"
    close_day = np.where(closing, v.ev_t // 86_400, v.expected_day[deal])
    prev = np.roll(np.arange(e), 1)
    first = v.ev_first
    currency = _take(v.column("currency"), deal)
    written.append(_write_csv(inbox / "OpportunityHistory.csv", [
        ("Id", _text(salesforce_ids("008", 1 + np.arange(e)))),
        ("OpportunityId", _take(opp_id, deal)),
        ("CreatedById", _take(owner_id, deal)),
        ("CreatedDate", _times(v.ev_t, iso)),
        ("StageName", _take(v.stages["stage"].to_numpy(object), g)),
        ("Amount", _decimal(amount)),
        ("ExpectedRevenue", _decimal(amount * prob[g])),
        ("CloseDate", _days(close_day)),
        ("Probability", _int_text(np.round(prob[g] * 100))),
        ("ForecastCategory", _take(forecast, g)),
        ("FromForecastCategory", _take(np.append(forecast, None), np.where(first, len(forecast), v.ev_prev_g))),
        ("FromOpportunityStageName", _take(np.append(v.stages["stage"].to_numpy(object), None),
                                           np.where(first, len(forecast), v.ev_prev_g))),
        ("PrevAmount", _decimal(amount, mask=first)),
        ("PrevCloseDate", _days(np.where(first, -1, close_day[prev]))),
        ("CurrencyIsoCode", currency),
        ("IsDeleted", _constant("false", e)),
        ("SystemModstamp", _times(v.ev_t, iso)),
    ], quote_all=True))

    # Opportunity: CloseDate is the expected close of an open deal, the (UTC) day a closed one closed
    closed = v.closed >= 0
    won = kind[v.deal_g] == "won"
    lost = kind[v.deal_g] == "lost"
    close_day = np.where(closed, v.closed // 86_400, v.expected_day)
    close_dt = close_day.astype("datetime64[D]")
    year = close_dt.astype("datetime64[Y]").astype(np.int64) + 1970
    quarter = (close_dt.astype("datetime64[M]").astype(np.int64) % 12) // 3 + 1
    deal_prob = prob[v.deal_g]
    written.append(_write_csv(inbox / "Opportunity.csv", [
        ("Id", _text(opp_id)),
        ("IsDeleted", _constant("false", n)),
        ("AccountId", _text(salesforce_ids("001", v.native_int))),
        ("RecordTypeId", _take(salesforce_ids("012", 1 + np.arange(len(v.pipelines))), v.deal_pipe)),
        ("Name", _text(v.column("title"))),
        ("Description", _nulls(n)),
        ("StageName", _text(v.column("current_stage"))),
        ("Amount", _decimal(v.deals["amount"].to_numpy(float))),
        ("Probability", _int_text(np.round(deal_prob * 100))),
        ("ExpectedRevenue", _decimal(v.deals["amount"].to_numpy(float) * deal_prob)),
        ("CloseDate", _days(close_day)),
        ("Type", _constant("New Business", n)),
        ("NextStep", _nulls(n)),
        ("LeadSource", _text(v.column("lead_source"))),
        ("IsClosed", _where(closed, "true", "false")),
        ("IsWon", _where(won, "true", "false")),
        ("ForecastCategory", _take(forecast, v.deal_g)),
        ("ForecastCategoryName", _take(forecast_name, v.deal_g)),
        ("CurrencyIsoCode", _text(v.column("currency"))),
        ("CampaignId", _nulls(n)),
        ("HasOpportunityLineItem", _constant("false", n)),
        ("OwnerId", _text(owner_id)),
        ("Owner.Name", _text(v.column("owner"))),
        ("CreatedDate", _times(v.created, iso)),
        ("CreatedById", _text(owner_id)),
        ("LastModifiedDate", _times(v.last_change, iso)),
        ("LastModifiedById", _text(owner_id)),
        ("SystemModstamp", _times(v.last_change, iso)),
        ("FiscalQuarter", _int_text(quarter)),
        ("FiscalYear", _int_text(year)),
        ("Fiscal", pc.binary_join_element_wise(_int_text(year), _int_text(quarter), " ")),
        ("Loss_Reason__c", _text(np.where(lost, v.column("lost_reason"), None))),
        ("Segment__c", _text(v.column("segment"))),
        ("Region__c", _text(v.column("region"))),
        ("Product__c", _text(v.column("product"))),
    ], quote_all=True))
    return written, opp_id


# ---------------------------------------------------------------------------- Pipedrive

def _pipedrive(v: _View, inbox: Path) -> tuple[list[Path], np.ndarray]:
    tz = EXPORT_TIMEZONES["pipedrive"]
    kind = v.kind
    is_open = kind == "open"
    stage_id = np.full(len(kind), -1, np.int64)
    stage_id[is_open] = 1 + np.arange(int(is_open.sum()))
    users = {name: 12_843_000 + 11 * i for i, name in enumerate(v.all_names("owners"))}
    user_id = _lookup(users, v.column("owner")).astype(np.int64)

    # Stages (GET /v1/stages): open stages only; won and lost are statuses in Pipedrive
    data = []
    for g, row in v.stages[is_open].iterrows():
        p = row["crm_probability"]
        data.append({
            "id": int(stage_id[g]), "order_nr": int(row["local"]) + 1, "name": row["stage"], "active_flag": True,
            "deal_probability": None if pd.isna(p) else int(round(100 * float(p))),
            "pipeline_id": int(row["pipe"]) + 1, "rotten_flag": False, "rotten_days": None,
            "add_time": "2021-03-01 09:00:00", "update_time": "2024-01-15 12:00:00",
            "pipeline_name": row["pipeline"], "pipeline_deal_probability": True,
        })
    written = [_write_json(inbox / "pipedrive_stages.json", {
        "success": True, "data": data,
        "additional_data": {"pagination": {"start": 0, "limit": 500, "more_items_in_collection": False}},
    })]

    # Flow (GET /v1/deals/{id}/flow, newest first), one response per deal: a move between open
    # stages is a stage_id change; into won/lost a status change; out of lost a reopening (the
    # deal is reopened in the stage it was lost in, as Pipedrive does).
    moves = np.flatnonzero(~v.ev_first)
    deal = v.ev_deal[moves]
    g, prev = v.ev_g[moves], v.ev_prev_g[moves]
    is_stage = is_open[g] & is_open[prev]
    moves_by_deal = np.lexsort((-moves, deal))  # per deal, newest first
    moves, deal, g, prev, is_stage = (a[moves_by_deal] for a in (moves, deal, g, prev, is_stage))
    t = v.ev_t[moves]
    status_new = np.where(kind[g] == "won", "won", np.where(kind[g] == "lost", "lost", "open")).astype(object)
    status_old = np.where(kind[prev] == "lost", "lost", "open").astype(object)
    old = _where(is_stage, _jquote(_int_text(stage_id[prev])), _jquote(status_old))
    new = _where(is_stage, _jquote(_int_text(stage_id[g])), _jquote(status_new))
    when = _jquote(_times(t, "%Y-%m-%d %H:%M:%S"))
    item_id = np.empty(len(t), np.int64)
    item_id[np.argsort(t, kind="stable")] = 1 + np.arange(len(t))  # ids grow with time
    change = [
        ("id", _int_text(80_000_000 + item_id)),
        ("item_id", _int_text(v.native_int[deal])),
        ("user_id", _int_text(user_id[deal])),
        ("field_key", _jquote(_where(is_stage, "stage_id", "status"))),
        ("old_value", old),
        ("new_value", new),
        ("is_bulk_update_flag", "null"),
        ("log_time", when),
        ("change_source", '"app"'),
        ("change_source_user_agent", "null"),
        ("additional_data", "{}"),
    ]

    def items(lo: int, hi: int) -> pa.Array:
        data = _jobjects(change, lo, hi)
        return _jobjects([("object", '"dealChange"'), ("timestamp", when.slice(lo, hi - lo)), ("data", data)])

    counts = np.bincount(deal, minlength=v.n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    status = np.where(kind[v.deal_g] == "won", "won", np.where(kind[v.deal_g] == "lost", "lost", "open"))
    # related_objects.deal: the deal as it is now (its open stage, pipeline, status, value)
    related = [
        '],"additional_data":{"pagination":{"start":0,"limit":100,"more_items_in_collection":false}},'
        '"related_objects":{"deal":{"', _int_text(v.native_int), '":{"id":', _int_text(v.native_int),
        ',"title":', _jstr(v.column("title")), ',"status":', _jstr(status.astype(object)),
        ',"value":', _plain_number(v.deals["amount"].to_numpy(float)), ',"currency":', _jstr(v.column("currency")),
        ',"stage_id":', _int_text(stage_id[v.last_open_g]), ',"pipeline_id":', _int_text(v.deal_pipe + 1),
        '}},"user":{"', _int_text(user_id), '":{"id":', _int_text(user_id), ',"name":', _jstr(v.column("owner")),
        ',"has_pic":0,"pic_hash":null,"active_flag":true}}}}',
    ]
    written.append(_write_json_pages(
        inbox / "pipedrive_deals_flow.json", bounds, items,
        lambda i: '{"success":true,"data":[',
        lambda i: pc.binary_join_element_wise(
            *[part if isinstance(part, str) else part.take(pa.array(i)) for part in related], "")))

    # Deals export: a closed deal keeps its last open stage in "Deal - Stage" and gets a status
    n = v.n
    local = "%Y-%m-%d %H:%M:%S"
    status = np.where(kind[v.deal_g] == "won", "Won", np.where(kind[v.deal_g] == "lost", "Lost", "Open")).astype(object)
    won, lost = status == "Won", status == "Lost"
    stage_names = v.stages["stage"].to_numpy(object)
    amount = v.deals["amount"].to_numpy(float)
    empty = _nulls(n)
    columns = [
        ("Deal - ID", _int_text(v.native_int)),
        ("Deal - Title", _text(v.column("title"))),
        ("Deal - Creator", _text(v.column("owner"))),
        ("Deal - Owner", _text(v.column("owner"))),
        ("Deal - Value", _plain_number(amount)),
        ("Deal - Currency", _text(v.column("currency"))),
        ("Deal - Weighted value", _plain_number(amount * v.stages["crm_probability"].fillna(0).to_numpy(float)[v.last_open_g])),
        ("Deal - Probability", empty),
        ("Deal - Organization", empty),
        ("Deal - Pipeline", _text(v.column("pipeline"))),
        ("Deal - Contact person", empty),
        ("Deal - Stage", _take(stage_names, v.last_open_g)),
        ("Deal - Label", empty),
        ("Deal - Status", _text(status)),
        ("Deal - Deal created", _times(v.created, local, tz)),
        ("Deal - Update time", _times(v.last_change, local, tz)),
        ("Deal - Last stage change", _times(np.where(v.last_open_t > v.created, v.last_open_t, -1), local, tz)),
        ("Deal - Next activity date", empty),
        ("Deal - Won time", _times(np.where(won, v.closed, -1), local, tz)),
        ("Deal - Lost time", _times(np.where(lost, v.closed, -1), local, tz)),
        ("Deal - Deal closed on", _times(np.where(won | lost, v.closed, -1), local, tz)),
        ("Deal - Lost reason", _text(np.where(lost, v.column("lost_reason"), None))),
        ("Deal - Visible to", _constant("Owner's visibility group", n)),
        ("Deal - Total activities", _int_text(np.zeros(n, np.int64))),
        ("Deal - Expected close date", _days(v.expected_day)),
        ("Deal - Source channel", _text(v.column("lead_source"))),
        ("Deal - Source origin", _constant("Manually created", n)),
        ("Deal - Segment", _text(v.column("segment"))),
        ("Deal - Region", _text(v.column("region"))),
        ("Deal - Product", _text(v.column("product"))),
    ]
    written.append(_write_csv(inbox / f"deals-{v.company.end_date:%Y%m%d}.csv", columns))
    return written, v.native_int.astype(str)


_WRITERS = {"amocrm": _amocrm, "bitrix24": _bitrix24, "hubspot": _hubspot, "salesforce": _salesforce,
            "pipedrive": _pipedrive}


# ---------------------------------------------------------------------------- tables no CRM exports

def _write_reference_tables(v: _View, inbox: Path, crm: str) -> list[Path]:
    """targets, fx_rates and marketing_spend as canonical CSVs, named as the CRM names things."""
    targets = v.company.targets.copy()
    spend = v.company.marketing_spend.copy()
    if crm == "bitrix24":  # pipelines by name (the category list names them), sources by id
        spend["lead_source"] = spend["lead_source"].map(_bitrix_sources(v))
    elif crm == "salesforce":
        targets = _salesforce_targets(targets, v.company.fx_rates)
    con = duckdb.connect()
    try:
        out = []
        for name, frame, columns in (("targets.csv", targets, TARGETS_COLUMNS),
                                     ("fx_rates.csv", v.company.fx_rates, FX_RATES_COLUMNS),
                                     ("marketing_spend.csv", spend, MARKETING_SPEND_COLUMNS)):
            write_csv(con, frame, columns, inbox / name)
            out.append(inbox / name)
    finally:
        con.close()
    return out


def _salesforce_targets(targets: pd.DataFrame, fx: pd.DataFrame) -> pd.DataFrame:
    """Salesforce has one pipeline: the pipeline targets summed per period in the corporate
    currency, each converted at its period's first day's rate (the nearest day of the history)."""
    rows = targets[targets["scope_owner"].isna() & targets["scope_segment"].isna()].copy()
    period = rows["period"].astype(str)
    quarter = period.str.extract(r"-Q([1-4])$")[0]
    month = period.str.extract(r"-(\d{2})$")[0].fillna(((quarter.fillna("1").astype(int) - 1) * 3 + 1)
                                                        .astype(str).str.zfill(2))
    start = pd.to_datetime(period.str[:4] + "-" + month + "-01").to_numpy("datetime64[ns]")
    rate = np.ones(len(rows))
    for ccy, group in fx[fx["quote_currency"] == SALESFORCE_CORPORATE_CURRENCY].groupby("currency"):
        group = group.sort_values("rate_date")
        dates = group["rate_date"].to_numpy("datetime64[ns]")
        sel = (rows["currency"] == ccy).to_numpy()
        # the latest rate on or before the period's first day; the first rate for earlier periods
        pos = np.clip(np.searchsorted(dates, start[sel], side="right") - 1, 0, len(dates) - 1)
        rate[sel] = group["rate"].to_numpy(float)[pos]
    rows["target_amount"] = rows["target_amount"].to_numpy(float) * rate
    out = rows.groupby("period", sort=False, as_index=False)["target_amount"].sum()
    out["target_amount"] = out["target_amount"].round(2)
    out["scope_pipeline"] = SALESFORCE_PIPELINE
    out["scope_owner"] = None
    out["scope_segment"] = None
    out["currency"] = SALESFORCE_CORPORATE_CURRENCY
    return out[TARGETS_COLUMNS]


# ---------------------------------------------------------------------------- truth

def _write_export_truth(company: SimulatedCompany, truth_dir: Path, crm: str, written: list[Path],
                        deal_keys: np.ndarray, with_truth: bool) -> None:
    truth_dir.mkdir(parents=True, exist_ok=True)
    if with_truth:  # write_canonical wrote these for the canonical format
        con = duckdb.connect()
        try:
            write_csv(con, company.truth, list(company.truth.columns), truth_dir / "truth.csv")
        finally:
            con.close()
        _write_json(truth_dir / "params.json", company.params)
    keys = pd.DataFrame({"native_id": company.deals["native_id"].astype(str).to_numpy(object),
                         "deal_key": deal_keys})
    con = duckdb.connect()
    try:
        write_csv(con, keys, ["native_id", "deal_key"], truth_dir / "deal_keys.csv")
    finally:
        con.close()
    _write_json(truth_dir / "export.json", {"crm": crm, "timezone": EXPORT_TIMEZONES[crm],
                                            "files": [p.name for p in written]})
