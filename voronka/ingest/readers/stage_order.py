"""Stage order when an export carries no stage list: a pipeline_stages frame inferred from what
the deals (and their stage events) carry, with a warning per pipeline saying how.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from voronka.ingest.readers.frames import stages_frame
from voronka.ingest.readers.rows import norm


def infer_stages(file: str, pipeline: pd.Series, stage: pd.Series, kind: pd.Series, *,
                 created_at: pd.Series | None = None, probability: pd.Series | None = None,
                 typical: list[str] | None = None, events: pd.DataFrame | None = None,
                 how: str | None = None, terminal: tuple = (),
                 name_kind: Callable | None = None) -> tuple[pd.DataFrame, list[str]]:
    """A pipeline_stages frame built from what the deals carry, and one warning per pipeline
    naming the stages taken as won and lost.

    Kind of a stage: the most common kind of its deals (won/lost/open). Order of the open stages:
    the order deals move through them when `events` (deal_key, pipeline, stage, entered_at) are
    given; else the median CRM probability; else the deals' median age (older deals sit in later
    stages). Stages named in `typical` (a CRM's default pipeline) keep that order among the
    slots they hold. Won stages come after the open ones, lost stages last. `terminal`:
    (stage, kind) pairs every pipeline of this CRM has, added when no deal is in them.
    `name_kind`: Series of stage names -> kinds, for stages only events know."""
    frame = pd.DataFrame({"pipeline": pipeline.to_numpy(), "stage": stage.to_numpy(),
                          "kind": kind.to_numpy()})
    if created_at is not None:
        frame["age_key"] = -pd.to_datetime(created_at).astype("int64").to_numpy()
    if probability is not None:
        frame["probability"] = probability.to_numpy()
    frame = frame.dropna(subset=["pipeline", "stage"])
    extra_order = None
    if events is not None and len(events):
        ev = events[events["deal_key"].notna() & events["entered_at"].notna()]
        ev = ev.sort_values(["deal_key", "entered_at"]).copy()
        ev["rank"] = ev.groupby("deal_key").cumcount()
        ev["size"] = ev.groupby("deal_key")["rank"].transform("max").clip(lower=1)
        ev["pos"] = ev["rank"] / ev["size"]
        extra_order = ev.groupby(["pipeline", "stage"])["pos"].mean()
        seen = events[["pipeline", "stage"]].dropna().drop_duplicates()
        known = frame[["pipeline", "stage"]].drop_duplicates()
        extra = seen.merge(known, how="left", indicator=True)
        extra = extra[extra["_merge"] == "left_only"][["pipeline", "stage"]]
        if len(extra):
            kinds = name_kind(extra["stage"]) if name_kind is not None else "open"
            frame = pd.concat([frame, extra.assign(kind=kinds)], ignore_index=True)
    rows, warnings = [], []
    typical_rank = {norm(s): i for i, s in enumerate(typical or [])}
    for pipe, group in frame.groupby("pipeline", sort=True):
        stats = group.groupby("stage").agg(
            kind=("kind", lambda k: k.value_counts().idxmax() if k.notna().any() else "open"),
            n=("kind", "size"),
        )
        if "age_key" in group:
            stats["age_key"] = group.groupby("stage")["age_key"].median()
        if "probability" in group:
            stats["probability"] = group.groupby("stage")["probability"].median()
        if extra_order is not None:
            stats["pos"] = extra_order.loc[pipe].reindex(stats.index) if pipe in extra_order.index.get_level_values(0) \
                else np.nan
        keys = []
        for key in ("pos", "probability", "age_key"):
            if key in stats and stats[key].notna().any():
                keys.append(key)
        open_stages = stats[stats["kind"] == "open"].copy()
        open_stages["name_key"] = open_stages.index
        order = list(open_stages.sort_values(keys + ["name_key"] if keys else ["name_key"],
                                             na_position="last").index)
        slots = [i for i, s in enumerate(order) if norm(s) in typical_rank]
        known = sorted((order[i] for i in slots), key=lambda s: typical_rank[norm(s)])
        for i, s in zip(slots, known):
            order[i] = s
        for name, kind_ in terminal:
            if not (stats["kind"] == kind_).any() and name not in stats.index:
                stats.loc[name, ["kind", "n"]] = [kind_, 0]
        won = sorted(stats.index[stats["kind"] == "won"])
        lost = sorted(stats.index[stats["kind"] == "lost"])
        unknown = sorted(stats.index[stats["kind"] == "unknown"])  # closed, outcome not known
        for i, s in enumerate(order + won + unknown + lost, start=1):
            prob = stats.loc[s, "probability"] if "probability" in stats else np.nan
            rows.append((pipe, s, i, stats.loc[s, "kind"], prob))
        basis = how or ("the order deals move through them" if "pos" in keys else
                        "the CRM probabilities" if "probability" in keys else
                        "the age of the deals in each stage")
        warnings.append(
            f"{file}: no stage list for pipeline '{pipe}'; stage order inferred from {basis}; "
            f"taken as won: {', '.join(won) or 'none'}; taken as lost: {', '.join(lost) or 'none'}"
            + (f"; closed with unknown outcome: {', '.join(unknown)}" if unknown else ""))
    if not rows:
        return stages_frame([], [], [], [], [], inferred=True), warnings
    p, s, o, k, pr = zip(*rows)
    return stages_frame(p, s, o, k, pr, inferred=True), warnings

