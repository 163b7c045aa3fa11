"""slnn's commands behave as the tools users know: ``--version``, one-line errors, internal keys
kept out of sight, tab completion of every choice, a progress line redrawn on a terminal and a
few lines in a pipe, and a checkout left clean by the README's commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from test_cli import PROGRESS, clean_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(program: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    return subprocess.run([str(BIN / program), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**clean_env(), **(env or {})})


# --- --version, errors, internal keys, completion --------------------------------------------

@pytest.mark.parametrize("program", ["slnn-train", "slnn-report", "slnn-check"])
def test_version_names_slnn_hydra_and_mlflow_on_stdout(program, tmp_path):
    proc = run(program, "--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == (f"{program} {version('slnn')} (slnn {version('slnn')}, Hydra "
                           f"{version('hydra-core')}, MLflow {version('mlflow')}, Python "
                           f"{'.'.join(map(str, sys.version_info[:3]))})\n")


def one_line_error(proc, text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("slnn-train: error: ") and text in proc.stderr, proc.stderr


@pytest.mark.parametrize("args,text", [
    (["sweep.chunk=3"], "sweep.chunk is set by slnn's sweeper for its jobs, not by users"),
    (["-m", "seed=0,1", "+sweep.state=x.json"], "sweep.state is set by slnn's sweeper"),
    (["-m", "optim.lr=0.1,0.2", "--cfg", "job"],
     "--cfg shows one config and cannot be combined with -m: leave out -m"),
    (["-m", "optim.lr=0.1,abc", "data=iris_petal"],
     "optim.lr: Value 'abc' of type 'str' could not be converted to Float (in the cell "
     "optim.lr=abc data=iris_petal); no run was started"),
    (["sweep.stat=1"], "sweep.stat is not a config key: did you mean sweep.register?"),
    (["-m", "seed=0,1", "hydra.sweeper.search.monitor=bogus"],
     "hydra.sweeper.search.monitor='bogus' is set, but hydra.sweeper.search.space is empty"),
    (["-m", "+experiment=guide_reproduction", "hydra.sweeper.params.optim.lr=0.1"],
     "hydra.sweeper.params.optim is not a grid axis of this sweep: an axis whose name has a dot"),
    (["-m", "+experiment=guide_reproduction", 'hydra.sweeper.params.seed="range(0)"'],
     "the sweep has no cells: an axis has no values (range(0)?)"),
    (["-m", "seed=0,1", "train.epochs=1", "sweep.report_grid=reports/guide_vs_correct"],
     "sweep.report_grid=reports/guide_vs_correct: only a tuned study's report is compared with "
     "a grid (hydra.sweeper.search); drop sweep.report_grid"),
])
def test_a_bad_command_line_is_one_line_on_stderr(args, text, tmp_path):
    proc = run("slnn-train", *args, cwd=tmp_path)
    one_line_error(proc, text)
    assert "$VALUE" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_help_shows_no_internal_key(tmp_path):
    out = run("slnn-train", "--help", cwd=tmp_path).stdout
    sweep = re.search(r"^sweep:\n((?:  .*\n)+)", out, re.M).group(1)
    assert "force: false" in sweep and "state" not in sweep and "chunk" not in sweep


def complete(line: str, cwd: Path) -> list[str]:
    proc = run("slnn-train", "-sc", "query=bash", cwd=cwd, env={"COMP_LINE": f"slnn-train {line}"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_tab_completion_offers_every_choice_and_no_internal_key(tmp_path):
    from slnn.core.activations import ACTIVATIONS
    from slnn.core.rules import rule_choices

    assert complete("model.activation=", tmp_path) == sorted(
        f"model.activation={a}" for a in ACTIVATIONS)
    assert complete("update.rule=", tmp_path) == sorted(f"update.rule={r}" for r in rule_choices())
    assert complete("model.activation=t", tmp_path) == ["model.activation=tanh"]
    assert complete("tracking.plot=", tmp_path) == ["tracking.plot=false", "tracking.plot=true"]
    offered = complete("sweep.", tmp_path)
    assert "sweep.force=" in offered and not [k for k in offered if "state" in k or "chunk" in k]
    assert complete("data=iris_p", tmp_path) == ["data=iris_petal", "data=iris_petal_guide"]


# --- progress: a terminal and a pipe ---------------------------------------------------------

GRID = ["-m", "seed=range(12)", "update=input,kronecker", "data=iris_petal", "train.epochs=5",
        "tracking.plot=false", "tracking.log_model=false", "sweep.report=false"]


@pytest.mark.slow
def test_a_terminal_gets_one_line_redrawn_and_a_pipe_gets_no_line_per_cell(tmp_path):
    """The sweep on a pseudo-terminal (Python's pty) redraws one line with carriage returns
    and ends it once; the same grid in a pipe prints its start and end lines and at most one
    progress line per 5 % of its cells, never a line per cell."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN / "slnn-train"), *GRID, "hydra.sweep.dir=tty"], cwd=tmp_path,
                            stdout=slave, stderr=slave, env=clean_env())
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the terminal's other end closed: the command ended
            break
        if not data:
            break
        out += data
    assert proc.wait(timeout=600) == 0, out[-3000:]
    text = out.decode()
    lines = text.split("\r\n")  # a terminal turns each newline into \r\n
    draws = [d for ln in lines for d in ln.split("\r") if d.startswith("[")]
    assert draws, text[-2000:]
    assert draws[-1].startswith("[24/24] [####################] 100% 24 finished; ")
    assert all(d.endswith("\x1b[K") for d in draws)  # each draw clears what the last left
    # every whole line is slnn's own; the redrawn one is ended once, by the sweep's end
    whole = [ln.split("\r")[-1] for ln in lines if ln]
    assert [ln for ln in whole if not ln.startswith("slnn: ")] == [draws[-1]], whole
    assert whole[-1].startswith("slnn: sweep grid-") and " 24 finished, " in whole[-1]

    pipe = subprocess.run([str(BIN / "slnn-train"), *GRID, "sweep.force=true",
                           "hydra.sweep.dir=pipe"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=clean_env())
    assert pipe.returncode == 0, pipe.stderr[-3000:]
    assert "\r" not in pipe.stdout and "\x1b" not in pipe.stdout
    other = [ln for ln in pipe.stdout.splitlines() if not ln.startswith("slnn: ")]
    assert all(PROGRESS.match(ln) for ln in other), other
    assert len(other) <= 19  # 5 % of 24 cells is 2: at most one line per 2 cells, not at the end
    assert not re.search(r"^slnn: \S+: \w+ \(", pipe.stdout, re.M)  # no cell's own line
    # ... which is the last line of its log instead
    logs = sorted((tmp_path / "pipe" / "cells").glob("*/run.log"))
    assert len(logs) == 24
    assert all(re.match(r"slnn: \S+: \w+ \(val_error \d\.\d{3}, [\d.]+ s\)$",
                        p.read_text().splitlines()[-1]) for p in logs)


# --- a clean checkout ------------------------------------------------------------------------

@pytest.mark.slow
def test_the_readmes_commands_leave_a_clone_clean(tmp_path):
    """A clone of the repository, the commands a new user types there (the venv's, with the
    clone's own code first on the path): a single run, a small named study, a small ad-hoc grid,
    slnn-report; then ``git status`` shows nothing, though every kind of file was made."""
    clone = tmp_path / "slnn"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    env = {"PYTHONPATH": str(clone)}
    commands = [
        ["slnn-train", "data=iris_petal", "train.epochs=3"],
        ["slnn-train", "-m", "+experiment=guide_reproduction", "seed=0", "optim.lr=0.1",
         "train.epochs=3"],
        ["slnn-train", "-m", "update=input,kronecker", "seed=range(2)", "data=iris_petal",
         "train.epochs=3"],
        ["slnn-report"],
    ]
    for program, *args in commands:
        proc = run(program, *args, cwd=clone, env=env)
        assert proc.returncode == 0, (program, args, proc.stderr[-3000:])
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status
    ignored = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=clone,
                             capture_output=True, text=True, check=True).stdout
    for made in ("mlflow.db", "mlruns/", "multirun/", "outputs/", "reports/sweep-"):
        assert f"!! {made}" in ignored, ignored  # made, and ignored
    shutil.rmtree(clone, ignore_errors=True)


@pytest.mark.slow
def test_a_named_studys_grid_axis_narrowed_on_the_command_line_runs_every_cell(tmp_path):
    """``hydra.sweeper.params.seed=...`` replaces an axis the study defines: the launcher
    composes each job without the study, so that override once failed every job ("Could not
    override 'hydra.sweeper.params.seed'") after the parent run was made."""
    proc = run("slnn-train", "-m", "+experiment=guide_reproduction",
               'hydra.sweeper.params.seed="range(2)"', "optim.lr=0.1", "train.epochs=3",
               f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "sweep.report=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    n = int(re.search(r"\(of (\d+) cells\)", last).group(1))
    done = sum(int(k) for k in re.findall(r"(\d+) (?:finished|diverged|shape_mismatch)", last))
    assert n == done == 8 and " 0 failed" in last, last  # 2 data x 2 rules x 2 seeds, one lr
