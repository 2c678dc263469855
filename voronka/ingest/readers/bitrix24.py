"""Bitrix24: REST `crm.deal.list`, `crm.stagehistory.list`, `crm.status.list` and the deal
category list (`crm.category.list` with entityTypeId 2, or the older `crm.dealcategory.list` and
`crm.dealcategory.default.get`) — JSON as the API returns it, or the same fields as CSV — and the
UI export with Russian headers. Over 500 lines: its six formats share the category and status
look-ups that name every deal's pipeline and stage; the UI export reader, the one part that
could stand alone, uses seven of this module's names, and its place in FORMATS decides
detection ties.

Pipelines are deal categories. The REST exports name them only by `CATEGORY_ID` ("0" is the
default one; a `C<n>:` stage prefix also gives it): with a category list in the same folder each
id is replaced by the category's name (a category missing from the list keeps its id, with a
warning), else the pipeline is the id. Stages are named by `crm.status.list` NAME when that list
is given (in the same folder), else by the stage id without its `C<n>:` prefix (`NEW`, `WON`,
`UC_3XK2`). Outcome: `STAGE_SEMANTIC_ID` P/S/F (open/won/lost); without it the status list's
SEMANTICS, then the default ids (WON; LOSE, APOLOGY) and names. The UI export names its stages
and, when it has a `Направление`/`Воронка` column, its pipelines; its times are local (the
`timezone` setting).

A category list loaded as a file of its own gives the stage lists of its pipelines: the
crm.status.list beside it, named by the categories (the same rows the status list loads, so the
two never conflict). Each category is one row of the file, loaded with its pipeline's stages (the
stages after its first are rows derived from it); a category the status list has no stages for
is rejected. Without a crm.status.list beside it the file is refused: it names pipelines only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from voronka.errors import ExportFormatError
from voronka.ingest.readers import jsonfile, parsers
from voronka.ingest.readers.formats import Format, companion_files, records_from_json
from voronka.ingest.readers.frames import (
    deals_frame,
    empty_events,
    events_frame,
    finish,
    newest,
    stages_frame,
)
from voronka.ingest.readers.rawtable import RawTable
from voronka.ingest.readers.rows import Context, Rows, map_unique, norm
from voronka.ingest.readers.stage_order import infer_stages

SOURCE = "bitrix24"
DEFAULT_CATEGORY = "0"
SEMANTICS = {"P": "open", "S": "won", "F": "lost"}
DEFAULT_IDS = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE"]
WON_IDS, LOST_IDS = {"WON"}, {"LOSE", "APOLOGY"}
DEFAULT_NAMES = ["Новая", "Подготовка документов", "Счёт на предоплату", "Счет на предоплату",
                 "В работе", "Финальный счёт", "Финальный счет"]
WON_NAMES = {norm(n) for n in ("Сделка успешна", "Успешная сделка", "Сделка заключена")}
LOST_NAMES = {norm(n) for n in ("Сделка провалена", "Анализ причины провала", "Провалена")}
_PREFIX = re.compile(r"^C(\d+):")
DEAL_ENTITY_TYPE = "2"  # crm.category.list entityTypeId of deals
# Every field of crm.dealcategory.list (crm.dealcategory.fields); its records have no others.
LEGACY_CATEGORY_FIELDS = {"ID", "NAME", "SORT", "IS_LOCKED", "CREATED_DATE"}


def _as_table(loaded, ctx: Context, *paths) -> RawTable:
    if isinstance(loaded, RawTable):
        return loaded
    records = records_from_json(loaded.data, *paths) or []
    return jsonfile.table_from_records(loaded.path, records)


def _kind_by_id(stage_ids: pd.Series) -> pd.Series:
    return map_unique(stage_ids.fillna(""), _kind_of_ids)


def _kind_of_ids(stage_ids: pd.Series) -> pd.Series:
    bare = stage_ids.fillna("").str.replace(_PREFIX, "", regex=True).str.upper()
    kind = pd.Series(None, index=stage_ids.index, dtype=object)
    kind[bare.isin(WON_IDS)] = "won"
    kind[bare.isin(LOST_IDS)] = "lost"
    return kind


def _kind_by_name(names: pd.Series) -> pd.Series:
    return map_unique(names.fillna(""), _kind_of_names)


def _kind_of_names(names: pd.Series) -> pd.Series:
    n = names.map(norm)
    kind = pd.Series(None, index=names.index, dtype=object)
    kind[n.isin(WON_NAMES)] = "won"
    kind[n.isin(LOST_NAMES)] = "lost"
    return kind


def _category(stage_ids: pd.Series, categories: pd.Series | None) -> pd.Series:
    from_prefix = stage_ids.fillna("").str.extract(_PREFIX)[0]
    cat = categories if categories is not None else pd.Series(None, index=stage_ids.index, dtype=object)
    return cat.fillna(from_prefix).fillna(DEFAULT_CATEGORY).astype(str)


# --------------------------------------------------------------------------------------------
# crm.status.list


def _status_table(table: RawTable, ctx: Context) -> tuple[pd.DataFrame, Rows, int]:
    """Deal stages of a status list: pipeline, stage (NAME), status_id, kind, order."""
    entity_col = "ENTITY_ID" if "ENTITY_ID" in table.frame else None
    keep = table.frame[entity_col].str.match(r"^DEAL_STAGE(_\d+)?$") if entity_col else \
        pd.Series(True, index=table.frame.index)
    ignored = int((~keep).sum())
    table = RawTable(table.path, table.frame[keep].reset_index(drop=True),
                     table.row_numbers[keep.to_numpy()], table.kind, table.encoding,
                     table.delimiter, table.header)
    rows = Rows(table, ctx)
    rows.column("ENTITY_ID", required=True)
    status_col = rows.column("STATUS_ID", required=True, field="stage id")
    name_col = rows.column("NAME", required=True, field="stage")
    sort_col = rows.column("SORT")
    sem_col = rows.column("SEMANTICS")
    cat_col = rows.column("CATEGORY_ID")
    status = rows.require(status_col, "stage id")
    name = rows.require(name_col, "stage")
    sort = rows.numbers(sort_col, "stage sort", negative_ok=True)
    entity_cat = rows.raw["ENTITY_ID"].str.extract(r"^DEAL_STAGE_(\d+)$")[0]
    category = _category(status, rows.text(cat_col).fillna(entity_cat))
    sem = rows.text(sem_col).fillna("").str.upper() if sem_col else pd.Series("", index=status.index)
    rows.reject(~sem.isin(["", "P", "S", "F"]), "unknown outcome '" + sem + f"' (column {sem_col!r}; "
                "expected S, F, P or empty)")
    kind = sem.map(SEMANTICS).fillna(_kind_by_id(status)).fillna("open")
    good = rows.good
    frame = pd.DataFrame({"pipeline": category, "stage": name, "status_id": status, "kind": kind,
                          "t": kind.map({"open": 0, "won": 1, "lost": 2}), "sort": sort,
                          "pos": range(len(status)), "_row_number": table.row_numbers})[good]
    frame = frame.sort_values(["pipeline", "t", "sort", "pos"])
    frame["stage_order"] = frame.groupby("pipeline").cumcount() + 1
    return frame.sort_values("pos"), rows, ignored


def read_statuses(loaded, ctx: Context):
    table = _as_table(loaded, ctx, ("result",))
    frame, rows, ignored = _status_table(table, ctx)
    pipeline, warnings = _name_pipelines(frame["pipeline"], _categories_beside(ctx), ctx)
    out = stages_frame(pipeline, frame["stage"], frame["stage_order"], frame["kind"],
                       row_numbers=frame["_row_number"])
    if ignored:
        warnings.append(f"{ctx.file}: {ignored} statuses of other lists than deal stages (ENTITY_ID "
                        "not DEAL_STAGE…) were not read")
    return finish(ctx, SOURCE, "pipeline_stages", rows, {"pipeline_stages": out}, warnings)


def _statuses_beside(ctx: Context) -> pd.DataFrame | None:
    found = companion_files(ctx, [STATUSES])
    if not found:
        return None
    frames = [_status_table(_as_table(loaded, ctx, ("result",)), Context(loaded.path))[0]
              for _, loaded in found]
    return pd.concat(frames, ignore_index=True).drop_duplicates(["pipeline", "status_id"])


def _name_stages(stage_ids: pd.Series, category: pd.Series, statuses: pd.DataFrame | None):
    """(stage name, kind from the status list or None) for stage ids."""
    bare = stage_ids.str.replace(_PREFIX, "", regex=True)
    if statuses is None:
        return bare, pd.Series(None, index=stage_ids.index, dtype=object)
    by_id = statuses.assign(key=statuses["pipeline"] + "\x1f" + statuses["status_id"]).set_index("key")
    key = category + "\x1f" + stage_ids
    name = key.map(by_id["stage"])
    kind = key.map(by_id["kind"])
    by_name = statuses.assign(key=statuses["pipeline"] + "\x1f" + statuses["stage"]).drop_duplicates("key") \
        .set_index("key")
    name_key = category + "\x1f" + stage_ids
    named = name.isna() & name_key.isin(by_name.index)  # integrations that put names in STAGE_ID
    name = name.where(~named, stage_ids)
    kind = kind.where(~named, name_key.map(by_name["kind"]))
    return name.fillna(bare), kind


# --------------------------------------------------------------------------------------------
# crm.category.list (entityTypeId 2) / crm.dealcategory.list / crm.dealcategory.default.get


def _is_legacy_category(record) -> bool:
    return isinstance(record, dict) and {"ID", "NAME"} <= set(record) <= LEGACY_CATEGORY_FIELDS


def _category_page(page) -> tuple[str, list] | None:
    """(shape, categories) of one response: "category" for crm.category.list (`result.categories`)
    and crm.category.get (`result.category`); "dealcategory" for crm.dealcategory.list (`result`:
    records of its five fields only) and crm.dealcategory.default.get (`result`: one record)."""
    result = page.get("result") if isinstance(page, dict) else None
    if isinstance(result, dict):
        if isinstance(result.get("categories"), list):
            found = result["categories"]
            return ("category", found) if all(isinstance(r, dict) for r in found) else None
        if isinstance(result.get("category"), dict):
            return "category", [result["category"]]
        return ("dealcategory", [result]) if _is_legacy_category(result) else None
    if isinstance(result, list) and result and all(_is_legacy_category(r) for r in result):
        return "dealcategory", result
    return None


def _category_records(data) -> tuple[str, list] | None:
    """(shape, categories) of a response or of a list of pages of one shape; None if neither."""
    pages = [_category_page(p) for p in data] if isinstance(data, list) and data else [_category_page(data)]
    if None in pages or len({shape for shape, _ in pages}) != 1:
        return None
    return pages[0][0], [r for _, records in pages for r in records]


def _probe_categories(shape: str):
    def probe(data) -> bool:
        found = _category_records(data)
        return found is not None and found[0] == shape
    return probe


def _category_table(loaded, ctx: Context) -> tuple[pd.DataFrame, Rows, list[str]]:
    """Deal categories of a category list: category (the id), pipeline (the name), aligned with
    the file's rows; rows that cannot name a pipeline are rejected. A name two categories share
    is made unique with the id of the later one (a pipeline is its name)."""
    if isinstance(loaded, RawTable):
        table = loaded
    else:
        _, records = _category_records(loaded.data) or ("", [])
        table = jsonfile.table_from_records(loaded.path, records)
    rows = Rows(table, ctx)
    id_col = rows.column("ID", required=True, field="category id")
    name_col = rows.column("NAME", required=True, field="pipeline name")
    type_col = rows.column("entityTypeId", "ENTITY_TYPE_ID")
    ids = rows.require(id_col, "category id")
    whole = ids.fillna("").str.fullmatch(r"\d+")
    rows.reject(ids.notna() & ~whole,
                lambda idx: "unparseable category id '" + ids.reindex(idx).str.slice(0, 80)
                + f"' (column {id_col!r}; a category id is a whole number, like CATEGORY_ID)")
    category = ids.where(~whole, ids.str.lstrip("0").replace("", "0"))  # "007" is category 7
    name = rows.require(name_col, "pipeline name")
    if type_col:
        entity = rows.text(type_col)
        rows.reject(entity.notna() & (entity != DEAL_ENTITY_TYPE),
                    "a category of entityTypeId '" + entity.fillna("") + "', not of deals (call "
                    f"crm.category.list with entityTypeId {DEAL_ENTITY_TYPE})")
    rows.reject_duplicates(category.where(rows.good), id_col)
    good = rows.good
    warnings = []
    shared = good & name.where(good).duplicated(keep="first")
    if shared.any():
        renamed = name[shared] + " (" + category[shared] + ")"
        for i in shared.index[shared.to_numpy()]:
            warnings.append(f"{ctx.file}: category {category[i]} has the name '{name[i]}' of an earlier "
                            f"category; its pipeline is '{renamed[i]}'")
        name = name.where(~shared, renamed)
    frame = pd.DataFrame({"category": category, "pipeline": name,
                          "_row_number": table.row_numbers}, index=table.frame.index)
    return frame, rows, warnings


@dataclass(frozen=True)
class _Categories:
    names: dict  # category id -> pipeline name
    files: tuple  # the category lists beside the file


def _categories_beside(ctx: Context) -> _Categories | None:
    """The category lists in the export's folder, newest first (the newest names a category)."""
    names, files = {}, []
    for _, loaded in companion_files(ctx, [CATEGORIES, DEAL_CATEGORIES]):
        try:
            frame, rows, _ = _category_table(loaded, Context(loaded.path))
        except ExportFormatError:
            continue  # refused when it is loaded itself, with the reason
        files.append(loaded.path.name)
        for category, name in zip(frame["category"][rows.good], frame["pipeline"][rows.good]):
            names.setdefault(category, name)
    return _Categories(names, tuple(files)) if files else None


