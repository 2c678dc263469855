"""One pipeline's deals and stage events, drawn in one vectorised pass (steps 1-4 of the generating
process in company.py's docstring): creation, owner and attributes, win or loss, the path through
the stages with its stays, lost reasons, expected close dates and titles. Arrays indexed by the
pipeline's local deal number; company.py assembles the pipelines into the canonical frames.
"""

from __future__ import annotations

import itertools

import numpy as np

from voronka.simulator.sampling import (
    DAY,
    _Calendar,
    _choose,
    _choose_rows,
    _Fx,
    _rng,
)
from voronka.simulator.spec import TITLE_PARTS, CompanySpec, PipelineSpec

# Event kinds inside the simulator (not exported; every exported event has origin 'history').
_VISIT, _BACK, _INTERIM_LOST, _TERMINAL = 0, 1, 2, 3
# Deal classes drawn at creation.
_UNANSWERED, _WIN, _LOSE = 0, 1, 2


def _simulate_pipeline(spec: CompanySpec, p: PipelineSpec, m: int, cal: _Calendar, fx: _Fx,
                       seed: int, stream: int) -> dict:
    """Deals and events of one pipeline, as arrays indexed by the pipeline's local deal number."""
    rng = _rng(seed, stream)
    n_open = len(p.stages)

    # 1. creation
    weights = cal.creation_weights(p, cal.days)
    day = _choose(rng, weights, m)
    second = np.floor((rng.normal(p.creation_hour_utc_mean, p.creation_hour_utc_sd, m) * 3600) % DAY)
    created = cal.seconds(cal.days)[day] + second.astype(np.int64)

    # 2. attributes and the true win probability
    history_fraction = (day + 0.5) / cal.n_days
    owner_w = np.array([o.weight for o in p.owners])
    active = np.column_stack([(history_fraction >= o.active_from) & (history_fraction < o.active_to)
                              for o in p.owners]) if m else np.zeros((0, len(p.owners)), bool)
    owner = _choose_rows(rng, active * owner_w)
    source = _choose(rng, [s.weight for s in p.lead_sources], m)
    segment = _choose(rng, [s.weight for s in p.segments], m)
    region = _choose(rng, [r.weight for r in p.regions], m)
    product = _choose(rng, [r.weight for r in p.products], m)

    owner_effect = np.array([o.skill for o in p.owners])[owner]
    source_effect = np.array([s.effect for s in p.lead_sources])[source]
    segment_effect = np.array([s.effect for s in p.segments])[segment]
    noise = rng.normal(0.0, spec.noise_sd, m)
    p_if_answered = 1 / (1 + np.exp(-(p.base_logit + owner_effect + source_effect + segment_effect + noise)))
    unanswered = rng.random(m) < p.unanswered_share
    will_win = ~unanswered & (rng.random(m) < p_if_answered)
    p_win_true = (1 - p.unanswered_share) * p_if_answered
    cls = np.where(unanswered, _UNANSWERED, np.where(will_win, _WIN, _LOSE))
    speed = np.array([s.speed for s in p.segments])[segment] * np.exp(rng.normal(0, spec.speed_sigma, m))

    # amount: lognormal in the pipeline currency, sold in the region's currency at that day's rate
    median = np.array([s.amount_median for s in p.segments])[segment]
    sigma = np.array([s.amount_sigma for s in p.segments])[segment]
    value = median * np.exp(sigma * rng.standard_normal(m))  # pipeline currency
    region_ccy = np.array([r.currency or p.currency for r in p.regions], dtype=object)
    currency = region_ccy[region]
    amount = value.copy()
    for ccy in set(region_ccy) - {p.currency}:
        sel = currency == ccy
        amount[sel] = value[sel] * fx.usd_per_unit[p.currency][day[sel]] / fx.usd_per_unit[ccy][day[sel]]
    amount = np.maximum(np.round(amount / p.amount_rounding) * p.amount_rounding, p.amount_minimum)

    # 3. paths and times
    path = _paths(spec, p, rng, cls, speed, created)
    n_events = np.bincount(path["deal"], minlength=m)
    first = np.concatenate([[0], np.cumsum(n_events)[:-1]]).astype(np.int64)
    last = first + n_events - 1
    closes_at = path["ts"][last]

    # 4. cut at the export time: the events are in time order, so what is kept is a prefix
    keep = path["ts"] <= cal.end_ts
    kept = np.bincount(path["deal"][keep], minlength=m)
    last_kept = first + kept - 1
    current = path["stage"][last_kept]
    is_closed = current > n_open
    closed_at = np.where(is_closed, path["ts"][last_kept], -1)
    outcome = np.where(current == n_open + 1, "won", np.where(current == n_open + 2, "lost", "open"))

    reason_names, final_reason, interim_reason = _lost_reasons(p, rng, cls, path["final_open"],
                                                               path["reopen_deals"], path["reopen_stage"])
    reason = np.full(m, -1)
    is_lost = current == n_open + 2
    reason[is_lost] = final_reason[is_lost]
    interim = is_lost & (path["kind"][last_kept] == _INTERIM_LOST)
    reason[interim] = interim_reason[interim]

    expected_close = _expected_close(spec, p, rng, created, segment, np.minimum(closes_at, cal.end_ts))
    title = _titles(spec, p, rng, product)

    has_back = np.zeros(m, bool)
    has_back[path["back_deals"]] = True
    reopened = np.zeros(m, bool)
    reopened[path["reopen_deals"]] = True
    return dict(
        spec=p, m=m, created=created, day=day, owner=owner, source=source, segment=segment,
        region=region, product=product, amount=amount, currency=currency, value=value,
        expected_close=expected_close, closed_at=closed_at, outcome=outcome, reason=reason,
        reason_names=reason_names, current=current, title=title, closes_at=closes_at,
        owner_effect=owner_effect, source_effect=source_effect, segment_effect=segment_effect,
        noise=noise, p_if_answered=p_if_answered, unanswered=unanswered, will_win=will_win,
        p_win_true=p_win_true, speed=speed, has_back=has_back, reopened=reopened,
        ev_deal=path["deal"][keep], ev_stage=path["stage"][keep], ev_ts=path["ts"][keep],
        n_events_total=len(path["deal"]),
    )


