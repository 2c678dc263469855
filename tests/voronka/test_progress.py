"""Progress bars: drawn in place on a terminal, silent everywhere else, and fed by the assets."""

from __future__ import annotations

import io

import dagster as dg
import pytest

from orchestration import runner
from orchestration.assets.ingest import raw_tables
from orchestration.resources import WorkspaceResource
from voronka import progress
from voronka.config import Workspace
from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import simulate_company


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def sink_off(monkeypatch):
    """The sink is process-wide: every test starts and ends with it off (and a wide terminal)."""
    monkeypatch.setenv("COLUMNS", "120")
    progress.disable()
    yield
    progress.disable()


def bar(done: int, total: int) -> str:
    cells = done * progress.BAR_WIDTH // total
    return "[" + "#" * cells + "-" * (progress.BAR_WIDTH - cells) + "]"


def test_a_task_redraws_one_line_and_ends_it_with_a_newline():
    stream = FakeTTY()
    assert progress.enable(stream)
    with progress.task("dbt build", total=4) as task:
        task.advance(note="stg_crm__deals")
        task.advance(note="a_long_model_name")
        task.advance(note="fct")
    label = "dbt build".ljust(progress.LABEL_WIDTH)
    frames = stream.getvalue().split("\r")
    assert frames[0] == ""  # every frame starts at the beginning of the line
    assert frames[1] == f"{label} {bar(0, 4)} 0/4   0%"
    assert frames[2] == f"{label} {bar(1, 4)} 1/4  25%  stg_crm__deals"
    assert frames[3] == f"{label} {bar(2, 4)} 2/4  50%  a_long_model_name"
    # A shorter frame blanks what the longer one before it left on the line.
    # Ended short of its total, the last frame stays as it is (not redrawn), then the line ends.
    assert frames[4] == f"{label} {bar(3, 4)} 3/4  75%  fct".ljust(len(frames[3])) + "\n"
    assert len(frames) == 5 and stream.getvalue().count("\n") == 1


def test_a_total_learnt_from_ml_progress_messages():
    stream = FakeTTY()
    progress.enable(stream)
    task = progress.task("forecast backtest", note="first origin")
    task.message("origin 2025-01-01 (1/3)")
    task.message("origin 2025-02-01 (2/3)")
    label = "forecast backtest".ljust(progress.LABEL_WIDTH)
    frames = stream.getvalue().split("\r")
    assert frames[1] == f"{label} {bar(0, 3)} 0/?  first origin"
    assert frames[3] == f"{label} {bar(2, 3)} 2/3  66%  origin 2025-02-01"  # rounded down: 100% is done
    assert progress.frame("dbt build", 246, 247, width=120).split("]")[1].startswith(" 246/247  99%")
    assert not stream.getvalue().endswith("\n")
    progress.disable()  # a task still drawn is ended when the sink goes off
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1


def test_a_frame_never_wraps_the_terminal():
    text = progress.frame("model training", 3, 5, note="x" * 200, width=60)
    assert len(text) == 59 and text.startswith("model training")


def test_nothing_is_written_when_off_quiet_or_not_a_terminal(capsys):
    plain = io.StringIO()  # a log file or a pipe: not a terminal
    assert not progress.enable(plain)
    with progress.task("ingest", total=2) as task:
        task.advance(note="deals.csv")
    assert plain.getvalue() == ""

    tty = FakeTTY()
    with progress.shown(quiet=True, stream=tty):
        assert not progress.enabled()
        progress.task("ingest", total=2).advance()
    progress.task("ingest", total=2).advance()  # off by default: the UI's and tests' runs
    assert tty.getvalue() == ""
    assert capsys.readouterr() == ("", "")


def test_the_runner_ends_a_bar_left_open_before_its_done_line(monkeypatch, tmp_path):
    """An asset that fails mid-way leaves its bar open; the stage line must not land on it."""
    stages = [("ingest", "ingest"), ("transform", "dbt build")]
    monkeypatch.setattr("orchestration.definitions.build_definitions", lambda home, as_of=None: object())
    monkeypatch.setattr(runner, "STAGES", stages)

    def fake_run_stage(defs, instance, job_name, name):
        progress.task(name, total=3).advance()
        return [], []

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    stderr = FakeTTY()
    monkeypatch.setattr("sys.stderr", stderr)
    runner.run_pipeline(Workspace(tmp_path / "home"), quiet=False, retrain=True)
    lines = stderr.getvalue().split("\n")
    assert lines[0] == "[1/2] ingest ..."
    assert lines[1].startswith("\r") and lines[1].rsplit("\r", 1)[1].startswith("ingest")
    assert lines[2].startswith("[1/2] ingest done in ")
    assert lines[4].rsplit("\r", 1)[1].startswith("dbt build") and lines[5].startswith("[2/2] dbt build done")
    assert not progress.enabled()  # off again after the run

    stderr.seek(0)
    stderr.truncate()
    runner.run_pipeline(Workspace(tmp_path / "home"), quiet=True, retrain=True)
    assert stderr.getvalue() == ""


def test_the_ingest_bar_counts_a_read_and_a_load_per_file(tmp_path):
    workspace = Workspace(tmp_path / "ws").create()
    written = write_canonical(simulate_company(n_deals=40, seed=3), workspace.inbox, tmp_path / "truth")
    (workspace.inbox / "notes.csv").write_text("hello;world\n1;2\n", encoding="utf-8")  # refused
    n = len(written) + 1
    stream = FakeTTY()
    progress.enable(stream)
    resources = {"workspace": WorkspaceResource(home=str(workspace.home))}
    assert dg.materialize([raw_tables], resources=resources).success
    frames = stream.getvalue().split("\r")[1:]
    assert frames[0].startswith("ingest") and f" 0/{2 * n} " in frames[0]
    notes = [f.split("%", 1)[1].strip() for f in frames[1:]]
    assert sum(note.startswith("read ") for note in notes) == len(written)
    assert sum(note.startswith("loaded ") for note in notes) == len(written)
    assert notes.count("refused notes.csv") == 1
    # A canonical CSV is read just before it is loaded: one file's rows in memory at a time.
    steps = [note for i, note in enumerate(notes) if i == 0 or note != notes[i - 1]]
    for path in written:
        read_at = steps.index(f"read {path.name}")
        assert steps[read_at + 1] == f"loaded {path.name}"
    assert f" {2 * n}/{2 * n} 100%" in frames[-1] and frames[-1].endswith("\n")

    # Loaded before: each file takes its two steps at once, and the bar still ends full.
    stream.seek(0)
    stream.truncate()
    assert dg.materialize([raw_tables], resources=resources).success
    frames = stream.getvalue().split("\r")[1:]
    assert sum("already loaded" in f for f in frames) == len(written)
    assert f" {2 * n}/{2 * n} 100%" in frames[-1]