def _name_pipelines(category: pd.Series, categories: _Categories | None, ctx: Context):
    """(pipeline per row, warnings): the category's name from the list beside, else its id."""
    if categories is None:
        return category, []
    named = category.map(categories.names)
    missing = pd.unique(category[named.isna() & category.notna()])
    warnings = []
    if len(missing):
        ids = ", ".join(sorted(map(str, missing), key=lambda c: (len(c), c)))
        many = len(missing) > 1
        warnings.append(f"{ctx.file}: categor{'ies' if many else 'y'} {ids} {'are' if many else 'is'} "
                        f"not in the category list beside it ({', '.join(categories.files)}); "
                        f"{'their pipelines keep' if many else 'its pipeline keeps'} the category id")
    return named.fillna(category), warnings


def read_categories(loaded, ctx: Context):
    """A category list as a file: the stage lists of its pipelines from the crm.status.list
    beside it, named. Each category is one row, loaded as its first stage plus the others
    (marked `_derived`: not rows of the file); refused when no status list is beside it."""
    statuses = _statuses_beside(ctx)
    if statuses is None:
        raise ExportFormatError(
            "a Bitrix24 category list names pipelines only; it loads as their stage lists, which come "
            "from a crm.status.list in the same folder, and there is none: put the crm.status.list "
            "(REST crm.status.list, its DEAL_STAGE… entries) beside it (a crm.deal.list or "
            "crm.stagehistory.list in the folder takes its pipeline names from this file either way)",
            file=ctx.file)
    frame, rows, warnings = _category_table(loaded, ctx)
    listed = set(statuses["pipeline"])
    rows.reject(~frame["category"].isin(listed),
                lambda idx: "no deal stages of category " + frame["category"].reindex(idx).astype(str)
                + " in the crm.status.list beside it (ENTITY_ID DEAL_STAGE or DEAL_STAGE_<id>)")
    stages = statuses.drop(columns="_row_number").rename(columns={"pipeline": "category"}) \
        .merge(frame[rows.good], on="category").sort_values(["_row_number", "stage_order"], kind="stable")
    out = stages_frame(stages["pipeline"], stages["stage"], stages["stage_order"], stages["kind"],
                       row_numbers=stages["_row_number"])
    out["_derived"] = stages["_row_number"].duplicated().to_numpy()  # a category's stages after its first
    return finish(ctx, SOURCE, "pipeline_stages", rows, {"pipeline_stages": out}, warnings)


