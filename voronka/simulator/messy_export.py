"""The messy company's files: its Bitrix24 export (what `write_native` writes, then the quirks a
deals frame cannot carry patched into the JSON pages) and its truth (messy_deals.csv, messy.json).
The company itself is simulated in voronka/simulator/messy.py."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from voronka.simulator.company import SimulatedCompany
from voronka.simulator.messy import (
    _TIME_BLOCK,
    MESSY_CRM,
    PAGE_SIZE,
    UNKNOWN_LOST_STAGE,
    UNKNOWN_WON_STAGE,
    MessyCompany,
    crm_probabilities,
)
from voronka.simulator.native_writers import write_native


def write_messy(messy: MessyCompany, inbox: Path, truth_dir: Path) -> list[Path]:
    """Write the messy company's Bitrix24 export into `inbox` and its truth into `truth_dir`.
    Returns the inbox files (the earlier deals export, if any, before the final one)."""
    from voronka.simulator.canonical_writer import write_csv

    inbox, truth_dir = Path(inbox), Path(truth_dir)
    on = set(messy.quirks)
    written = write_native(messy.final, inbox, MESSY_CRM, truth_dir)
    deal_list = inbox / "bitrix24_crm.deal.list.json"
    _patch_deals(deal_list, messy.final, messy, on)
    _patch_history(inbox / "bitrix24_crm.stagehistory.list.json", messy, on)
    if "unknown_closed_stage" in on:
        _add_custom_stages(inbox / "bitrix24_crm.status.list.json")
    if messy.earlier is not None:
        with tempfile.TemporaryDirectory(prefix=".voronka-messy-", dir=inbox.parent) as tmp:
            tmp_inbox = Path(tmp) / "inbox"
            write_native(messy.earlier, tmp_inbox, MESSY_CRM, Path(tmp) / "truth")
            source = tmp_inbox / deal_list.name
            _patch_deals(source, messy.earlier, messy, on)
            target = inbox / f"bitrix24_crm.deal.list.{messy.earlier_cut:%Y-%m-%d}.json"
            shutil.move(str(source), str(target))
            # older than the final export on disk too
            stamp = deal_list.stat().st_mtime - 60
            os.utime(target, (stamp, stamp))
        written.insert(written.index(deal_list), target)
    if "no_targets" in on:
        (inbox / "targets.csv").unlink(missing_ok=True)
        written = [p for p in written if p.name != "targets.csv"]

    import duckdb

    con = duckdb.connect()
    try:  # every deal, deleted ones included
        write_csv(con, messy.company.truth, list(messy.company.truth.columns), truth_dir / "truth.csv")
        keys = messy.deals[["native_id", "deal_key"]]
        write_csv(con, keys, ["native_id", "deal_key"], truth_dir / "deal_keys.csv")
    finally:
        con.close()
    _write_text(truth_dir / "messy_deals.csv", messy.deals.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S"))
    _write_text(truth_dir / "messy.json", json.dumps({**messy.params, "files": [p.name for p in written]},
                                                     ensure_ascii=False, indent=2) + "\n")
    export = json.loads((truth_dir / "export.json").read_text(encoding="utf-8"))
    export["files"] = [p.name for p in written]
    _write_text(truth_dir / "export.json", json.dumps(export, ensure_ascii=False) + "\n")
    return written


def _patch_deals(path: Path, company: SimulatedCompany, messy: MessyCompany, on: set) -> None:
    """The quirks a deals frame cannot carry, written into a crm.deal.list file."""
    plan = messy.plan
    probability = crm_probabilities(company.deals, messy.company, plan, on)
    pages, items = _read_pages(path)
    for rec in items:
        native = str(rec["ID"])
        p = plan.loc[native]
        closed = rec.get("CLOSED") == "Y"
        if "date_only_close" in on and closed and rec.get("CLOSEDATE"):
            rec["CLOSEDATE"] = rec["CLOSEDATE"][:10] + "T00:00:00" + rec["CLOSEDATE"][19:]
        if "created_missing" in on and p["created_missing"]:
            rec["DATE_CREATE"] = None
            rec["BEGINDATE"] = None
        if "amount_gaps" in on and p["amount_empty"] and not closed:
            rec["OPPORTUNITY"] = ""
        if "unknown_closed_stage" in on and closed and (p["unknown_won"] or p["unknown_lost"]):
            rec["STAGE_ID"] = _custom_stage_id(UNKNOWN_WON_STAGE if p["unknown_won"] else UNKNOWN_LOST_STAGE,
                                               rec.get("CATEGORY_ID"))
            rec["STAGE_SEMANTIC_ID"] = None
        if "crm_probability" in on:
            value = probability.get(native)
            rec["PROBABILITY"] = None if value is None or math.isnan(value) else str(int(value))
    _write_pages(path, pages, items, lambda page, chunk: {**page, "result": chunk})


def _patch_history(path: Path, messy: MessyCompany, on: set) -> None:
    """Stage history: none for the lost deals without history; the custom final stage's id."""
    plan = messy.plan
    no_history = set(plan.index[plan["no_history"]]) if "lost_without_history" in on else set()
    won = set(plan.index[plan["unknown_won"]]) if "unknown_closed_stage" in on else set()
    lost = set(plan.index[plan["unknown_lost"]]) if "unknown_closed_stage" in on else set()
    pages, items = _read_pages(path, ("result", "items"))
    kept = []
    for rec in items:
        owner = str(rec["OWNER_ID"])
        if owner in no_history:
            continue
        if int(rec["TYPE_ID"]) == 3 and owner in won | lost:
            rec["STAGE_ID"] = _custom_stage_id(UNKNOWN_WON_STAGE if owner in won else UNKNOWN_LOST_STAGE,
                                               rec.get("CATEGORY_ID"))
            rec["STAGE_SEMANTIC_ID"] = None
        kept.append(rec)
    _write_pages(path, pages, kept, lambda page, chunk: {**page, "result": {"items": chunk}})


