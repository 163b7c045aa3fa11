"""The ledger: each cell's line appended whole by whichever worker ran it, and read by the
launcher incrementally (only what was appended since its previous look), each cell counted once;
the launcher's progress lines drawn from it (``slnn.sweep.progress``)."""

from __future__ import annotations

import io
import os
import time

from slnn.core.outcomes import Outcome
from slnn.sweep.ledger import Ledger, report_progress
from slnn.sweep.progress import LedgerReader, Progress
from slnn.sweep.state import SweepState


def test_the_reader_reads_only_what_was_appended_and_counts_each_cell_once(tmp_path):
    state = SweepState(dir=str(tmp_path), total=6, n_skipped=1, start=time.time())
    ledger = Ledger(tmp_path / "progress.jsonl")
    reader = LedgerReader(ledger.path)
    report_progress(state, "a", Outcome.MAX_EPOCHS, 0.1, val_error=0.25, cell="0000-a")
    ledger.add(name="other worker", outcome=str(Outcome.MAX_EPOCHS), seconds=0.1)  # another process
    assert [e["name"] for e in reader.read()] == ["a", "other worker"]
    # what was read already is not read again: garble it in place (same file, same size)
    data = ledger.path.read_bytes()
    ledger.path.write_bytes(b"".join(b"#" * (len(ln) - 1) + b"\n"
                                     for ln in data.splitlines(keepends=True)))
    report_progress(state, "c", Outcome.DIVERGED, 0.1, cell="0002-c")
    report_progress(state, "c", Outcome.SKIPPED, 0.1, cell="0002-c")  # found done: its result stays
    assert [e["name"] for e in reader.read()] == ["c", "c"]
    assert {k: e["outcome"] for k, e in reader.last.items()} == {
        "0000-a": "max_epochs", "other worker": "max_epochs", "0002-c": "diverged"}
    # the cell's own line ends its log, in its folder
    assert (tmp_path / "cells" / "0000-a" / "run.log").read_text() == \
        "slnn: a: max_epochs (val_error 0.250, 0.10 s)\n"


def test_a_line_another_worker_is_still_writing_is_read_once_complete(tmp_path):
    state = SweepState(dir=str(tmp_path), total=4, n_skipped=0, start=time.time())
    path = tmp_path / "progress.jsonl"
    reader = LedgerReader(path)
    report_progress(state, "a", Outcome.MAX_EPOCHS, 0.1)
    with open(path, "a") as f:  # half a line: the other worker's write has not ended yet
        f.write('{"name": "other", "outcome": "max_epochs"')
    assert [e["name"] for e in reader.read()] == ["a"]
    with open(path, "a") as f:  # ... and ends before the next look
        f.write(', "seconds": 0.1}\n')
    report_progress(state, "b", Outcome.MAX_EPOCHS, 0.1)
    assert [e["name"] for e in reader.read()] == ["other", "b"]


def test_the_same_folders_next_sweep_starts_counting_again(tmp_path):
    state = SweepState(dir=str(tmp_path), total=5, n_skipped=1, start=time.time())
    ledger = Ledger(tmp_path / "progress.jsonl")
    reader = LedgerReader(ledger.path)
    for name in "abc":
        report_progress(state, name, Outcome.MAX_EPOCHS, 0.1)
    assert len(reader.read()) == 3
    ledger.path.unlink()  # what the orchestrator does before a sweep
    report_progress(state, "d", Outcome.MAX_EPOCHS, 0.1)
    assert [e["name"] for e in reader.read()] == ["d"] and list(reader.last) == ["d"]