# --------------------------------------------------------------------------------------------
# crm.deal.list


def read_deals(loaded, ctx: Context):
    table = _as_table(loaded, ctx, ("result",))
    rows = Rows(table, ctx)
    id_col = rows.column("ID", required=True, field="native_id")
    stage_col = rows.column("STAGE_ID", required=True, field="current_stage")
    created_col = rows.column("DATE_CREATE", required=True, field="created_at")
    cat_col = rows.column("CATEGORY_ID")
    sem_col = rows.column("STAGE_SEMANTIC_ID")
    closed_flag_col = rows.column("CLOSED")
    close_col = rows.column("CLOSEDATE")
    modified_col = rows.column("DATE_MODIFY")
    native = rows.require(id_col, "native_id")
    stage_id = rows.require(stage_col, "current_stage")
    category = _category(stage_id, rows.text(cat_col))
    created = rows.timestamps(created_col, "created_at")
    amount = rows.numbers(rows.column("OPPORTUNITY"), "amount")
    close_date = rows.dates(close_col, "expected_close_date")
    close_ts = rows.timestamps(close_col, "closed_at", future=False)
    modified, _ = parsers.parse_timestamps(rows.raw[modified_col], ctx.timezone) if modified_col \
        else (None, None)
    closed_flag = rows.bools(closed_flag_col, "CLOSED") if closed_flag_col else None

    statuses = _statuses_beside(ctx)
    categories = _categories_beside(ctx)
    stage, listed_kind = _name_stages(stage_id.fillna(""), category, statuses)
    sem = rows.text(sem_col).fillna("").str.upper() if sem_col else pd.Series("", index=stage.index)
    rows.reject(~sem.isin(["", "P", "S", "F"]), "unknown outcome '" + sem
                + f"' (column {sem_col!r}; expected P, S or F)")
    kind = sem.map(SEMANTICS).fillna(listed_kind).fillna(_kind_by_id(stage_id)).fillna(_kind_by_name(stage))
    if closed_flag is not None:
        # Closed (CLOSED=Y) in a stage that is neither won nor lost and has no semantic: loaded as
        # closed with outcome unknown (voronka.yaml stage_outcomes settles it).
        # (a custom final stage the status list gives no semantics reads as open there).
        closed = (closed_flag == True).fillna(False)  # noqa: E712 (nullable boolean)
        kind = kind.where(~closed | kind.isin(["won", "lost"]), "unknown")
    outcome = kind.fillna("open")
    # A closed deal's CLOSEDATE is its close; without one, its last modification.
    closed_at = close_ts.where(close_ts.notna(), modified if modified is not None else close_ts)
    rows.reject_future(closed_at.where(outcome != "open"), "closed_at", close_col)
    rows.reject_duplicates(native, id_col)
    good = rows.good.to_numpy()
    pipeline, warnings = _name_pipelines(category.where(rows.good), categories, ctx)
    deals = deals_frame(
        SOURCE, rows,
        native_id=native, pipeline=pipeline, title=rows.text(rows.column("TITLE")),
        owner=rows.text(rows.column("ASSIGNED_BY_ID")), lead_source=rows.text(rows.column("SOURCE_ID")),
        amount=amount, currency=rows.text_or(rows.column("CURRENCY_ID"), ctx.currency),
        created_at=created, expected_close_date=close_date, closed_at=closed_at.where(outcome != "open"),
        outcome=outcome, current_stage=stage,
        exported_at=newest(created, modified, mask=good),
    )
    return _with_stages(ctx, rows, deals, statuses, categories, warnings, typical=DEFAULT_IDS,
                        terminal=(("WON", "won"), ("LOSE", "lost")))


