"""The messy company (voronka/simulator/messy.py): each quirk switch changes exactly what it says,
in the files, and the truth counts match the files. No pipeline here: tests/voronka/cli/test_messy_demo.py runs
the messy demo end to end."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from voronka.simulator.messy import (
    ALL_QUIRKS,
    KZT_PER_RUB,
    QUIRKS,
    SMALL_YOUNG_DEALS,
    UNKNOWN_LOST_STAGE,
    UNKNOWN_WON_STAGE,
    parse_quirks,
    simulate_messy,
)
from voronka.simulator.messy_export import write_messy

END = date(2026, 5, 20)
N, YEARS, SEED = 700, 1.0, 7
DEALS = "bitrix24_crm.deal.list.json"
HISTORY = "bitrix24_crm.stagehistory.list.json"


def _items(path, *keys) -> list[dict]:
    out = []
    for page in json.loads(path.read_text(encoding="utf-8")):
        node = page
        for k in keys:
            node = node[k]
        out.extend(node)
    return out


class Written:
    def __init__(self, root, quirks, n_deals=N, years=YEARS):
        self.messy = simulate_messy(n_deals=n_deals, seed=SEED, end_date=END, quirks=quirks, years=years)
        self.inbox, self.truth_dir = root / "inbox", root / "truth"
        self.files = write_messy(self.messy, self.inbox, self.truth_dir)
        self.deals = pd.DataFrame(_items(self.inbox / DEALS, "result")).set_index("ID")
        self.history = pd.DataFrame(_items(self.inbox / HISTORY, "result", "items"))
        self.truth = pd.read_csv(self.truth_dir / "messy_deals.csv", dtype={"native_id": str})
        self.info = json.loads((self.truth_dir / "messy.json").read_text(encoding="utf-8"))

    def flagged(self, column: str) -> set:
        return set(self.truth.loc[self.truth[column].astype(bool), "native_id"])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cache = {}

    def get(*quirks: str) -> Written:
        key = tuple(sorted(quirks))
        if key not in cache:
            cache[key] = Written(tmp_path_factory.mktemp("messy"), key)
        return cache[key]

    return get


def _differences(a: pd.DataFrame, b: pd.DataFrame) -> set[tuple[str, str]]:
    """(deal id, field) pairs whose values differ between two deal lists of the same deals."""
    assert set(a.index) == set(b.index)
    b = b.loc[a.index]
    out = set()
    for col in a.columns:
        x, y = a[col].astype(object), b[col].astype(object)
        diff = ~((x == y) | (x.isna() & y.isna()))
        out |= {(i, col) for i in a.index[diff.to_numpy()]}
    return out


def test_parse_quirks():
    assert parse_quirks(None) == ALL_QUIRKS == parse_quirks("all") == tuple(QUIRKS)
    assert parse_quirks("none") == ()
    assert parse_quirks("fx_missing,no_targets") == ("no_targets", "fx_missing")  # in QUIRKS order
    assert parse_quirks("-small_young") == tuple(q for q in ALL_QUIRKS if q != "small_young")
    assert parse_quirks("all,-small_young,-deleted_deals") == ALL_QUIRKS[:-2]
    with pytest.raises(ValueError, match="unknown quirk 'fx_mising'"):
        parse_quirks("fx_mising")


def test_the_plan_is_the_same_whatever_quirks_are_on():
    every = simulate_messy(n_deals=N, seed=SEED, end_date=END, years=YEARS)
    one = simulate_messy(n_deals=N, seed=SEED, end_date=END, years=YEARS, quirks=("fx_missing",))
    pd.testing.assert_frame_equal(every.plan, one.plan)
    # every deal-level quirk touches at least a few deals
    for col in ("deleted", "same_day_close", "close_before", "unknown_won", "unknown_lost", "no_history",
                "created_missing", "amount_zero", "amount_empty", "kzt"):
        assert every.plan[col].sum() >= 3, col


def test_no_quirk_is_the_plain_bitrix24_export(written):
    w = written()
    assert sorted(p.name for p in w.files) == sorted(
        ["bitrix24_crm.category.list.json", "bitrix24_crm.status.list.json", HISTORY, DEALS,
         "targets.csv", "fx_rates.csv", "marketing_spend.csv"])
    assert len(w.deals) == N and w.info["quirks"] == [] and w.info["counts"] == {}
    assert w.deals["DATE_CREATE"].notna().all() and w.deals["PROBABILITY"].isna().all()
    assert set(w.deals["STAGE_SEMANTIC_ID"]) == {"P", "S", "F"}
    assert set(w.deals["CURRENCY_ID"]) == {"RUB", "USD", "EUR"}
    assert set(w.history["OWNER_ID"].astype(str)) == set(w.deals.index)
    # is_closed_same_day describes a deal (the quirk adds a few), it is not a quirk
    flags = [c for c in w.truth.columns if c.startswith(("is_", "has_")) and c != "is_closed_same_day"]
    assert len(flags) == 8 and not w.truth[flags].to_numpy().any()
    assert (w.truth["outcome_expected"] == w.truth["outcome_true"]).all()


def test_date_only_close(written):
    base, w = written(), written("date_only_close")
    closed = w.deals["CLOSED"] == "Y"
    assert w.deals.loc[closed, "CLOSEDATE"].str.endswith("T00:00:00+05:00").all()
    assert (w.deals.loc[closed, "CLOSEDATE"].str[:10] == base.deals.loc[closed.index[closed], "CLOSEDATE"].str[:10]
            ).sum() >= closed.sum() - len(w.flagged("is_closed_same_day"))
    assert w.flagged("is_close_date_only") == set(closed.index[closed])
    assert w.info["counts"]["date_only_close"] == int(closed.sum())
    planned = set(w.messy.plan.index[w.messy.plan["same_day_close"]])
    same_day = w.flagged("is_closed_same_day")
    assert len(planned) >= 3 and planned <= same_day and w.info["counts"]["closed_same_day"] == len(same_day)
    assert not base.flagged("is_closed_same_day") & planned  # without the quirk they close later
    local = pd.Timedelta(hours=5)
    t = w.truth.set_index("native_id")
    days = (pd.to_datetime(t["close_date_local"]) - (pd.to_datetime(t["created_at"]) + local).dt.normalize()).dt.days
    assert set(t.index[days == 0]) == same_day
    t = t.loc[sorted(planned)]
    created, closed_at = pd.to_datetime(t["created_at"]), pd.to_datetime(t["closed_at"])
    assert (closed_at > created).all()
    assert ((closed_at + local).dt.date == (created + local).dt.date).all()
    assert (t["outcome_true"] == "lost").all()
    # the day is the creation day in the export, and the stage history has the true close
    rows = w.deals.loc[sorted(same_day)]
    assert (rows["CLOSEDATE"].str[:10] == rows["DATE_CREATE"].str[:10]).all()
    last = w.history[w.history["OWNER_ID"].astype(str).isin(planned)].groupby("OWNER_ID").last()
    times = pd.to_datetime(last["CREATED_TIME"], utc=True).dt.tz_convert(None)
    assert sorted(times.to_numpy()) == sorted(closed_at.to_numpy())
    # nothing else changed: the close of the other deals, the last-change times of the same-day ones
    allowed = {(i, "CLOSEDATE") for i in closed.index[closed]} | {
        (i, f) for i in planned for f in ("DATE_MODIFY", "MOVED_TIME", "LAST_ACTIVITY_TIME")}
    assert _differences(base.deals, w.deals) <= allowed


def test_close_before_created(written):
    base, w = written(), written("close_before_created")
    before = w.flagged("is_closed_before_created")
    assert len(before) >= 3 and w.info["counts"]["close_before_created"] == len(before)
    assert _differences(base.deals, w.deals) == {(i, "CLOSEDATE") for i in before}
    rows = w.deals.loc[sorted(before)]
    assert (rows["CLOSED"] == "Y").all()
    close = pd.to_datetime(rows["CLOSEDATE"], utc=True)
    created = pd.to_datetime(rows["DATE_CREATE"], utc=True)
    days = (created - close).dt.total_seconds() / 86_400
    assert ((days >= 1) & (days <= 30)).all()
    t = w.truth.set_index("native_id").loc[sorted(before)]
    assert (pd.to_datetime(t["closed_at_exported"]) < pd.to_datetime(t["created_at"])).all()
    assert (pd.to_datetime(t["closed_at"]) > pd.to_datetime(t["created_at"])).all()  # the true close


def test_unknown_closed_stage(written):
    base, w = written(), written("unknown_closed_stage")
    t = w.truth.set_index("native_id")
    won = set(t.index[t["unknown_stage"] == UNKNOWN_WON_STAGE])
    lost = set(t.index[t["unknown_stage"] == UNKNOWN_LOST_STAGE])
    assert len(won) >= 3 and len(lost) >= 3
    assert w.info["counts"][UNKNOWN_WON_STAGE] == len(won) and w.info["counts"][UNKNOWN_LOST_STAGE] == len(lost)
    assert _differences(base.deals, w.deals) == {(i, f) for i in won | lost for f in ("STAGE_ID", "STAGE_SEMANTIC_ID")}
    # each custom stage is a stage of its category's status list (every Bitrix24 STAGE_ID has
    # one), named as the leasing company named it, with no SEMANTICS
    statuses = pd.DataFrame(json.loads((w.inbox / "bitrix24_crm.status.list.json").read_text(encoding="utf-8"))["result"])
    custom = statuses[statuses["NAME"].isin([UNKNOWN_WON_STAGE, UNKNOWN_LOST_STAGE])]
    assert custom["SEMANTICS"].isna().all() and len(custom) == 2 * w.deals["CATEGORY_ID"].nunique()
    name_of = dict(zip(custom["STATUS_ID"], custom["NAME"]))
    assert (w.deals.loc[sorted(won), "STAGE_ID"].map(name_of) == UNKNOWN_WON_STAGE).all()
    assert (w.deals.loc[sorted(lost), "STAGE_ID"].map(name_of) == UNKNOWN_LOST_STAGE).all()
    in_category = w.deals.loc[sorted(won | lost)]
    assert all(sid.startswith(f"C{cat}:") or str(cat) == "0"
               for sid, cat in zip(in_category["STAGE_ID"], in_category["CATEGORY_ID"]))
    assert w.deals.loc[sorted(won | lost), "STAGE_SEMANTIC_ID"].isna().all()
    assert (w.deals.loc[sorted(won | lost), "CLOSED"] == "Y").all()
    # truly won / lost; the warehouse should say won ('Выдано' is settled by a default) / unknown
    assert (t.loc[sorted(won), "outcome_true"] == "won").all()
    assert (t.loc[sorted(won), "outcome_expected"] == "won").all()
    assert (t.loc[sorted(lost), "outcome_true"] == "lost").all()
    assert (t.loc[sorted(lost), "outcome_expected"] == "unknown").all()
    assert (t["outcome_expected"] == "unknown").sum() == len(lost)
    # the stage history's final move names the same stage, without a semantic
    final = w.history[w.history["TYPE_ID"] == 3]
    final = final.set_index(final["OWNER_ID"].astype(str))
    assert set(final.index[final["STAGE_ID"].map(name_of).notna()]) == won | lost
    assert final.loc[sorted(won | lost), "STAGE_SEMANTIC_ID"].isna().all()
    assert len(w.history) == len(base.history)


def test_created_missing(written):
    base, w = written(), written("created_missing")
    missing = w.flagged("is_created_at_missing")
    assert len(missing) >= 3 and w.info["counts"]["created_missing"] == len(missing)
    assert _differences(base.deals, w.deals) == {(i, f) for i in missing for f in ("DATE_CREATE", "BEGINDATE")}
    assert (w.deals.loc[sorted(missing), "CLOSED"] == "N").all()
    assert w.deals["DATE_CREATE"].isna().sum() == len(missing)
    # the stage history still starts at the true creation (TYPE_ID 1)
    first = w.history[(w.history["TYPE_ID"] == 1) & w.history["OWNER_ID"].astype(str).isin(missing)]
    assert len(first) == len(missing)
    t = w.truth.set_index("native_id")
    at = pd.to_datetime(first["CREATED_TIME"], utc=True).dt.tz_convert(None).to_numpy()
    assert sorted(at) == sorted(pd.to_datetime(t.loc[sorted(missing), "created_at"]).to_numpy())


def test_lost_without_history(written):
    base, w = written(), written("lost_without_history")
    gone = w.flagged("has_no_history")
    assert len(gone) >= 3 and w.info["counts"]["lost_without_history"] == len(gone)
    assert _differences(base.deals, w.deals) == set()
    assert (w.deals.loc[sorted(gone), "STAGE_SEMANTIC_ID"] == "F").all()
    owners = w.history["OWNER_ID"].astype(str)
    assert not owners.isin(gone).any()
    assert len(w.history) == len(base.history) - base.history["OWNER_ID"].astype(str).isin(gone).sum()
    # closed before the earlier export's cut, so both exports agree they are lost
    cut = pd.Timestamp(w.messy.earlier_cut)
    assert (pd.to_datetime(w.truth.set_index("native_id").loc[sorted(gone), "closed_at"]) <= cut).all()


def test_amount_gaps(written):
    base, w = written(), written("amount_gaps")
    zero, empty = w.flagged("is_amount_zeroed"), w.flagged("is_amount_empty")
    assert len(zero) >= 3 and len(empty) >= 3
    assert w.info["counts"]["amount_zero"] == len(zero) and w.info["counts"]["amount_empty"] == len(empty)
    assert _differences(base.deals, w.deals) == {(i, "OPPORTUNITY") for i in zero | empty}
    assert (w.deals.loc[sorted(zero), "OPPORTUNITY"] == "0.00").all()
    assert (w.deals.loc[sorted(zero), "STAGE_SEMANTIC_ID"] == "F").all()
    assert (w.deals.loc[sorted(empty), "OPPORTUNITY"] == "").all()
    assert (w.deals.loc[sorted(empty), "CLOSED"] == "N").all()
    t = w.truth.set_index("native_id")
    assert (t.loc[sorted(zero), "amount_true"] > 0).all() and (t.loc[sorted(zero), "amount_exported"] == 0).all()
    assert t.loc[sorted(empty), "amount_exported"].isna().all()


def test_no_targets(written):
    base, w = written(), written("no_targets")
    assert (base.inbox / "targets.csv").exists() and not (w.inbox / "targets.csv").exists()
    assert "targets.csv" not in w.info["files"]
    assert _differences(base.deals, w.deals) == set()


def test_fx_missing(written):
    base, w = written(), written("fx_missing")
    kzt = w.flagged("is_fx_missing")
    assert len(kzt) >= 3 and w.info["counts"]["fx_missing"] == len(kzt)
    assert _differences(base.deals, w.deals) == {(i, f) for i in kzt for f in ("CURRENCY_ID", "OPPORTUNITY")}
    rows = w.deals.loc[sorted(kzt)]
    assert (rows["CURRENCY_ID"] == "KZT").all() and (rows["CATEGORY_ID"] == "0").all()
    assert (rows["STAGE_SEMANTIC_ID"] == "S").any()  # a booked deal needs the missing rate
    rub = base.deals.loc[sorted(kzt), "OPPORTUNITY"].astype(float)
    assert np.allclose(rows["OPPORTUNITY"].astype(float), np.round(rub * KZT_PER_RUB, -3))
    fx = pd.read_csv(w.inbox / "fx_rates.csv")
    assert "KZT" not in set(fx["currency"]) | set(fx["quote_currency"])


def test_crm_probability(written):
    base, w = written(), written("crm_probability")
    assert _differences(base.deals, w.deals) == {(i, "PROBABILITY") for i in w.deals.index}
    prob = w.deals["PROBABILITY"].astype(float)
    sem = w.deals["STAGE_SEMANTIC_ID"]
    assert (prob[sem == "S"] == 100).all() and (prob[sem == "F"] == 0).all()
    open_ = prob[sem == "P"]
    assert open_.between(1, 99).all() and open_.nunique() > 3
    t = w.truth.set_index("native_id").loc[w.deals.index]
    assert np.allclose(t["crm_probability"].to_numpy(float) * 100, prob.to_numpy())
    # the manager's estimate knows something the stage does not: it ranks open deals' true chances
    p_true = w.messy.company.truth.set_index("native_id").loc[open_.index, "p_win_true"]
    assert np.corrcoef(open_.to_numpy(), p_true.to_numpy())[0, 1] > 0.2


def test_small_young(tmp_path):
    w = Written(tmp_path, ("small_young",), n_deals=None, years=None)
    assert len(w.deals) == SMALL_YOUNG_DEALS == w.info["n_deals"]
    created = pd.to_datetime(w.deals["DATE_CREATE"], utc=True)
    assert (created.max() - created.min()).days <= 4 * 31
    assert created.max().date() >= date(2026, 5, 1)


def test_deleted_deals(written):
    base, w = written(), written("deleted_deals")
    deleted = w.flagged("is_deleted_in_crm")
    assert len(deleted) >= 3 and w.info["counts"]["deleted_deals"] == len(deleted)
    earlier_file = [p for p in w.files if p.name.startswith("bitrix24_crm.deal.list.") and p.name != DEALS]
    assert len(earlier_file) == 1
    earlier = pd.DataFrame(_items(earlier_file[0], "result")).set_index("ID")
    assert earlier_file[0].stat().st_mtime < (w.inbox / DEALS).stat().st_mtime
    # the final export no longer carries them (nor their history); the earlier one does
    assert set(w.deals.index) == set(base.deals.index) - deleted
    assert deleted <= set(earlier.index)
    assert not w.history["OWNER_ID"].astype(str).isin(deleted).any()
    assert _differences(base.deals.loc[w.deals.index], w.deals) == set()
    # the earlier export is as of its cut: nothing in it happened later
    cut = pd.Timestamp(w.messy.earlier_cut, tz="UTC")
    for col in ("DATE_CREATE", "DATE_MODIFY"):
        assert (pd.to_datetime(earlier[col], utc=True) <= cut).all()
    closed_later = (earlier["CLOSED"] == "N") & (base.deals.loc[earlier.index, "CLOSED"] == "Y")
    assert closed_later.any()  # deals that were open then and closed since
    # every deal written is in one of the two exports
    assert set(w.deals.index) | set(earlier.index) == set(w.truth["native_id"])
    t = w.truth.set_index("native_id").loc[sorted(deleted)]
    assert (t["outcome_expected"] == earlier.loc[sorted(deleted), "STAGE_SEMANTIC_ID"].map(
        {"P": "open", "S": "won", "F": "lost"})).all()


def test_every_quirk_at_once_keeps_every_deal(written):
    w = written(*ALL_QUIRKS)
    earlier = [p for p in w.files if p.name.startswith("bitrix24_crm.deal.list.") and p.name != DEALS]
    ids = set(w.deals.index) | set(pd.DataFrame(_items(earlier[0], "result"))["ID"])
    assert ids == set(w.truth["native_id"]) and len(w.truth) == N
    assert set(w.info["counts"]) >= {"date_only_close", "close_before_created", "created_missing",
                                     "lost_without_history", "fx_missing", "deleted_deals", "crm_probability"}
    for key, value in w.info["counts"].items():
        assert value >= 3, key
    # truth.csv and deal_keys.csv cover the deleted deals too
    keys = pd.read_csv(w.truth_dir / "deal_keys.csv", dtype=str)
    assert set(keys["native_id"]) == ids and (keys["deal_key"] == "bitrix24:" + keys["native_id"]).all()
    assert len(pd.read_csv(w.truth_dir / "truth.csv")) == N


def test_the_same_seed_writes_the_same_files(tmp_path):
    a = Written(tmp_path / "a", ALL_QUIRKS, n_deals=300, years=0.5)
    b = Written(tmp_path / "b", ALL_QUIRKS, n_deals=300, years=0.5)
    assert [p.name for p in a.files] == [p.name for p in b.files]
    for pa, pb in zip(a.files, b.files):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    assert (a.truth_dir / "messy_deals.csv").read_bytes() == (b.truth_dir / "messy_deals.csv").read_bytes()


def test_the_cli_help_lists_every_quirk(capsys):
    from voronka.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for q in ALL_QUIRKS:
        assert q in text, q


def test_a_bad_quirk_or_crm_is_one_line_and_exit_1(tmp_path, capsys):
    from voronka.cli import main

    assert main(["demo", "--messy-quirks", "fx_mising", "--workspace", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown quirk 'fx_mising'" in err[0]
    assert main(["demo", "--messy", "--crm", "hubspot", "--workspace", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--messy writes a bitrix24 export" in err[0]
    assert not (tmp_path / "b").exists()