def _paths(spec: CompanySpec, p: PipelineSpec, rng: np.random.Generator, cls: np.ndarray,
           speed: np.ndarray, created: np.ndarray) -> dict:
    """Every deal's full stage path (before the cut) as flat arrays sorted by deal, then time.

    Stages are coded by stage_order: open 1..n, won n+1, lost n+2. Events get an ordering key
    16*stage + k so the extra moves (back, lost-and-reopened) slot in after the stage they leave.
    """
    m, n = len(cls), len(p.stages)
    won_code, lost_code = n + 1, n + 2
    engaged, wins, loses = cls != _UNANSWERED, cls == _WIN, cls == _LOSE

    final_open = np.ones(m, np.int64)
    final_open[wins] = n
    lose_rows = np.flatnonzero(loses)
    final_open[lose_rows] = 2 + _choose(rng, [s.drop_weight for s in p.stages[1:]], len(lose_rows))

    skip = np.array([s.skip_probability for s in p.stages])
    skip[0] = 0.0
    visited = (np.arange(1, n + 1) <= final_open[:, None]) & (rng.random((m, n)) >= skip)
    visited[:, 0] = True
    visited[lose_rows, final_open[lose_rows] - 1] = True  # the stage a deal is lost in was reached

    eligible = engaged & visited[:, 1:].any(axis=1)
    back_deals = np.flatnonzero(eligible & (rng.random(m) < spec.backward_share))
    back_col, back_prev = _pick_visited_stage(rng, visited, back_deals)
    reopen_deals = np.flatnonzero(eligible & (rng.random(m) < spec.reopen_share))
    reopen_col, _ = _pick_visited_stage(rng, visited, reopen_deals)
    reopen_lost = loses[reopen_deals]
    reopen_col[reopen_lost] = final_open[reopen_deals[reopen_lost]] - 1  # reopened where it was lost

    rows, cols = np.nonzero(visited)
    everyone = np.arange(m)
    parts = [
        (rows, cols + 1, 16 * (cols + 1), _VISIT),
        (back_deals, back_prev + 1, 16 * (back_col + 1) + 1, _BACK),
        (back_deals, back_col + 1, 16 * (back_col + 1) + 2, _VISIT),
        (reopen_deals, np.full(len(reopen_deals), lost_code), 16 * (reopen_col + 1) + 3, _INTERIM_LOST),
        (reopen_deals, reopen_col + 1, 16 * (reopen_col + 1) + 4, _VISIT),
        (everyone, np.where(wins, won_code, lost_code), np.full(m, 16 * won_code), _TERMINAL),
    ]
    deal = np.concatenate([a for a, *_ in parts]).astype(np.int64)
    stage = np.concatenate([b for _, b, *_ in parts]).astype(np.int64)
    key = np.concatenate([c for *_, c, _ in parts]).astype(np.int64)
    kind = np.concatenate([np.full(len(a), k, np.int8) for a, *_, k in parts])
    order = np.lexsort((key, deal))
    deal, stage, kind = deal[order], stage[order], kind[order]

    # stays: the time from each event to the next event of the same deal
    e = len(deal)
    has_next = np.zeros(e, bool)
    has_next[:-1] = deal[1:] == deal[:-1]
    next_stage = np.zeros(e, np.int64)
    next_stage[:-1] = stage[1:]
    z = rng.standard_normal(e)
    med = np.array([s.median_days for s in p.stages] + [1.0, 1.0])[stage - 1]
    sig = np.array([s.sigma for s in p.stages] + [0.0, 0.0])[stage - 1]
    days = med * np.exp(sig * z) * speed[deal]
    days = np.where((next_stage == lost_code) & (stage <= n), days * spec.lost_linger, days)
    days = np.where(kind == _BACK, spec.backward_stay_median_days * np.exp(0.8 * z), days)
    days = np.where(kind == _INTERIM_LOST,
                    spec.reopen_delay_median_days * np.exp(spec.reopen_delay_sigma * z), days)
    unanswered = (cls == _UNANSWERED)[deal]
    days = np.where(unanswered, p.unanswered_close_median_days * np.exp(p.unanswered_close_sigma * z), days)
    stay = np.where(has_next, np.maximum(np.ceil(np.minimum(days, spec.max_stay_days) * DAY), 60), 0)
    stay = stay.astype(np.int64)

    elapsed = np.cumsum(stay) - stay  # time before each event, counted from the first event overall
    first = np.flatnonzero(np.concatenate([[True], deal[1:] != deal[:-1]])) if e else np.zeros(0, np.int64)
    ts = created[deal] + elapsed - elapsed[first][deal]
    return dict(deal=deal, stage=stage, kind=kind, ts=ts, final_open=final_open,
                back_deals=back_deals, reopen_deals=reopen_deals, reopen_stage=reopen_col + 1)