def _with_stages(ctx, rows, deals, statuses, categories, warnings, typical, terminal=()):
    frames = {"deals": deals}
    warnings = list(warnings)
    if statuses is not None:
        pipeline, _ = _name_pipelines(statuses["pipeline"], categories, ctx)
        frames["pipeline_stages"] = stages_frame(pipeline, statuses["stage"], statuses["stage_order"],
                                                 statuses["kind"])
    elif len(deals):
        inferred, inferred_warnings = infer_stages(
            ctx.file, deals["pipeline"], deals["current_stage"], deals["outcome"],
            created_at=deals["created_at"], typical=typical, terminal=terminal)
        frames["pipeline_stages"] = inferred
        warnings += inferred_warnings
    return finish(ctx, SOURCE, "deals", rows, frames, warnings)


# --------------------------------------------------------------------------------------------
# crm.stagehistory.list


def read_history(loaded, ctx: Context):
    table = _as_table(loaded, ctx, ("result", "items"), ("items",), ("result",))
    rows = Rows(table, ctx)
    if not len(table.frame):
        return finish(ctx, SOURCE, "stage_events", rows, {"stage_events": empty_events()})
    owner_col = rows.column("OWNER_ID", required=True, field="deal id")
    stage_col = rows.column("STAGE_ID", required=True, field="stage")
    time_col = rows.column("CREATED_TIME", required=True, field="entered_at")
    type_col = rows.column("TYPE_ID")
    cat_col = rows.column("CATEGORY_ID")
    id_col = rows.column("ID")
    for c in ("STAGE_SEMANTIC_ID", "ENTITY_TYPE_ID", "OWNER_TYPE_ID"):
        rows.column(c)
    owner = rows.require(owner_col, "deal id")
    stage_id = rows.require(stage_col, "stage")
    entered = rows.timestamps(time_col, "entered_at", required=True)
    type_id = rows.text(type_col).fillna("2") if type_col else pd.Series("2", index=owner.index)
    rows.reject(~type_id.isin(["1", "2", "3"]), "unknown TYPE_ID '" + type_id + "' (expected 1, 2 or 3)")
    category = _category(stage_id.fillna(""), rows.text(cat_col))
    stage, _ = _name_stages(stage_id.fillna(""), category, _statuses_beside(ctx))
    if id_col:
        rows.reject_duplicates(rows.text(id_col), id_col)
    good = rows.good.to_numpy()
    pipeline, warnings = _name_pipelines(category[good], _categories_beside(ctx), ctx)
    origin = type_id.map({"1": "created"}).fillna("history")
    ev = events_frame(SOURCE + ":" + owner[good], pipeline, stage[good], entered[good],
                      origin[good], table.row_numbers[good])
    return finish(ctx, SOURCE, "stage_events", rows, {"stage_events": ev}, warnings)