# A custom final stage is a stage of the category's status list like any other (Bitrix24 gives
# every STAGE_ID an entry), with no SEMANTICS: Bitrix24 knows only success, failure and process.
_CUSTOM_STAGE_CODES = {UNKNOWN_WON_STAGE: "UC_ISSUED", UNKNOWN_LOST_STAGE: "UC_POSTPONED"}


def _custom_stage_id(stage: str, category) -> str:
    code = _CUSTOM_STAGE_CODES[stage]
    return code if str(category or "0") == "0" else f"C{category}:{code}"


def _add_custom_stages(path: Path) -> None:
    """The custom final stages in every deal category's crm.status.list, after its other stages."""
    listing = json.loads(path.read_text(encoding="utf-8"))
    statuses = listing["result"]
    categories = sorted({s["CATEGORY_ID"] for s in statuses if str(s["ENTITY_ID"]).startswith("DEAL_STAGE")})
    next_id = max(int(s["ID"]) for s in statuses) + 1
    for category in categories:
        for n, stage in enumerate(_CUSTOM_STAGE_CODES, start=1):
            statuses.append({
                "ID": str(next_id), "ENTITY_ID": "DEAL_STAGE" if str(category) == "0" else f"DEAL_STAGE_{category}",
                "STATUS_ID": _custom_stage_id(stage, category), "NAME": stage, "NAME_INIT": "",
                "SORT": str(80 + 10 * n), "SYSTEM": "N", "CATEGORY_ID": category, "COLOR": "#39A8EF",
                "SEMANTICS": None, "EXTRA": {"SEMANTICS": "process", "COLOR": "#39A8EF"}})
            next_id += 1
    listing["total"] = len(statuses)
    _write_text(path, json.dumps(listing, ensure_ascii=False))


def _read_pages(path: Path, items_at: tuple = ("result",)) -> tuple[list, list]:
    """A file of API responses (a JSON list of pages) and all its items, in order."""
    pages = json.loads(path.read_text(encoding="utf-8"))
    items = []
    for page in pages:
        node = page
        for key in items_at:
            node = node[key]
        items.extend(node)
    return pages, items


def _write_pages(path: Path, pages: list, items: list, wrap) -> None:
    """The items again as pages of PAGE_SIZE, with `next` and `total` as the API gives them."""
    template = {k: v for k, v in pages[0].items() if k not in ("next", "total", "time")} if pages else {}
    out = []
    bounds = list(range(0, len(items), PAGE_SIZE)) or [0]
    for lo in bounds:
        page = wrap(template, items[lo:lo + PAGE_SIZE])
        if lo + PAGE_SIZE < len(items):
            page["next"] = lo + PAGE_SIZE
        page["total"] = len(items)
        page["time"] = _TIME_BLOCK
        out.append(page)
    text = "[\n" + ",\n".join(json.dumps(page, ensure_ascii=False, separators=(",", ":")) for page in out) + "\n]\n"
    _write_text(path, text)


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
