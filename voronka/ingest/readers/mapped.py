"""Any CSV/XLSX with a YAML mapping: which column holds which canonical field, how dates are
written, the time zone, the stage order and which stages are won or lost, and what marks an open
deal. The format is documented in docs/mapping.md; `load_mapping` checks a mapping and says
exactly what is wrong with it (MappingError).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from voronka.errors import ExportFormatError, MappingError
from voronka.ingest.readers import parsers, textfile
from voronka.ingest.readers.frames import (
    deals_frame,
    events_frame,
    finish,
    newest,
    stages_frame,
)
from voronka.ingest.readers.rawtable import RawTable
from voronka.ingest.readers.rows import Context, Rows
from voronka.ingest.readers.stage_order import infer_stages
from voronka.ingest.readers.xlsx import read_xlsx

DEAL_FIELDS = ("native_id", "pipeline", "title", "owner", "lead_source", "segment", "region", "product",
               "amount", "currency", "created_at", "expected_close_date", "closed_at", "outcome",
               "lost_reason", "current_stage", "exported_at")
EVENT_FIELDS = ("native_id", "pipeline", "stage", "entered_at", "origin")
REQUIRED = {"deals": ("native_id", "created_at", "current_stage"),
            "stage_events": ("native_id", "stage", "entered_at")}
CONSTANT_DATES = ("created_at", "expected_close_date", "closed_at", "exported_at", "entered_at")
TOP_KEYS = {"source_system", "table", "sheet", "columns", "constants", "dates", "timezone", "decimal",
            "outcome", "null_values", "pipelines"}
DEFAULT_OUTCOMES = {"won": ["won", "win", "выиграна", "успешно", "closed won"],
                    "lost": ["lost", "loss", "проиграна", "провалена", "closed lost"],
                    "open": ["open", "открыта", "в работе", ""]}


@dataclass
class PipelineSpec:
    stages: list
    won: list
    lost: list
    probabilities: dict = field(default_factory=dict)


@dataclass
class Mapping:
    path: Path
    source_system: str
    table: str = "deals"
    sheet: str | None = None
    columns: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)
    date_format: str | None = None
    dayfirst: bool | None = None
    timezone: str | None = None
    decimal: str | None = None
    outcome_column: str | None = None
    outcome_values: dict = field(default_factory=dict)
    null_values: list = field(default_factory=list)
    pipelines: dict = field(default_factory=dict)


def _fail(path: Path, message: str):
    raise MappingError(f"mapping {Path(path).name}: {message}")


def _str_list(path, where: str, value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) or v is None for v in value):
        _fail(path, f"{where} must be a list of names")
    return ["" if v is None else str(v) for v in value]


def load_mapping(path: Path) -> Mapping:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise MappingError(f"mapping file {path} does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise MappingError(f"mapping {path.name}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        _fail(path, "expected a mapping of settings at the top level")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        _fail(path, f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    source = data.get("source_system")
    if not isinstance(source, str) or not source.strip() or ":" in source:
        _fail(path, "source_system must be a name without ':' (deal keys are <source_system>:<id>)")
    table = data.get("table", "deals")
    if table not in REQUIRED:
        _fail(path, f"table must be one of {', '.join(REQUIRED)}, not {table!r}")
    fields = DEAL_FIELDS if table == "deals" else EVENT_FIELDS
    columns = data.get("columns") or {}
    constants = data.get("constants") or {}
    for name, section in (("columns", columns), ("constants", constants)):
        if not isinstance(section, dict):
            _fail(path, f"{name} must map canonical fields to {'column names' if name == 'columns' else 'values'}")
        bad = [k for k in section if k not in fields]
        if bad:
            _fail(path, f"{name}: {bad[0]!r} is not a canonical field of {table} "
                  f"(fields: {', '.join(fields)})")
    # A constant is a value every row shares: a text, or the amount; a date differs per deal.
    for f in (f for f in constants if f in CONSTANT_DATES):
        _fail(path, f"constants: {f!r} is a date of each row, not a constant: map it to a column")
    if "amount" in constants:
        try:
            float(str(constants["amount"]).replace(",", "."))
        except ValueError:
            _fail(path, f"constants: amount must be a number, not {constants['amount']!r}")
    for f in REQUIRED[table]:
        if f not in columns and not (f in ("current_stage", "stage") and f in constants):
            _fail(path, f"columns: the required field {f!r} is not mapped to a column")
    dates = data.get("dates") or {}
    if not isinstance(dates, dict) or set(dates) - {"format", "dayfirst"}:
        _fail(path, "dates takes `format` (strftime codes such as '%d/%m/%Y %H:%M') and `dayfirst`")
    tz = data.get("timezone")
    if tz is not None:
        try:
            parsers.check_timezone(str(tz))
        except ExportFormatError as err:
            _fail(path, str(err))
    decimal = data.get("decimal")
    if decimal not in (None, ",", "."):
        _fail(path, "decimal must be ',' or '.'")
    outcome = data.get("outcome") or {}
    if not isinstance(outcome, dict) or set(outcome) - {"column", "won", "lost", "open"}:
        _fail(path, "outcome takes `column` and the lists `won`, `lost`, `open` of its values")
    if "column" in outcome and "outcome" in columns:
        _fail(path, "give the outcome column once: as columns.outcome or as outcome.column")
    outcome_column = outcome.get("column") or columns.get("outcome")
    outcome_values = {k: [v.casefold() for v in _str_list(path, f"outcome.{k}", outcome.get(k))]
                      for k in ("won", "lost", "open") if k in outcome}
    pipelines = {}
    for name, spec in (data.get("pipelines") or {}).items():
        if not isinstance(spec, dict) or "stages" not in spec or set(spec) - {"stages", "won", "lost", "probabilities"}:
            _fail(path, f"pipelines.{name} needs `stages` (open stages in order) and may give `won`, "
                  "`lost` and `probabilities`")
        probs = spec.get("probabilities") or {}
        if not isinstance(probs, dict) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in probs.values()):
            _fail(path, f"pipelines.{name}.probabilities must map stages to numbers from 0 to 1")
        p = PipelineSpec(_str_list(path, f"pipelines.{name}.stages", spec["stages"]),
                         _str_list(path, f"pipelines.{name}.won", spec.get("won")),
                         _str_list(path, f"pipelines.{name}.lost", spec.get("lost")), dict(probs))
        every = p.stages + p.won + p.lost
        if len(set(every)) != len(every):
            _fail(path, f"pipelines.{name}: a stage is listed twice")
        pipelines[str(name)] = p
    if table == "deals" and not outcome_column and not pipelines:
        _fail(path, "say how to tell won and lost deals: an outcome column (outcome.column) or "
              "pipelines with their won and lost stages")
    return Mapping(path=path, source_system=source.strip(), table=table, sheet=data.get("sheet"),
                   columns={k: str(v) for k, v in columns.items()},
                   constants={k: str(v) for k, v in constants.items()},
                   date_format=dates.get("format"), dayfirst=dates.get("dayfirst"),
                   timezone=str(tz) if tz else None, decimal=decimal,
                   outcome_column=str(outcome_column) if outcome_column else None,
                   outcome_values=outcome_values,
                   null_values=_str_list(path, "null_values", data.get("null_values")),
                   pipelines=pipelines)


def read_mapped(path: Path, mapping_path: Path, *, timezone: str = "UTC", currency: str | None = None):
    mapping = load_mapping(mapping_path)
    path = Path(path)
    loaded = read_xlsx(path, mapping.sheet) if textfile.sniff_kind(path) == "xlsx" and mapping.sheet \
        else textfile.load(path)
    if not isinstance(loaded, RawTable):
        raise ExportFormatError("a mapping reads a table (CSV or XLSX), not JSON", file=path.name)
    ctx = Context(path, timezone=mapping.timezone or timezone, currency=currency, mapping=Path(mapping_path))
    rows = Rows(loaded, ctx)
    cols = {}
    for f, col in mapping.columns.items():
        found = rows.column(col)
        if found is None:
            raise MappingError(f"mapping {mapping.path.name}: column {col!r} (for {f}) is not in "
                               f"{path.name}; {_closest(col, loaded.columns)}")
        cols[f] = found
    if mapping.outcome_column:
        found = rows.column(mapping.outcome_column)
        if found is None:
            raise MappingError(f"mapping {mapping.path.name}: outcome column {mapping.outcome_column!r} "
                               f"is not in {path.name}; {_closest(mapping.outcome_column, loaded.columns)}")
        cols["outcome"] = found
    if mapping.null_values:
        nulls = {v.casefold() for v in mapping.null_values}
        for col in set(cols.values()):
            rows.raw[col] = rows.raw[col].where(~rows.raw[col].str.casefold().isin(nulls), "")
    if mapping.table == "stage_events":
        return _read_events(mapping, rows, cols, ctx)
    return _read_deals(mapping, rows, cols, ctx)


def _closest(name: str, candidates, what: str = "headers") -> str:
    """'closest headers: 'Close Date', 'Closed'' (or the first few when none is close)."""
    candidates = [str(c) for c in candidates]
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5) or \
        difflib.get_close_matches(name.casefold(), [c.casefold() for c in candidates], n=3, cutoff=0.5)
    if close:
        return f"closest {what}: " + ", ".join(repr(c) for c in close)
    shown = ", ".join(repr(c) for c in candidates[:12])
    return f"its {what}: {shown}" + (" …" if len(candidates) > 12 else "")


def _unlisted_stages(mapping: Mapping, rows: Rows, pipeline: pd.Series, stage: pd.Series) -> None:
    """A stage the file holds that the mapping does not list for its (listed) pipeline is a mapping
    mistake (a typo, or a stage added in the CRM): one MappingError naming it, not its deals
    quarantined."""
    for name, spec in mapping.pipelines.items():
        listed = spec.stages + spec.won + spec.lost
        found = stage[(pipeline == name) & stage.notna() & rows.good]
        unlisted = found[~found.isin(listed)].value_counts()
        if len(unlisted):
            first, n = unlisted.index[0], int(unlisted.iloc[0])
            more = f" (and {len(unlisted) - 1} more stage(s))" if len(unlisted) > 1 else ""
            raise MappingError(
                f"mapping {mapping.path.name}: stage {first!r} ({n} row(s) of {rows.ctx.file}) is not "
                f"listed in pipelines.{name}{more}; {_closest(first, listed, 'listed stages')} "
                "(add it to `stages`, `won` or `lost`)")


def _value(mapping: Mapping, rows: Rows, cols: dict, f: str) -> pd.Series:
    values = rows.text(cols.get(f))
    if f in mapping.constants:
        values = values.fillna(mapping.constants[f])
    return values


def _ts(mapping, rows, cols, f, required=False):
    return rows.timestamps(cols.get(f), f, required=required, fmt=mapping.date_format, dayfirst=mapping.dayfirst)


def _read_deals(mapping: Mapping, rows: Rows, cols: dict, ctx: Context):
    native = rows.require(cols["native_id"], "native_id")
    stage = _value(mapping, rows, cols, "current_stage")
    rows.reject(stage.isna(), f"missing current_stage (column {cols.get('current_stage')!r})")
    pipeline = _value(mapping, rows, cols, "pipeline")
    if pipeline.isna().all() and "pipeline" not in cols:
        pipeline = pipeline.fillna(next(iter(mapping.pipelines), "default"))
    rows.reject(pipeline.isna(), f"missing pipeline (column {cols.get('pipeline')!r})")
    created = _ts(mapping, rows, cols, "created_at")
    closed = _ts(mapping, rows, cols, "closed_at")
    exported = _ts(mapping, rows, cols, "exported_at") if "exported_at" in cols else None
    expected = rows.dates(cols.get("expected_close_date"), "expected_close_date", fmt=mapping.date_format,
                          dayfirst=mapping.dayfirst)
    amount = rows.numbers(cols.get("amount"), "amount", decimal=mapping.decimal)
    if "amount" in mapping.constants:  # was silently ignored: every amount came out empty
        amount = amount.fillna(float(mapping.constants["amount"].replace(",", ".")))

    stage_kind = pd.Series(None, index=stage.index, dtype=object)
    for name, spec in mapping.pipelines.items():
        in_pipe = pipeline == name
        for kind, names in (("open", spec.stages), ("won", spec.won), ("lost", spec.lost)):
            stage_kind[in_pipe & stage.isin(names)] = kind
    if mapping.outcome_column:
        col = cols["outcome"]
        raw = rows.raw[col].str.casefold()
        vocab = {k: mapping.outcome_values.get(k, DEFAULT_OUTCOMES[k]) for k in ("won", "lost", "open")}
        outcome = pd.Series(None, index=stage.index, dtype=object)
        for kind in ("open", "lost", "won"):
            outcome[raw.isin(vocab[kind])] = kind
        expected_values = "; ".join(f"{k}: {', '.join(repr(v) for v in vocab[k])}" for k in vocab)
        rows.reject(outcome.isna(), "unknown outcome '" + rows.raw[col] + f"' (column {col!r}; "
                    f"expected {expected_values})")
    else:
        outcome = stage_kind
        listed = pipeline.isin(list(mapping.pipelines))
        _unlisted_stages(mapping, rows, pipeline, stage)
        rows.reject(outcome.isna() & ~listed, "unknown pipeline '" + pipeline.fillna("")
                    + "' (not in the mapping's pipelines, so its stages' outcomes are unknown)")
    rows.reject_future(closed.where(outcome != "open"), "closed_at", cols.get("closed_at"))
    rows.reject_duplicates(native, cols["native_id"])
    good = rows.good.to_numpy()
    outcome = outcome.fillna("open")
    deals = deals_frame(
        mapping.source_system, rows,
        native_id=native, pipeline=pipeline,
        **{f: _value(mapping, rows, cols, f) for f in
           ("title", "owner", "lead_source", "segment", "region", "product", "lost_reason")},
        amount=amount, currency=_value(mapping, rows, cols, "currency").fillna(ctx.currency)
        if ctx.currency else _value(mapping, rows, cols, "currency"),
        created_at=created, expected_close_date=expected, closed_at=closed.where(outcome != "open"),
        outcome=outcome, current_stage=stage,
        exported_at=exported if exported is not None else newest(created, closed, mask=good),
    )
    frames = {"deals": deals}
    warnings = []
    if mapping.pipelines:
        frames["pipeline_stages"] = _mapping_stages(mapping)
        known = set(mapping.pipelines)
        other = deals[~deals["pipeline"].isin(known)]
        if len(other):
            inferred, warnings = infer_stages(ctx.file, other["pipeline"], other["current_stage"],
                                              other["outcome"], created_at=other["created_at"])
            frames["pipeline_stages"] = pd.concat([frames["pipeline_stages"], inferred], ignore_index=True)
    elif len(deals):
        frames["pipeline_stages"], warnings = infer_stages(
            ctx.file, deals["pipeline"], deals["current_stage"], deals["outcome"], created_at=deals["created_at"])
    return finish(ctx, mapping.source_system, "deals", rows, frames, warnings)


def _mapping_stages(mapping: Mapping) -> pd.DataFrame:
    p, s, o, k, pr = [], [], [], [], []
    for name, spec in mapping.pipelines.items():
        for i, (stage, kind) in enumerate([(x, "open") for x in spec.stages] + [(x, "won") for x in spec.won]
                                          + [(x, "lost") for x in spec.lost], start=1):
            p.append(name), s.append(stage), o.append(i), k.append(kind)
            pr.append(spec.probabilities.get(stage))
    return stages_frame(p, s, o, k, pd.Series(pr, dtype=float))


def _read_events(mapping: Mapping, rows: Rows, cols: dict, ctx: Context):
    native = rows.require(cols["native_id"], "native_id")
    stage = _value(mapping, rows, cols, "stage")  # a column, or `constants: {stage: …}`
    rows.reject(stage.isna(), f"missing stage (column {cols.get('stage')!r})")
    pipeline = _value(mapping, rows, cols, "pipeline")
    if "pipeline" not in cols and pipeline.isna().all():
        pipeline = pipeline.fillna(next(iter(mapping.pipelines), "default"))
    rows.reject(pipeline.isna(), f"missing pipeline (column {cols.get('pipeline')!r})")
    entered = _ts(mapping, rows, cols, "entered_at", required=True)
    origin = _value(mapping, rows, cols, "origin").fillna("history").str.lower()
    rows.reject(~origin.isin(["history", "snapshot_diff", "created", "inferred"]),
                "invalid origin '" + origin + "' (expected history, snapshot_diff, created or inferred)")
    good = rows.good.to_numpy()
    ev = events_frame(mapping.source_system + ":" + native[good], pipeline[good], stage[good], entered[good],
                      origin[good], rows.row_numbers()[good])
    frames = {"stage_events": ev}
    if mapping.pipelines:
        frames["pipeline_stages"] = _mapping_stages(mapping)
    return finish(ctx, mapping.source_system, "stage_events", rows, frames)

