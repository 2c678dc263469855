"""Alert state: send when a check turns bad, remind while it stays bad, notice when it recovers.

The state of each alert kind lives in the workspace (alerts/state.json, replaced atomically) and
is keyed on the run's as-of time, never the wall clock, so a replay decides exactly as the
original run did. Rules, for one kind:

- bad now, good (or unknown) before                  -> send
- bad now, and a scope is bad that was not before,
  or a scope went from warn to error                 -> send (it turned bad again)
- bad now as before, reminder_hours passed since the
  last notice (as-of time; 0 turns reminders off)    -> remind
- good now, bad before                               -> recover
- a run whose as-of is older than the newest run seen -> nothing (a replay must not re-trigger)
- anything else                                      -> nothing

A notice that reached no sink does not move the state on (only the newest as-of seen does), so
the next run decides the same again; with no sinks configured the state moves on regardless.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ACTIONS = ("send", "remind", "recover", "none")
_RANK = {"warn": 1, "error": 2}
STATE_VERSION = 1


class StateError(Exception):
    """alerts/state.json exists but cannot be read."""


def parse_as_of(value) -> datetime:
    """An as-of time (datetime, date string or ISO timestamp) as a naive UTC datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Decision:
    action: str  # send | remind | recover | none
    reason: str
    kind: str
    as_of: str  # ISO, normalised
    scopes: dict[str, str] = field(default_factory=dict)  # bad now: scope -> warn | error
    since: str | None = None  # when it turned bad (as-of time)
    recovered: list[str] = field(default_factory=list)  # for a recovery: the scopes that were bad
    stale: bool = False


def decide(kind: str, entry: dict | None, scopes: dict[str, str], as_of, reminder_hours: float) -> Decision:
    """What to do now for one alert kind, given its stored entry and the scopes bad now."""
    now = parse_as_of(as_of)
    iso = _iso(now)
    entry = entry or {}
    if entry.get("as_of") and now < parse_as_of(entry["as_of"]):
        return Decision("none", f"as of {iso} is older than the newest run seen ({entry['as_of']}); "
                                f"a replay does not re-trigger", kind, iso, dict(scopes), stale=True)
    was_bad = entry.get("status") == "bad"
    before = entry.get("scopes") or {}
    if scopes:
        if not was_bad:
            return Decision("send", f"turned bad: {len(scopes)} scope(s) failing", kind, iso,
                            dict(scopes), since=iso)
        worse = sorted(s for s, status in scopes.items() if _RANK.get(status, 0) > _RANK.get(before.get(s), 0))
        since = entry.get("since") or iso
        if worse:
            return Decision("send", f"turned bad again: {', '.join(worse)}", kind, iso, dict(scopes), since=since)
        last = entry.get("notified_at")
        if reminder_hours > 0 and last:
            hours = (now - parse_as_of(last)).total_seconds() / 3600
            if hours >= reminder_hours:
                return Decision("remind", f"still bad {hours:g}h after the last notice "
                                          f"(reminder every {reminder_hours:g}h)", kind, iso, dict(scopes), since=since)
        return Decision("none", "still bad; already notified", kind, iso, dict(scopes), since=since)
    if was_bad:
        return Decision("recover", f"turned good: {len(before)} scope(s) back on target", kind, iso,
                        recovered=sorted(before))
    return Decision("none", "good", kind, iso)


def next_entry(entry: dict | None, decision: Decision, delivered: bool) -> dict | None:
    """The entry to store after acting on `decision` (`delivered`: the notice reached a sink)."""
    entry = dict(entry or {})
    if decision.stale:
        return entry or None
    entry["as_of"] = decision.as_of
    if decision.action in ("send", "remind", "recover") and not delivered:
        return entry  # decide the same again next run
    if decision.action == "recover":
        entry.update(status="good", scopes={}, since=None, notified_at=decision.as_of)
    elif decision.scopes:
        entry.update(status="bad", scopes=dict(decision.scopes), since=decision.since)
        if decision.action in ("send", "remind"):
            entry["notified_at"] = decision.as_of
    else:
        entry.update(status="good", scopes={})
        entry.setdefault("since", None)
    return entry


def load_state(path: Path) -> dict[str, dict]:
    """{kind: entry}; {} when there is no state yet."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kinds = data["kinds"]
        if not isinstance(kinds, dict):
            raise TypeError
        return kinds
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StateError(f"{path}: not a Voronka alert state file ({type(err).__name__})") from None


def save_state(path: Path, kinds: dict[str, dict]) -> None:
    """Write the whole state to a temporary file beside it, then rename over it (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": STATE_VERSION, "kinds": kinds}, ensure_ascii=False, indent=2, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