def _pick_visited_stage(rng: np.random.Generator, visited: np.ndarray, rows: np.ndarray):
    """For each row, one visited stage after the first (uniformly) and the visited stage before it,
    as 0-based columns. Every row must have a visited stage after the first."""
    n = visited.shape[1]
    vis = visited[rows]
    later = vis.copy()
    later[:, 0] = False
    count = later.sum(axis=1)
    pick = np.floor(rng.random(len(rows)) * count).astype(np.int64) + 1
    col = np.argmax(later & (np.cumsum(later, axis=1) == pick[:, None]), axis=1)
    seen = np.maximum.accumulate(np.where(vis, np.arange(n), -1), axis=1)
    prev = seen[np.arange(len(rows)), col - 1] if len(rows) else np.zeros(0, np.int64)
    return col.astype(np.int64), prev.astype(np.int64)


def _lost_reasons(p: PipelineSpec, rng: np.random.Generator, cls: np.ndarray, final_open: np.ndarray,
                  reopen_deals: np.ndarray, reopen_stage: np.ndarray):
    """Reason indices: unanswered -> no answer; a lost deal's reason mixes the early and the late
    distributions by how far it got. Also a reason for the first loss of reopened deals."""
    names = list(dict.fromkeys([p.no_answer_reason] + [c.name for c in p.lost_reasons_early]
                               + [c.name for c in p.lost_reasons_late]))
    early = np.zeros(len(names))
    late = np.zeros(len(names))
    for c in p.lost_reasons_early:
        early[names.index(c.name)] = c.weight
    for c in p.lost_reasons_late:
        late[names.index(c.name)] = c.weight
    early, late = early / early.sum(), late / late.sum()
    n = len(p.stages)

    def draw(stage: np.ndarray) -> np.ndarray:
        f = np.clip((stage - 2) / max(n - 2, 1), 0, 1)[:, None]
        return _choose_rows(rng, (1 - f) * early + f * late)

    final = np.full(len(cls), -1)
    final[cls == _UNANSWERED] = names.index(p.no_answer_reason)
    lose = cls == _LOSE
    final[lose] = draw(final_open[lose])
    interim = np.full(len(cls), -1)
    interim[reopen_deals] = draw(reopen_stage)
    return names, final, interim