# --------------------------------------------------------------------------------------------
# UI export (Russian headers)


def read_ui_deals(loaded: RawTable, ctx: Context):
    rows = Rows(loaded, ctx)
    id_col = rows.column("ID", required=True, field="native_id")
    stage_col = rows.column("Стадия сделки", "Стадия", required=True, field="current_stage")
    created_col = rows.column("Дата создания", required=True, field="created_at")
    pipeline_col = rows.column("Направление", "Воронка")
    expected_col = rows.column("Предполагаемая дата закрытия", "Дата завершения")
    closed_col = rows.column("Дата закрытия")
    modified_col = rows.column("Дата изменения")
    closed_flag_col = rows.column("Закрыта", "Сделка закрыта")
    native = rows.require(id_col, "native_id")
    stage = rows.require(stage_col, "current_stage")
    categories = _categories_beside(ctx)
    default = categories.names.get(DEFAULT_CATEGORY, DEFAULT_CATEGORY) if categories else DEFAULT_CATEGORY
    pipeline = rows.text(pipeline_col).fillna(default) if pipeline_col else \
        pd.Series(default, index=stage.index)
    created = rows.timestamps(created_col, "created_at")
    amount = rows.numbers(rows.column("Сумма", "Сумма сделки"), "amount")
    expected = rows.dates(expected_col, "expected_close_date")
    expected_ts = rows.timestamps(expected_col, "closed_at", future=False)
    closed_ts = rows.timestamps(closed_col, "closed_at") if closed_col else None
    modified, _ = parsers.parse_timestamps(rows.raw[modified_col], ctx.timezone) if modified_col \
        else (None, None)
    closed_flag = rows.bools(closed_flag_col, "Закрыта") if closed_flag_col else None

    statuses = _statuses_beside(ctx)
    kind = pd.Series(None, index=stage.index, dtype=object)
    if statuses is not None:
        by_name = statuses.drop_duplicates(["stage"]).set_index("stage")["kind"]
        kind = stage.map(by_name)
    kind = kind.fillna(_kind_by_name(stage))
    if closed_flag is not None:  # closed in a stage not known as won or lost: outcome unknown
        closed = (closed_flag == True).fillna(False)  # noqa: E712 (nullable boolean)
        kind = kind.where(~closed | kind.isin(["won", "lost"]), "unknown")
    outcome = kind.fillna("open")
    closed_at = closed_ts if closed_ts is not None else expected_ts
    if modified is not None:
        closed_at = closed_at.where(closed_at.notna(), modified)
    rows.reject_future(closed_at.where(outcome != "open"), "closed_at", closed_col or expected_col)
    rows.reject_duplicates(native, id_col)
    good = rows.good.to_numpy()
    deals = deals_frame(
        SOURCE, rows,
        native_id=native, pipeline=pipeline, title=rows.text(rows.column("Название сделки")),
        owner=rows.text(rows.column("Ответственный")), lead_source=rows.text(rows.column("Источник")),
        amount=amount, currency=rows.text_or(rows.column("Валюта"), ctx.currency),
        created_at=created, expected_close_date=expected, closed_at=closed_at.where(outcome != "open"),
        outcome=outcome, current_stage=stage, exported_at=newest(created, modified, mask=good),
    )
    return _with_stages(ctx, rows, deals, statuses, categories, [], typical=DEFAULT_NAMES,
                        terminal=(("Сделка успешна", "won"), ("Сделка провалена", "lost")))