def test_a_cell_written_twice_counts_once_with_its_result_and_a_shared_name_does_not_merge(
        tmp_path, capsys):
    """A job left over from a killed session finishes a cell, and this session's job, which
    waited for the claim, finds it done (skipped): one cell, its result. Two cells whose run
    names are equal (a grid over a key the name does not show) stay two cells."""
    from slnn.sweep.ledger import summarize

    state = SweepState(dir=str(tmp_path), total=4, n_skipped=0, start=time.time())
    ledger = Ledger(tmp_path / "progress.jsonl")
    report_progress(state, "x", Outcome.KILLED, 0.1, cell="0000-x")
    report_progress(state, "x", Outcome.MAX_EPOCHS, 0.1, cell="0000-x")  # the leftover job
    report_progress(state, "x", Outcome.SKIPPED, 0.1, cell="0000-x")     # this session's job
    report_progress(state, "y", Outcome.DIVERGED, 0.1, cell="0001-y")
    report_progress(state, "y", Outcome.MAX_EPOCHS, 0.1, cell="0002-y")  # same name, other cell
    cells = ledger.per_cell()
    assert sorted((e["cell"], e["outcome"]) for e in cells) == [
        ("0000-x", "max_epochs"), ("0001-y", "diverged"), ("0002-y", "max_epochs")]
    counts, line = summarize(cells, state.total)
    assert counts[Outcome.MAX_EPOCHS] == 2 and counts[Outcome.DIVERGED] == 1
    assert line.endswith("1 not run (of 4 cells)") and "0 skipped" in line
    # a cell that only ever had KILLED or SKIPPED lines keeps its last one
    report_progress(state, "z", Outcome.SKIPPED, 0.1, cell="0003-z")
    report_progress(state, "z", Outcome.KILLED, 0.1, cell="0003-z")
    assert [e["outcome"] for e in ledger.per_cell() if e["cell"] == "0003-z"] == ["killed"]


def test_the_progress_count_and_the_lost_cells_go_by_cell_not_by_line_or_name(tmp_path, capsys):
    from slnn.sweep.lost import lost_cells, lost_cells_line

    state = SweepState(dir=str(tmp_path), total=3, n_skipped=0, start=time.time())
    report_progress(state, "x", Outcome.MAX_EPOCHS, 0.1, cell="0000-x")  # a leftover job's line
    report_progress(state, "x", Outcome.SKIPPED, 0.1, cell="0000-x")     # this session's
    report_progress(state, "y", Outcome.MAX_EPOCHS, 0.1, cell="0001-y")
    reader = LedgerReader(tmp_path / "progress.jsonl", {"0000-x", "0001-y", "0002-y"})
    assert len(reader.read()) == 3 and sorted(reader.last) == ["0000-x", "0001-y"]
    ledger = Ledger(tmp_path / "progress.jsonl")
    # cell 0002-y shares its run name with 0001-y and never ran: it is the one lost
    todo = ["0000-x", "0001-y", "0002-y"]
    assert lost_cells(todo, ledger.per_cell(set(todo))) == ["0002-y"]
    line = lost_cells_line("grid", RuntimeError("job 7 cancelled"), todo, ledger.per_cell(set(todo)),
                           "2 finished (of 3 cells)")
    assert line.startswith("slnn: sweep grid lost 1 cell(s) when a job died (RuntimeError: job 7 "
                           "cancelled): 0002-y; 2 finished")
    # a line for a cell this session did not plan (a leftover job of another grid) is left out
    report_progress(state, "z", Outcome.MAX_EPOCHS, 0.1, cell="0009-z")
    assert {e["cell"] for e in ledger.per_cell(set(todo))} == {"0000-x", "0001-y"}
    assert len(ledger.per_cell()) == 3


_WRITER = """
import sys, time
from slnn.core.outcomes import Outcome
from slnn.sweep.ledger import report_progress
from slnn.sweep.state import SweepState
state = SweepState(dir=sys.argv[1], start=float(sys.argv[2]), total=2 * int(sys.argv[3]),
                   n_skipped=0)
for i in range(int(sys.argv[3])):
    report_progress(state, f"w{sys.argv[4]}-{i}", Outcome.MAX_EPOCHS, 0.31, val_error=0.162)
"""


def test_two_workers_appending_at_once_leave_whole_lines_the_launcher_counts_once(tmp_path):
    """joblib's workers are processes of their own: two appending at once must leave whole
    ledger lines, each once, and print nothing (only the launcher prints progress; CI once saw
    ``[48/80] ... left[49/80] ... left`` when each worker printed its own line)."""
    import subprocess
    import sys

    n = 250
    start = time.time()
    argv = [sys.executable, "-u", "-c", _WRITER, str(tmp_path), repr(start), str(n)]
    procs = [subprocess.Popen([*argv, str(k)], stdout=subprocess.PIPE) for k in (0, 1)]
    reader = LedgerReader(tmp_path / "progress.jsonl")
    seen = []
    while any(p.poll() is None for p in procs):
        seen += reader.read()  # while they write: never half a line
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == [b"", b""]
    seen += reader.read()
    assert sorted(e["name"] for e in seen) == sorted(f"w{k}-{i}" for k in (0, 1) for i in range(n))
    assert len(reader.last) == 2 * n


