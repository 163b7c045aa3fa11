"""The ledger is read incrementally: each cell's place is right whoever else appended, and a cell
reads only what was appended since this process's previous cell."""

from __future__ import annotations

import os
import time

from slnn.core.outcomes import Outcome
from slnn.sweep.ledger import Ledger, report_progress


def places(text: str) -> list[str]:
    return [ln.split("]")[0] + "]" for ln in text.splitlines()]


def test_each_cell_prints_its_own_place_reading_only_what_was_appended(tmp_path, capsys):
    state = {"dir": str(tmp_path), "total": 6, "n_skipped": 1, "start": time.time()}
    ledger = Ledger(tmp_path / "progress.jsonl")
    report_progress(state, "a", Outcome.MAX_EPOCHS, 0.1, val_error=0.25)
    ledger.add(name="other worker", outcome=str(Outcome.MAX_EPOCHS), seconds=0.1)  # another process
    report_progress(state, "b", Outcome.MAX_EPOCHS, 0.1)
    # what was read already is not read again: garble it in place (same file, same size)
    data = ledger.path.read_bytes()
    garbled = b"".join(b"#" * (len(ln) - 1) + b"\n" for ln in data.splitlines(keepends=True))
    ledger.path.write_bytes(garbled)
    report_progress(state, "c", Outcome.DIVERGED, 0.1)
    lines = capsys.readouterr().out
    assert places(lines) == ["[2/6]", "[4/6]", "[5/6]"]
    assert "a: max_epochs (val_error 0.250, 0.10 s)" in lines


def test_a_line_another_worker_is_still_writing_is_counted_once_complete(tmp_path, capsys):
    state = {"dir": str(tmp_path), "total": 4, "n_skipped": 0, "start": time.time()}
    path = tmp_path / "progress.jsonl"
    report_progress(state, "a", Outcome.MAX_EPOCHS, 0.1)
    with open(path, "a") as f:  # half a line: the other worker's write has not ended yet
        f.write('{"name": "other", "outcome": "max_epochs"')
    with open(path, "a") as f:  # ... and ends before the next cell
        f.write(', "seconds": 0.1}\n')
    report_progress(state, "b", Outcome.MAX_EPOCHS, 0.1)
    assert places(capsys.readouterr().out) == ["[1/4]", "[3/4]"]


def test_the_same_folders_next_sweep_starts_counting_again(tmp_path, capsys):
    state = {"dir": str(tmp_path), "total": 5, "n_skipped": 1, "start": time.time()}
    ledger = Ledger(tmp_path / "progress.jsonl")
    for name in "abc":
        report_progress(state, name, Outcome.MAX_EPOCHS, 0.1)
    ledger.path.unlink()  # what the orchestrator does before a sweep
    state2 = {**state, "start": state["start"] + 1}
    report_progress(state2, "d", Outcome.MAX_EPOCHS, 0.1)
    assert places(capsys.readouterr().out) == ["[2/5]", "[3/5]", "[4/5]", "[2/5]"]
    assert [e["name"] for e in ledger.entries()] == ["d"]


def test_a_cell_written_twice_counts_once_with_its_result_and_a_shared_name_does_not_merge(
        tmp_path, capsys):
    """A job left over from a killed session finishes a cell, and this session's job, which
    waited for the claim, finds it done (skipped): one cell, its result. Two cells whose run
    names are equal (a grid over a key the name does not show) stay two cells."""
    from slnn.sweep.ledger import summarize

    state = {"dir": str(tmp_path), "total": 4, "n_skipped": 0, "start": time.time()}
    ledger = Ledger(tmp_path / "progress.jsonl")
    report_progress(state, "x", Outcome.KILLED, 0.1, cell="0000-x")
    report_progress(state, "x", Outcome.MAX_EPOCHS, 0.1, cell="0000-x")  # the leftover job
    report_progress(state, "x", Outcome.SKIPPED, 0.1, cell="0000-x")     # this session's job
    report_progress(state, "y", Outcome.DIVERGED, 0.1, cell="0001-y")
    report_progress(state, "y", Outcome.MAX_EPOCHS, 0.1, cell="0002-y")  # same name, other cell
    cells = ledger.per_cell()
    assert sorted((e["cell"], e["outcome"]) for e in cells) == [
        ("0000-x", "max_epochs"), ("0001-y", "diverged"), ("0002-y", "max_epochs")]
    counts, line = summarize(cells, state["total"])
    assert counts[Outcome.MAX_EPOCHS] == 2 and counts[Outcome.DIVERGED] == 1
    assert line.endswith("1 not run (of 4 cells)") and "0 skipped" in line
    # a cell that only ever had KILLED or SKIPPED lines keeps its last one
    report_progress(state, "z", Outcome.SKIPPED, 0.1, cell="0003-z")
    report_progress(state, "z", Outcome.KILLED, 0.1, cell="0003-z")
    assert [e["outcome"] for e in ledger.per_cell() if e["cell"] == "0003-z"] == ["killed"]


def test_the_progress_count_and_the_lost_cells_go_by_cell_not_by_line_or_name(tmp_path, capsys):
    from slnn.sweep.lost import lost_cells, lost_cells_line

    state = {"dir": str(tmp_path), "total": 3, "n_skipped": 0, "start": time.time()}
    report_progress(state, "x", Outcome.MAX_EPOCHS, 0.1, cell="0000-x")  # a leftover job's line
    report_progress(state, "x", Outcome.SKIPPED, 0.1, cell="0000-x")     # this session's
    report_progress(state, "y", Outcome.MAX_EPOCHS, 0.1, cell="0001-y")
    assert places(capsys.readouterr().out) == ["[1/3]", "[1/3]", "[2/3]"]
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
state = {"dir": sys.argv[1], "start": float(sys.argv[2]), "total": 2 * int(sys.argv[3]),
         "n_skipped": 0}
for i in range(int(sys.argv[3])):
    report_progress(state, f"w{sys.argv[4]}-{i}", Outcome.MAX_EPOCHS, 0.31, val_error=0.162)
"""


def test_two_unbuffered_workers_on_one_pipe_never_merge_their_progress_lines(tmp_path):
    """joblib's workers run with unbuffered standard streams (each ``write`` is a write to the pipe
    they share with the launcher), as ``python -u`` does: two of them printing at once must still
    give whole lines, each once. ``print(..., flush=True)`` failed this (CI saw ``[48/80] ...
    left[49/80] ... left``)."""
    import subprocess
    import sys

    from test_cli import PROGRESS

    n = 250
    start = time.time()
    argv = [sys.executable, "-u", "-c", _WRITER, str(tmp_path), repr(start), str(n)]
    read, write = os.pipe()
    procs = [subprocess.Popen([*argv, str(k)], stdout=write) for k in (0, 1)]
    os.close(write)
    with open(read, "rb") as f:
        out = f.read().decode()
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    lines = out.split("\n")
    assert lines[-1] == ""
    bad = [ln for ln in lines[:-1] if not PROGRESS.match(ln)]
    assert not bad, bad[:3]
    names = sorted(PROGRESS.match(ln)["name"] for ln in lines[:-1])
    assert names == sorted(f"w{k}-{i}" for k in (0, 1) for i in range(n))


def test_a_line_with_no_stream_is_dropped_as_print_would(monkeypatch):
    from slnn.tracking.console import say

    monkeypatch.setattr("sys.stdout", None)
    say("nowhere to go")  # no AttributeError
