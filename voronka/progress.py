"""Progress bars for the long stages of `voronka run` / `voronka demo` (no Dagster here).

The sink is process-wide and off by default: an asset asks for `task(...)` whatever runs it,
and only the CLI runner switches the sink on (`shown()`), so runs from the Dagster UI, the
schedules and the tests print nothing.

    with progress.task("dbt build", total=266) as bar:
        for event in events:
            bar.advance(note=name_of(event))

On a terminal a task is one line on stderr, redrawn in place with `\\r` and ended with a newline
when the task is done. When stderr is not a terminal nothing is drawn at all: cron and CI logs
keep only the runner's stage lines (`[2/4] dbt build done in 37.6 s`), which already say what
ran and how long it took. stdout is never touched: it carries the command's table or JSON.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
from contextlib import contextmanager

LABEL_WIDTH = 22
BAR_WIDTH = 24
# "origin 2025-01-01 (3/23)": the convention of ml/ progress callbacks — work done, of total.
COUNTED = re.compile(r"^(?P<note>.*?)\s*\((?P<done>\d+)/(?P<total>\d+)\)\s*$")


class _Sink:
    def __init__(self, stream):
        self.stream = stream
        self.active: Task | None = None
        self.ascii = "utf" not in (getattr(stream, "encoding", None) or "").lower()


_sink: _Sink | None = None


def enable(stream=None) -> bool:
    """Draw tasks on `stream` (default: sys.stderr) if it is a terminal; returns whether it is."""
    global _sink
    finish()
    stream = sys.stderr if stream is None else stream
    is_tty = getattr(stream, "isatty", None)
    _sink = _Sink(stream) if is_tty is not None and is_tty() else None
    return _sink is not None


def disable() -> None:
    global _sink
    finish()
    _sink = None


def enabled() -> bool:
    return _sink is not None


@contextmanager
def shown(quiet: bool = False, stream=None):
    """Bars on for the duration of a CLI run (unless `quiet`); off again afterwards, with the
    line of a task that did not finish (a failing asset) ended."""
    if quiet:
        yield
        return
    enable(stream)
    try:
        yield
    finally:
        disable()


def finish() -> None:
    """End the line of the task being drawn, if any (before printing anything else)."""
    if _sink is not None and _sink.active is not None:
        _sink.active.done()


def frame(label: str, done: int, total: int | None, note: str = "", width: int = 80,
          ascii_only: bool = True) -> str:
    """One line: label, bar, done/total, percentage and a note, cut to `width` - 1 columns (a
    line that wraps cannot be redrawn with \\r)."""
    fill, empty = ("#", "-") if ascii_only else ("█", "░")
    if total is None:  # not known yet
        cells, counts = 0, f"{done}/?"
    else:
        share = min(done / total, 1.0) if total else 1.0
        cells = int(share * BAR_WIDTH)
        # Rounded down: 246/247 is 99%, so 100% means done.
        counts = f"{done:>{len(str(total))}}/{total} {math.floor(share * 100):3d}%"
    text = f"{label:<{LABEL_WIDTH}} [{fill * cells}{empty * (BAR_WIDTH - cells)}] {counts}"
    if note:
        text += f"  {note}"
    return text[:max(width - 1, 10)]


def _columns(stream) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # a stream without a file descriptor
        columns = 0
    # 0: a terminal that does not know its size (a pty under `script`): $COLUMNS, else 80.
    return columns or shutil.get_terminal_size((80, 24)).columns


class Task:
    """A bar being drawn; get one from `task()`."""

    def __init__(self, sink: _Sink, label: str, total: int | None, note: str):
        self.sink, self.label, self.total, self.note = sink, label, total, note
        self.count = 0
        self.finished = False
        self._shown = ""  # the line on screen: a shorter one must blank what it leaves
        self._width = _columns(sink.stream)
        self._draw()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.done()
        return False

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.update(self.count + n, note=note)

    def update(self, done: int | None = None, total: int | None = None, note: str | None = None) -> None:
        if self.finished:
            return
        if done is not None:
            self.count = done
        if total is not None:
            self.total = total
        if note is not None:
            self.note = note
        self._draw()

    def message(self, text: str) -> None:
        """Follow an ml/ progress callback's message, "what was just done (done/total)"."""
        m = COUNTED.match(text)
        if m:
            self.update(int(m["done"]), int(m["total"]), m["note"])
        else:
            self.update(note=text)

    def done(self, note: str | None = None) -> None:
        """The last frame as it stands (a count short of the total stays visible), then a newline."""
        if self.finished:
            return
        if note is not None:
            self.note = note
        self._draw()
        self.finished = True
        self.sink.stream.write("\n")
        self.sink.stream.flush()
        if self.sink.active is self:
            self.sink.active = None

    def _draw(self) -> None:
        # Every step is drawn: the callers report tens to hundreds of steps, never a tight loop.
        text = frame(self.label, self.count, self.total, self.note, self._width, self.sink.ascii)
        if text != self._shown:
            self.sink.stream.write("\r" + text.ljust(len(self._shown)))
            self.sink.stream.flush()
            self._shown = text


class _Off:
    """What `task()` returns while the sink is off: every call does nothing."""

    count, total, finished = 0, None, True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n: int = 1, note: str | None = None) -> None:
        pass

    def update(self, done: int | None = None, total: int | None = None, note: str | None = None) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def done(self, note: str | None = None) -> None:
        pass


OFF = _Off()


def task(label: str, total: int | None = None, note: str = "") -> Task | _Off:
    """A bar for `label` with `total` steps (None: not known yet); drawn only when the sink is on.
    A task still drawn is ended first: one line at a time."""
    if _sink is None:
        return OFF
    finish()
    _sink.active = Task(_sink, label, total, note)
    return _sink.active