def _expected_close(spec: CompanySpec, p: PipelineSpec, rng: np.random.Generator, created: np.ndarray,
                    segment: np.ndarray, seen_until: np.ndarray) -> np.ndarray:
    """The current expected close (days since epoch): created + a typical cycle, pushed out when it
    passed while the deal was still open (before the export), up to a few times."""
    m = len(created)
    cycle = np.array([s.cycle_days for s in p.segments])[segment] * np.exp(
        spec.expected_close_sigma * rng.standard_normal(m))
    day = created // DAY + np.maximum(np.round(cycle), 1).astype(np.int64)
    for _ in range(spec.max_pushes):
        overdue = (day + 1) * DAY <= seen_until
        push = overdue & (rng.random(m) < spec.push_probability)
        delay = 7 + np.round(rng.exponential(spec.push_mean_days - 7, m)).astype(np.int64)
        day = np.where(push, day + delay, day)
    return day


def _titles(spec: CompanySpec, p: PipelineSpec, rng: np.random.Generator, product: np.ndarray) -> np.ndarray:
    """Titles from a table of every combination, so nothing is formatted per deal."""
    parts = TITLE_PARTS[p.name]
    m = len(product)
    lines = ("",) + tuple("\n" + s for s in parts["second_lines"])
    quoted = rng.random(m) < spec.title_quote_share
    line = np.where(rng.random(m) < spec.title_newline_share,
                    1 + np.floor(rng.random(m) * (len(lines) - 1)).astype(np.int64), 0)
    name = np.floor(rng.random(m) * len(parts["names"])).astype(np.int64)
    products = [c.name for c in p.products]
    if "forms" in parts:
        form = np.floor(rng.random(m) * len(parts["forms"])).astype(np.int64)
        subj = np.floor(rng.random(m) * 3).astype(np.int64)
        table = np.empty((len(parts["forms"]), len(parts["names"]), len(products), 3, 2, len(lines)), object)
        for (a, f), (b, nm), (c, pr), s, q, (d, ln) in _product(parts["forms"], parts["names"], products,
                                                                  range(3), range(2), lines):
            subjects = parts["subjects"][pr]
            company = f'{f} "{nm}"' if q else f"{f} «{nm}»"
            table[a, b, c, s, q, d] = f"{company}, {subjects[s % len(subjects)]}{ln}"
        return table[form, name, product, subj, quoted.astype(int), line]
    kind = np.floor(rng.random(m) * len(parts["kinds"])).astype(np.int64)
    table = np.empty((len(parts["names"]), len(products), len(parts["kinds"]), 2, len(lines)), object)
    for (b, nm), (c, pr), (k, kd), q, (d, ln) in _product(parts["names"], products, parts["kinds"],
                                                           range(2), lines):
        table[b, c, k, q, d] = (f'{nm} — "{pr}" {kd}' if q else f"{nm} — {pr}, {kd}") + ln
    return table[name, product, kind, quoted.astype(int), line]


def _product(*seqs):
    """itertools.product over (index, item) pairs; a range yields plain indices."""
    enumerated = [s if isinstance(s, range) else list(enumerate(s)) for s in seqs]
    return itertools.product(*enumerated)