class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _progress(tmp_path, n: int, tty: bool):
    clock = FakeClock(1000.0)
    state = SweepState(dir=str(tmp_path), total=n, n_skipped=0, start=clock.t, label="g")
    cells = [f"{i:04d}-c" for i in range(n)]
    out, err = Stream(tty), Stream(False)
    return Progress(state, cells, workers=2, stream=out, err=err, clock=clock), state, cells, clock


def test_a_pipe_gets_a_line_at_most_every_10_s_and_5_percent_of_the_cells(tmp_path):
    """400 cells, one a second: a line every 20 cells (5 %, rarer than 10 s), 19 in all (none at
    the end: the sweep's summary line says it), with the counts, rate and time left computed
    here independently."""
    progress, state, cells, clock = _progress(tmp_path, 400, tty=False)
    for i, cell in enumerate(cells):
        clock.t += 1.0
        outcome = Outcome.FAILED if i % 10 == 0 else Outcome.MAX_EPOCHS
        report_progress(state, "c", outcome, 1.0, cell=cell, error="E: x" if i % 10 == 0 else None)
        progress.poll()
    progress.poll(final=True)
    lines = progress.stream.getvalue().splitlines()
    estimate = [ln for ln in lines if ln.startswith("slnn: sweep g: about")]
    # after max(3, 2 workers) cells: 3 s for 3 cells, so 400 s in all, 397 s left
    assert estimate == ["slnn: sweep g: about 0:06:40 for its 400 cells to run, 0:06:37 left "
                        "(estimated from the first 3 cells on 2 workers)"]
    progress_lines = [ln for ln in lines if ln not in estimate]
    assert len(progress_lines) == 19
    from test_cli import PROGRESS

    for k, ln in zip(range(20, 400, 20), progress_lines):
        m = PROGRESS.match(ln)
        assert m and int(m["k"]) == k and m["n"] == "400", ln
        failed = (k + 9) // 10
        left = 400 - k
        assert ln == (f"[{k}/400] {k - failed} finished, {failed} failed; 1.0 cells/s; "
                      f"about 0:{left // 60:02d}:{left % 60:02d} left"), ln
    # the failures on stderr: the first 20 each in one line, then one line for the rest
    errs = progress.err.getvalue().splitlines()
    assert len(errs) == 21 and errs[0] == "slnn: c failed: E: x"
    assert errs[-1].startswith("slnn: more cells failed: each one's error is in its log")


def test_a_terminal_gets_one_line_redrawn_with_carriage_returns(tmp_path, monkeypatch):
    # the line is cut to the terminal's width: a wide one here, whatever CI's COLUMNS says (80
    # cut the last letter); the cut itself is test_a_terminal_line_is_cut_to_its_width
    monkeypatch.setenv("COLUMNS", "200")
    progress, state, cells, clock = _progress(tmp_path, 10, tty=True)
    for cell in cells:
        clock.t += 0.5
        report_progress(state, "c", Outcome.MAX_EPOCHS, 0.5, cell=cell)
        progress.poll()
    progress.stop()
    text = progress.stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, ended once the sweep is
    draws = [d for d in text.rstrip("\n").split("\r") if d]
    assert len(draws) == 11  # once per look, and a last time as it stops
    assert draws[-1] == "[10/10] [####################] 100% 10 finished; 2.0 cells/s; " \
                        "about 0:00:00 left\x1b[K"
    assert draws[4].startswith("[5/10] [##########..........]  50% 5 finished")


def test_a_line_with_no_stream_is_dropped_as_print_would(monkeypatch):
    from slnn.tracking.console import say

    monkeypatch.setattr("sys.stdout", None)
    say("nowhere to go")  # no AttributeError


def test_a_terminal_line_is_cut_to_its_width(tmp_path, monkeypatch):
    """A redrawn line longer than the terminal would wrap, and \\r would then redraw only its
    last row: it is cut one column short of the width."""
    monkeypatch.setenv("COLUMNS", "40")
    progress, state, cells, clock = _progress(tmp_path, 10, tty=True)
    clock.t += 0.5
    report_progress(state, "c", Outcome.MAX_EPOCHS, 0.5, cell=cells[0])
    progress.poll()
    draws = [d for d in progress.stream.getvalue().split("\r") if d]
    assert draws and all(len(d.replace("\x1b[K", "")) <= 39 for d in draws), draws