# --------------------------------------------------------------------------------------------


def _probe(*required):
    def probe(data) -> bool:
        records = records_from_json(data, ("result", "items"), ("result",), ("items",))
        return bool(records) and all(k in records[0] for k in required)
    return probe


STATUSES = Format(
    "bitrix24.statuses", SOURCE, "Bitrix24 crm.status.list", read_statuses,
    signature=("ENTITY_ID", "STATUS_ID", "NAME", "SORT", "SEMANTICS", "NAME_INIT", "SYSTEM", "CATEGORY_ID"),
    min_match=3, probe=_probe("ENTITY_ID", "STATUS_ID", "NAME"),
    head_needles=('"ENTITY_ID"', '"STATUS_ID"'),
)
HISTORY = Format(
    "bitrix24.stagehistory", SOURCE, "Bitrix24 crm.stagehistory.list", read_history,
    signature=("ID", "TYPE_ID", "OWNER_ID", "CREATED_TIME", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "STAGE_ID"),
    min_match=4, probe=_probe("OWNER_ID", "STAGE_ID", "CREATED_TIME"),
)
DEALS = Format(
    "bitrix24.deals", SOURCE, "Bitrix24 crm.deal.list", read_deals,
    signature=("ID", "TITLE", "STAGE_ID", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "ASSIGNED_BY_ID",
               "OPPORTUNITY", "CURRENCY_ID", "BEGINDATE", "CLOSEDATE", "CLOSED", "DATE_CREATE",
               "DATE_MODIFY", "SOURCE_ID"),
    min_match=4, probe=_probe("ID", "STAGE_ID", "DATE_CREATE"),
)
UI_DEALS = Format(
    "bitrix24.ui_deals", SOURCE, "Bitrix24 deals export (UI, Russian headers)", read_ui_deals,
    signature=("ID", "Название сделки", "Стадия сделки", "Сумма", "Валюта", "Ответственный",
               "Дата создания", "Предполагаемая дата закрытия", "Источник", "Дата изменения"),
    min_match=4,
)
# A category CSV is told from a status list or a deal list by the columns it does not have.
_NOT_CATEGORIES = ("ENTITY_ID", "STATUS_ID", "STAGE_ID", "OWNER_ID", "TITLE")
CATEGORIES = Format(
    "bitrix24.categories", SOURCE, "Bitrix24 crm.category.list (deal pipelines)", read_categories,
    signature=("id", "name", "sort", "entityTypeId", "isDefault"), min_match=3,
    excludes=_NOT_CATEGORIES, probe=_probe_categories("category"), head_needles=('"categor',),
)
DEAL_CATEGORIES = Format(
    "bitrix24.dealcategories", SOURCE, "Bitrix24 crm.dealcategory.list (deal pipelines)",
    read_categories, signature=("ID", "NAME", "SORT", "IS_LOCKED", "CREATED_DATE"), min_match=3,
    excludes=_NOT_CATEGORIES, probe=_probe_categories("dealcategory"), head_needles=('"NAME"',),
)
FORMATS = [STATUSES, HISTORY, DEALS, UI_DEALS, CATEGORIES, DEAL_CATEGORIES]
