"""Readers: one module per export format, each turning a file into a ParsedExport.

`read_export` is the single entry point the loader uses; `source="auto"` detects the format from
the file's content (never from its name alone): JSON documents by their structure, tables by
their header. A file no format recognises raises ExportFormatError naming the closest format and
the columns that did not match.

Sources: canonical, amocrm, bitrix24, hubspot, salesforce, pipedrive, mapped (any CSV/XLSX with a
YAML mapping; see docs/mapping.md). Each may be several kinds of file (`FORMATS`), e.g. amoCRM's
deals export, its API events and its API pipelines.
"""

from __future__ import annotations

from pathlib import Path

from voronka.errors import ExportFormatError
from voronka.ingest.canonical import ParsedExport
from voronka.ingest.readers import (
    amocrm,
    bitrix24,
    hubspot,
    parsers,
    pipedrive,
    salesforce,
    textfile,
)
from voronka.ingest.readers.canonical_csv import (
    detect_table,
    parse_table,
    read_canonical,
)
from voronka.ingest.readers.formats import Format
from voronka.ingest.readers.rawtable import RawJson, RawTable
from voronka.ingest.readers.rows import Context, norm

FORMATS: list[Format] = [
    *amocrm.FORMATS, *bitrix24.FORMATS, *hubspot.FORMATS, *salesforce.FORMATS, *pipedrive.FORMATS,
]
SOURCES = ("canonical", "amocrm", "bitrix24", "hubspot", "salesforce", "pipedrive", "mapped")
READERS = {
    "canonical": read_canonical,
    **{s: (lambda p, _s=s, **kw: read_export(p, _s, **kw)) for s in SOURCES if s != "canonical"},
}


def read_export(path: Path, source: str = "auto", *, mapping: Path | None = None,
                timezone: str = "UTC", currency: str | None = None,
                companions: list | None = None) -> ParsedExport:
    """Read one export file into canonical frames.

    source: "auto" (detect), or one of SOURCES. mapping: a YAML column mapping (implies
    source "mapped" when source is "auto"). timezone: the IANA zone of local times in the
    export (times with an offset keep it). currency: the ISO code for amounts of exports that do
    not carry one. companions: files holding the stage list etc. for this export; by default the
    other files in the same folder are looked at.
    """
    path = Path(path)
    if source not in ("auto", *SOURCES):
        raise ExportFormatError(f"unknown source {source!r} (known: auto, {', '.join(SOURCES)})",
                                file=path.name)
    parsers.check_timezone(timezone)
    if source == "mapped" or (source == "auto" and mapping is not None):
        from voronka.ingest.readers.mapped import read_mapped

        if mapping is None:
            raise ExportFormatError("source 'mapped' needs a mapping file (YAML)", file=path.name)
        return read_mapped(path, mapping, timezone=timezone, currency=currency)
    loaded = textfile.load(path)
    if source in ("auto", "canonical") and isinstance(loaded, RawTable):
        table = detect_table(loaded.columns)
        if table is not None:
            return parse_table(table, loaded)
        if source == "canonical":
            raise ExportFormatError("header matches no canonical table (columns: "
                                    + ", ".join(loaded.columns[:12]) + ")", file=path.name)
    fmt = detect(loaded, source)
    ctx = Context(path, timezone=timezone, currency=currency, companions=companions)
    return fmt.read(loaded, ctx)


def canonical_table(path: Path) -> str | None:
    """The canonical table a CSV file holds, told by its header alone (None if it is no canonical
    CSV), so the loader can order files without reading them all first."""
    header = textfile.header_of(path)
    return detect_table(header) if header else None


def detect_format(path: Path, source: str = "auto") -> str:
    """The name of the format of a file, e.g. 'amocrm.deals' or 'canonical.deals'."""
    loaded = textfile.load(Path(path))
    if source in ("auto", "canonical") and isinstance(loaded, RawTable):
        table = detect_table(loaded.columns)
        if table is not None:
            return f"canonical.{table}"
    return detect(loaded, source).name


def detect(loaded: RawTable | RawJson, source: str = "auto") -> Format:
    candidates = [f for f in FORMATS if source == "auto" or f.source == source]
    if isinstance(loaded, RawJson):
        for fmt in candidates:
            if fmt.probe is not None and fmt.probe(loaded.data):
                return fmt
        known = ", ".join(f.label for f in candidates if f.probe is not None)
        raise ExportFormatError(
            f"a JSON document that is no known export ({_json_shape(loaded.data)}); "
            f"known JSON exports: {known}", file=loaded.file)
    columns = loaded.columns
    if len(columns) == 1:  # a delimiter we do not read ('|'): name the format it would have been
        for odd in ("|", ":", "^"):
            if odd in columns[0]:
                columns = [c.strip() for c in columns[0].split(odd)]
                if any(f.matches_table(columns) for f in candidates):
                    best = max((f for f in candidates if f.matches_table(columns)),
                               key=lambda f: f.table_score(columns)[1])
                    raise ExportFormatError(
                        f"the header is one column holding {odd!r}; split on {odd!r} it is the header "
                        f"of a {best.label}: export it again with ',', ';' or tab as delimiter",
                        file=loaded.file)
                columns = loaded.columns
    matching = [f for f in candidates if f.matches_table(columns)]
    if matching:
        return max(matching, key=lambda f: (f.table_score(columns)[1], f.table_score(columns)[0]))
    tabular = [f for f in candidates if f.signature]
    closest = max(tabular, key=lambda f: (f.table_score(columns)[0], f.table_score(columns)[1]))
    sig = {norm(c) for c in closest.signature}
    unmatched = [c for c in columns if norm(c) not in sig]
    matched, _ = closest.table_score(columns)
    hint = ""
    if len(columns) == 1 and any(d in columns[0] for d in "|,;\t"):
        hint = " (the whole header is one column: is the delimiter something other than , ; or tab?)"
    raise ExportFormatError(
        f"no known export format matches the header{hint}; closest is {closest.label} "
        f"({matched} of its {len(closest.signature)} typical columns); columns that did not match: "
        + (", ".join(repr(c) for c in unmatched[:15]) + (" …" if len(unmatched) > 15 else "")
           if unmatched else "none")
        + "; for any other CSV/XLSX, say which column is which in a mapping: "
          "`voronka ingest --mapping M.yaml FILE` (docs/mapping.md)",
        file=loaded.file)


def _json_shape(data) -> str:
    if isinstance(data, dict):
        return "top-level keys: " + ", ".join(list(map(str, data))[:10])
    if isinstance(data, list):
        first = data[0] if data else None
        if isinstance(first, dict):
            return f"a list of {len(data)} objects with keys: " + ", ".join(list(map(str, first))[:10])
        return f"a list of {len(data)} values"
    return f"a single {type(data).__name__}"
