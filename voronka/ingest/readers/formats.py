"""The format registry, detection and companion files.

A `Format` is one kind of file a reader understands, recognised by its header (tables) or a probe
(JSON documents); `readers.detect` picks among every reader's `FORMATS`. `companion_files` finds
the files beside an export that hold what it lacks (a stage list, the pipelines' names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from voronka.errors import ExportFormatError
from voronka.ingest.readers import textfile
from voronka.ingest.readers.rawtable import RawJson, RawTable
from voronka.ingest.readers.rows import Context, norm


@dataclass(frozen=True)
class Format:
    """One kind of file a reader understands. Tables are recognised by their header
    (`signature` columns, at least `min_match` of them, and none of `excludes`); JSON documents
    by `probe`."""

    name: str  # e.g. "amocrm.deals"
    source: str  # the source_system / read_export source name
    label: str  # for messages: "amoCRM deals export"
    read: Callable  # (RawTable | RawJson, Context) -> ParsedExport
    signature: tuple = ()
    min_match: int = 3
    probe: Callable | None = None  # JSON: (data) -> bool
    head_needles: tuple = ()  # JSON: substrings its first 64 KB holds (cheap companion test)
    excludes: tuple = ()  # columns a table of this format never has

    def table_score(self, columns: list[str]) -> tuple[int, float]:
        have = {norm(c) for c in columns}
        sig = [norm(c) for c in self.signature]
        matched = sum(1 for c in sig if c in have)
        return matched, matched / max(1, len(sig))

    def matches_table(self, columns: list[str]) -> bool:
        matched, _ = self.table_score(columns)
        excluded = {norm(c) for c in self.excludes} & {norm(c) for c in columns}
        return bool(self.signature) and matched >= min(self.min_match, len(self.signature)) and not excluded


def records_from_json(data, *paths: tuple) -> list | None:
    """The first list of objects found at one of the key paths (e.g. ('result', 'items')); a
    list of pages (each a dict) is concatenated."""
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        pages = [records_from_json(d, *paths) for d in data]
        if all(p is not None for p in pages):
            return [r for p in pages for r in p]
    for path in paths:
        node = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list) and all(isinstance(r, dict) for r in node):
            return node
    return None


def companion_files(ctx: Context, formats: list[Format]) -> list[tuple[Format, RawTable | RawJson]]:
    """Files beside the export (or ctx.companions) that are of one of `formats`, loaded.

    A deals export says only which stage a deal is in; the stage list and its order come from
    another export of the same CRM (pipelines JSON, crm.status.list, OpportunityStage.csv)
    dropped in the same folder. Newest file first."""
    if ctx.companions is not None:
        candidates = [Path(p) for p in ctx.companions]
    else:
        folder = ctx.path.parent
        try:
            candidates = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                          and p.resolve() != ctx.path.resolve()]
        except OSError:
            candidates = []
    found = []
    for p in sorted(candidates, key=lambda q: (-q.stat().st_mtime, q.name)):
        fmt = quick_detect(p, formats)
        if fmt is None:
            continue
        try:
            loaded = textfile.load(p)
        except ExportFormatError:
            continue
        if isinstance(loaded, RawJson) and fmt.probe is not None and not fmt.probe(loaded.data):
            continue
        if isinstance(loaded, RawTable) and not fmt.matches_table(loaded.columns):
            continue
        found.append((fmt, loaded))
    return found


def quick_detect(path: Path, formats: list[Format]) -> Format | None:
    """Which of `formats` a file is, from its first 64 KB only (None if none or unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(textfile.SNIFF_BYTES)
        kind = textfile.sniff_kind(path, head)
        if kind not in ("json", "text"):
            return None
        text = textfile._decode(head, path, sample=True)[0].lstrip("\ufeff")
    except (ExportFormatError, OSError):
        return None
    if kind == "json":
        for fmt in formats:
            if fmt.head_needles and all(n in text for n in fmt.head_needles):
                return fmt
        return None
    line = text.split("\n", 1)[0].rstrip("\r")
    delim = textfile.sniff_delimiter(line)
    header = [h.strip().strip('"') for h in line.split(delim)]
    for fmt in formats:
        if fmt.signature and fmt.matches_table(header):
            return fmt
    return None
