"""Sweeps run for real: ``slnn-train -m ...`` into a SQLite store of each test's own in ``tmp_path``.

    python -m pytest tests/test_sweep.py            # all: 4 to 6 minutes on 2 busy cores
    python -m pytest tests/test_sweep.py -m 'not slow'

What the sweep machinery promises, one test each: a parallel grid records one FINISHED child run
per cell under one parent; an unexpected failure is recorded, counted and makes the exit code
non-zero while expected outcomes (diverged, shape_mismatch) do not; a bad config or CSV fails
before any run starts; a finished sweep run again skips every cell (unless ``sweep.force=true``);
an interrupted sweep, or one whose worker died, run again completes only what is missing and
leaves nothing RUNNING; every study in ``experiments/`` composes and runs; a parallel sweep records
into a real ``mlflow server`` over HTTP.
"""

from __future__ import annotations

import collections

import copy
import itertools
import json
import logging
import os
import pickle
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from pathlib import Path

import hydra
import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

import slnn.app.cli
import slnn.app.run
import slnn.app.schema
from slnn.app.schema import config_hash, to_config
from slnn.sweep.state import SweepState

SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")  # the venv's console script
EXPERIMENTS = sorted(f.name.removesuffix(".yaml") for f in slnn.app.schema.conf_group("experiment")
                     .iterdir() if f.name.endswith(".yaml"))
FINISHED_OUTCOMES = {"converged", "max_epochs", "early_stopped"}
EXPECTED_OUTCOMES = FINISHED_OUTCOMES | {"diverged", "shape_mismatch"}
# the studies that search (hydra.sweeper.search) instead of running a grid
SEARCHES = {n for n in EXPERIMENTS if "search:" in (slnn.app.schema.conf_group("experiment")
                                                     / f"{n}.yaml").read_text()}

START = re.compile(r"^slnn: sweep (?P<study>\S+): (?P<cells>\d+) cells: (?P<skipped>\d+) reused, "
                   r"(?:\d+ rerun because the \w+ changed, )*\d+ new(?:, \d+ rerun \(sweep.force=true\))?; "
                   r"(?P<to_run>\d+) to run \(parent run (?P<parent>\w+)\)", re.M)
SUMMARY = re.compile(
    r"^slnn: sweep (?P<study>\S+): (?P<finished>\d+) finished, (?P<failed>\d+) failed, "
    r"(?P<diverged>\d+) diverged, (?P<shape_mismatch>\d+) shape_mismatch, (?P<skipped>\d+) skipped"
    r"(?:, (?P<killed>\d+) killed)?(?:, (?P<not_run>\d+) not run)? \(of (?P<total>\d+) cells\)", re.M)
PROGRESS = re.compile(r"^\[(?P<k>\d+)/(?P<n>\d+)\] \d+ finished", re.M)  # the launcher's
CELL_LINE = re.compile(r"^slnn: (?P<name>\S+): (?P<outcome>\w+) \(", re.M)  # ends a cell's log


# --- helpers --------------------------------------------------------------------------------

def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def sweep_args(tmp_path: Path, *grid: str, log_model: bool = False) -> list[str]:
    """``-m <grid>`` recording into ``tmp_path``'s own store, with a known sweep folder.

    The learning-curve plot and the pyfunc model are left out (they cost most of a small run's
    time and nothing here depends on them) unless ``log_model``.
    """
    extra = [] if log_model else ["tracking.log_model=false"]
    return ["-m", *grid, f"tracking.uri={sqlite_uri(tmp_path)}", "sweep.report=false",
            "tracking.plot=false", f"hydra.sweep.dir={tmp_path}/multirun", *extra]


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty, migrated MLflow SQLite store: creating one costs ~10 s of schema migrations."""
    folder = tmp_path_factory.mktemp("empty_store")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)  # MLflow resolves its default artifact root against the working directory
        client_for(sqlite_uri(folder)).search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def store(empty_store, tmp_path) -> str:
    """A new store of the test's own at ``tmp_path/mlflow.db`` (a copy of ``empty_store``)."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return sqlite_uri(tmp_path)


def process_started_ms(owner: str) -> float:
    """When the process named by a run's ``slnn.owner`` (host/boot/pidns/pid/start ticks) began,
    in ms since the epoch: the kernel's boot time plus its start in clock ticks."""
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return (boot + int(owner.rsplit("/", 1)[1]) / os.sysconf("SC_CLK_TCK")) * 1000


def processes_with(marker: str) -> list[int]:
    """The pids of live processes whose environment holds ``marker``."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours to read
            pass
    return found


def check(proc: subprocess.CompletedProcess, code: int = 0) -> subprocess.CompletedProcess:
    assert proc.returncode == code, (
        f"exit {proc.returncode}, wanted {code}\n--- stdout\n{proc.stdout[-3000:]}\n"
        f"--- stderr\n{proc.stderr[-3000:]}")
    return proc


def one(pattern: re.Pattern, text: str) -> dict:
    """The single line of ``text`` matching ``pattern``, as a dict (numbers as ints)."""
    found = list(pattern.finditer(text))
    assert len(found) == 1, f"{len(found)} lines match {pattern.pattern!r} in:\n{text[-3000:]}"
    return {k: (int(v) if v and v.isdigit() else v) for k, v in found[0].groupdict().items()}


def client_for(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str) -> list:
    """Every run of every experiment in the store (any status)."""
    from mlflow.entities import ViewType

    client = client_for(uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return list(client.search_runs(ids, run_view_type=ViewType.ALL, max_results=5000))


def split_runs(runs: list) -> tuple[list, list]:
    """``(parents, cells)``: sweep parent runs and the runs of cells."""
    parents = [r for r in runs if r.data.tags.get("slnn.sweep") == "true"]
    return parents, [r for r in runs if r.data.tags.get("slnn.sweep") != "true"]


def summary_counts(cells: list) -> dict:
    """What the summary line should say, computed from the runs' ``slnn.outcome`` tags."""
    c = Counter(r.data.tags.get("slnn.outcome") for r in cells)
    return {"finished": sum(c[o] for o in FINISHED_OUTCOMES), "failed": c["failed"],
            "diverged": c["diverged"], "shape_mismatch": c["shape_mismatch"]}


def finished_per_hash(runs: list) -> Counter:
    return Counter(r.data.tags["slnn.config_hash"] for r in runs
                   if r.info.status == "FINISHED" and "slnn.config_hash" in r.data.tags)


def expected_hashes(compose, *overrides_per_cell: list[str]) -> set[str]:
    """Config hashes of cells composed here, independently of the sweeper."""
    return {config_hash(compose(*ov)) for ov in overrides_per_cell}


def grid_cells(**grid: list[str]) -> list[list[str]]:
    keys = list(grid)
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*grid.values())]


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)  # read-write: a killed writer's hot journal is rolled back
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def has_final_weights(client, run) -> bool:
    return "weights/final.npy" in {f.path for f in client.list_artifacts(run.info.run_id, "weights")}


def ledger(tmp_path: Path) -> list[dict]:
    path = tmp_path / "multirun" / "progress.jsonl"
    if not path.exists():
        return []
    # a line being appended may be incomplete: count whole lines only
    return [json.loads(ln) for ln in path.read_text().splitlines(keepends=True) if ln.endswith("\n")]


def child_pids(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for c in child_pids(todo.pop()) - found:
            found.add(c)
            todo.append(c)
    return found


def start_sweep(args: list[str], tmp_path: Path, log_name: str) -> subprocess.Popen:
    """``slnn-train args`` in its own process group (so a signal reaches the whole sweep)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with open(tmp_path / f"{log_name}.out", "w") as out, open(tmp_path / f"{log_name}.err", "w") as err:
        return subprocess.Popen([str(SLNN_TRAIN), *args], cwd=tmp_path, env=env, stdout=out,
                                stderr=err, start_new_session=True)


def end_group(proc: subprocess.Popen) -> None:
    """Make sure nothing of a sweep started here outlives its test."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=30)


def wait_for(condition, timeout: float, proc: subprocess.Popen, what: str, tmp_path: Path, log: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}:\n"
                        f"{(tmp_path / f'{log}.err').read_text()[-3000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {what} after {timeout} s")


# --- 1. a parallel grid -----------------------------------------------------------------------

@pytest.mark.slow
def test_parallel_grid_records_one_finished_child_per_cell_under_one_parent(tmp_path, slnn_train,
                                                                           compose):
    grid = {"update": ["input", "kronecker"], "model.activation": ["sigmoid", "tanh"],
            "optim.lr": ["0.1", "1.0"]}
    proc = check(slnn_train(sweep_args(
        tmp_path, *(f"{k}={','.join(v)}" for k, v in grid.items()), "data=iris_petal",
        "train.epochs=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", log_model=True),
        cwd=tmp_path))

    uri = sqlite_uri(tmp_path)  # created by the sweep: no store existed before
    assert integrity(tmp_path / "mlflow.db") == "ok"
    parents, cells = split_runs(all_runs(uri))
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["slnn.n_cells"] == "8"
    assert one(START, proc.stdout)["parent"] == parent.info.run_id
    assert len(cells) == 8
    assert {r.data.tags.get("mlflow.parentRunId") for r in cells} == {parent.info.run_id}
    assert {r.info.experiment_id for r in cells + parents} == {parent.info.experiment_id}
    assert {r.info.status for r in cells} == {"FINISHED"}
    # one run per cell: the grid's 8 configurations, each exactly once
    combos = Counter((r.data.params["update.rule"], r.data.params["model.activation"],
                      float(r.data.params["optim.lr"])) for r in cells)
    assert combos == Counter(itertools.product(grid["update"], grid["model.activation"],
                                               [float(v) for v in grid["optim.lr"]]))
    cell_overrides = [ov + ["data=iris_petal", "train.epochs=3"] for ov in grid_cells(**grid)]
    assert finished_per_hash(cells) == Counter(expected_hashes(compose, *cell_overrides))

    # joblib's two workers were started while the grid was being prepared (slnn.sweep.warm), so
    # each began before the parent run existed; Hydra's launcher alone starts them after it
    workers = {r.data.tags["slnn.owner"] for r in cells}
    assert 1 <= len(workers) <= 2
    assert all(process_started_ms(owner) < parent.info.start_time for owner in workers), (
        [process_started_ms(o) - parent.info.start_time for o in workers])

    # each cell's own line ends its log in its folder; none reaches the pipe (a short sweep)
    assert not CELL_LINE.search(proc.stdout)
    progress = [CELL_LINE.match(p.read_text().splitlines()[-1]).groupdict()
                for p in (tmp_path / "multirun").rglob("cells/*/run.log")]
    assert len(progress) == 8
    assert Counter(p["name"] for p in progress) == Counter(r.info.run_name for r in cells)
    outcome_of = {r.info.run_name: r.data.tags["slnn.outcome"] for r in cells}
    assert all(outcome_of[p["name"]] == p["outcome"] for p in progress)

    summary = one(SUMMARY, proc.stdout)
    assert summary["total"] == 8
    assert {k: summary[k] for k in ("finished", "failed", "diverged", "shape_mismatch")} == \
        summary_counts(cells)
    assert summary["skipped"] == 0 and summary["not_run"] is None
    assert parent.data.tags["slnn.summary"].startswith(f"{summary['finished']} finished")

    # two launcher jobs, one per worker, that took the 8 cells from one shared list: one list
    # file, one mark per cell, and each cell's folder was made by the job that took it
    [sweep_dir] = {p.parent for p in (tmp_path / "multirun").rglob("slnn_sweep.json")}
    assert [p.name for p in (sweep_dir / "jobs").glob("chunk_*.pkl")] == ["chunk_0000.pkl"]
    assert len(pickle.loads((sweep_dir / "jobs" / "chunk_0000.pkl").read_bytes())) == 8
    state = SweepState.load(sweep_dir / "slnn_sweep.json")
    assert state.shared is True and state.taken.startswith("taken-")
    assert [p.name for p in (sweep_dir / "jobs").glob("taken*")] == [state.taken]
    marks = sorted(p.name for p in (sweep_dir / "jobs" / state.taken).iterdir())
    assert marks == sorted(p.name for p in (sweep_dir / "cells").iterdir())
    assert len(marks) == 8


# --- 2. failures, expected and not ----------------------------------------------------------

@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """Run ``slnn-train`` in this process, in ``tmp_path``; undo what Hydra and the sweep change
    (the sweep sets ``MLFLOW_TRACKING_URI``, thread counts, ... in its launching process)."""
    environ = dict(os.environ)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str) -> int:
        """``slnn-train args`` here; the exit code (0 if it returned)."""
        monkeypatch.setattr(sys, "argv", ["slnn-train", *args])
        GlobalHydra.instance().clear()
        try:
            slnn.app.cli.main()
        except SystemExit as e:
            return 0 if e.code is None else e.code
        return 0

    yield run
    os.environ.clear()
    os.environ.update(environ)
    GlobalHydra.instance().clear()
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


FAIL_AT_LR = 0.02


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on_but_exits_non_zero(
        in_process, store, tmp_path, monkeypatch, capsys):
    real_train = slnn.app.run.train

    def train(data, c, **kw):
        if c.optim.lr == FAIL_AT_LR:
            raise RuntimeError(f"injected failure at lr={c.optim.lr}")
        return real_train(data, c, **kw)

    monkeypatch.setattr(slnn.app.run, "train", train)
    code = in_process(*sweep_args(tmp_path, f"optim.lr=0.01,{FAIL_AT_LR},1000",
                                  "model.activation=linear", "update=input", "data=iris_petal",
                                  "train.epochs=3"))
    assert code != 0
    out = capsys.readouterr().out

    parents, cells = split_runs(all_runs(store))
    assert len(parents) == 1 and len(cells) == 3
    assert parents[0].info.status == "FAILED"  # the sweep had an unexpected failure
    by_lr = {float(r.data.params["optim.lr"]): r for r in cells}
    assert set(by_lr) == {0.01, FAIL_AT_LR, 1000.0}
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}

    failed = by_lr[FAIL_AT_LR]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["slnn.outcome"] == "failed"
    assert "RuntimeError" in failed.data.tags["slnn.reason"]
    assert f"injected failure at lr={FAIL_AT_LR}" in failed.data.tags["slnn.reason"]

    diverged = by_lr[1000.0]
    assert diverged.info.status == "FINISHED"
    assert diverged.data.tags["slnn.outcome"] == "diverged"

    fine = by_lr[0.01]
    assert fine.info.status == "FINISHED"
    assert fine.data.tags["slnn.outcome"] in FINISHED_OUTCOMES

    summary = one(SUMMARY, out)
    assert (summary["failed"], summary["diverged"], summary["finished"], summary["total"]) == (1, 1, 1, 3)


@pytest.mark.slow
def test_expected_outcomes_alone_exit_zero(tmp_path, store, slnn_train):
    # linear units with eta = 1000 blow up; the guide's rule cannot run on iris (4 + 1 != 3)
    proc = check(slnn_train(sweep_args(
        tmp_path, "update=input,kronecker", "data=iris", "model.activation=linear", "optim.lr=1000",
        "train.epochs=3"), cwd=tmp_path))
    parents, cells = split_runs(all_runs(store))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    outcomes = {r.data.params["update.rule"]: r.data.tags["slnn.outcome"] for r in cells}
    assert outcomes == {"input": "diverged", "kronecker": "shape_mismatch"}
    assert {r.info.status for r in cells} == {"FINISHED"}
    summary = one(SUMMARY, proc.stdout)
    assert (summary["diverged"], summary["shape_mismatch"], summary["failed"]) == (1, 1, 0)


def test_cells_a_failed_job_never_ran_make_the_sweep_fail(in_process, store, tmp_path, monkeypatch,
                                                          capsys):
    import slnn.sweep.worker

    real = slnn.sweep.worker.run_cell
    calls = []

    def run_cell(*args, **kwargs):  # the job dies outside a cell after two, e.g. out of memory
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the job could not go on")
        return real(*args, **kwargs)

    monkeypatch.setattr(slnn.sweep.worker, "run_cell", run_cell)
    code = in_process(*sweep_args(tmp_path, "seed=range(4)", "data=iris_petal", "train.epochs=3"))
    out = capsys.readouterr()
    summary = one(SUMMARY, out.out)
    parents, cells = split_runs(all_runs(store))
    assert len(cells) == 2 and summary["not_run"] == 2  # the job's last two cells never ran
    assert "slnn: a sweep job failed: RuntimeError: the job could not go on" in out.err
    assert code != 0
    assert parents[0].info.status == "FAILED"


def test_a_resumed_sweep_parent_names_the_process_running_it(in_process, store, tmp_path):
    args = sweep_args(tmp_path, "seed=0,1", "data=iris_petal", "train.epochs=3")
    assert in_process(*args) == 0
    [parent] = split_runs(all_runs(store))[0]
    # as if an earlier process, since ended, had run the sweep the first time
    gone = subprocess.Popen(["true"])
    gone.wait()
    client_for(store).set_tag(parent.info.run_id, "slnn.pid", str(gone.pid))
    assert in_process(*args) == 0
    [again] = split_runs(all_runs(store))[0]
    assert again.info.run_id == parent.info.run_id  # the premise: the parent was reopened
    assert again.data.tags["slnn.pid"] == str(os.getpid())


# --- 3. a bad config stops the sweep before it starts ---------------------------------------

def assert_no_runs(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    assert not db.exists() or all_runs(sqlite_uri(tmp_path)) == []
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_a_bad_value_in_any_cell_fails_the_sweep_with_one_line_and_no_runs(tmp_path, slnn_train):
    proc = slnn_train(sweep_args(tmp_path, "optim.lr=0.1,-1", "data=iris_petal"), cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "optim.lr" in lines[0]
    assert "optim.lr=-1" in lines[0]  # the cell
    assert "Traceback" not in proc.stdout + proc.stderr
    assert PROGRESS.search(proc.stdout) is None
    assert_no_runs(tmp_path)


@pytest.mark.slow
def test_a_bad_grid_under_joblib_leaves_no_worker_behind(tmp_path, slnn_train, monkeypatch):
    # joblib's workers start while the grid is checked (slnn.sweep.warm): a grid that fails its
    # checks still fails with its one line, and stops them rather than leaving them to idle
    marker = f"SLNN_TEST_MARKER_{os.getpid()}_{time.monotonic_ns()}"
    monkeypatch.setenv(marker, "1")
    started = time.monotonic()
    proc = slnn_train(sweep_args(tmp_path, "optim.lr=0.1,-1", "data=iris_petal",
                                 "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"), cwd=tmp_path)
    took = time.monotonic() - started
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "optim.lr=-1" in lines[0], proc.stderr
    assert_no_runs(tmp_path)
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == [], f"workers left {took:.1f} s after the start"


@pytest.mark.slow
def test_joblib_workers_stop_when_the_jobs_return_and_nothing_they_wrote_is_lost(
        tmp_path, slnn_train, monkeypatch):
    # once every job has returned, the launcher stops joblib's idle workers outright
    # (slnn.sweep.warm.release) and exits without the interpreter's last collections
    # (slnn.app.shutdown): what the cells said must be in their logs, the workers must be gone
    # when the command ends, and the store must be whole in its file (no write-ahead log left
    # beside it)
    marker = f"SLNN_TEST_MARKER_{os.getpid()}_{time.monotonic_ns()}"
    monkeypatch.setenv(marker, "1")
    (tmp_path / "talky.py").write_text(textwrap.dedent("""\
        import os
        import sys

        def step(x, net, z, t, delta):  # the gradient; says once per process who ran it
            if not getattr(step, "said", False):
                step.said = True
                sys.stdout.write(f"talky-rule-in-pid-{os.getpid()}\\n")  # no flush
            return x.T @ delta / len(x)
        """))
    proc = check(slnn_train(sweep_args(
        tmp_path, "update=custom", "update.fn=talky.py:step", "seed=0,1,2,3", "data=iris_petal",
        "train.epochs=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"), cwd=tmp_path))
    ledger = [json.loads(line) for line in
              next((tmp_path / "multirun").rglob("progress.jsonl")).read_text().splitlines()]
    cell_pids = {e["pid"] for e in ledger if e.get("outcome") == "max_epochs"}
    assert len(ledger) == 4 and 1 <= len(cell_pids) <= 2 and os.getpid() not in cell_pids
    # what the rule printed went, as all a cell says, to the cell's log, written before its job
    # returned
    logs = "".join(p.read_text() for p in (tmp_path / "multirun").rglob("cells/*/run.log"))
    said = {int(p) for p in re.findall(r"talky-rule-in-pid-(\d+)", logs)}
    assert cell_pids <= said, (cell_pids, logs[-2000:])
    assert processes_with(marker) == []  # no worker outlived the command
    assert not (tmp_path / "mlflow.db-wal").exists()
    assert integrity(tmp_path / "mlflow.db") == "ok"
    assert {r.info.status for r in all_runs(sqlite_uri(tmp_path))} == {"FINISHED"}


@pytest.mark.slow
def test_a_malformed_csv_fails_the_sweep_with_one_line_and_no_runs(tmp_path, slnn_train):
    csv = tmp_path / "flowers.csv"
    csv.write_text("a,b,label\n1.0,2.0,x\n1.5,oops,y\n2.0,1.0,x\n")
    proc = slnn_train(sweep_args(tmp_path, "seed=0,1", "data=csv", f"data.path={csv}",
                                     "data.target=label"), cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "flowers.csv" in lines[0]
    assert "line 3" in lines[0] and "'oops'" in lines[0]  # where the bad value is
    assert_no_runs(tmp_path)


# --- 4. resume ------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_finished_sweep_run_again_skips_every_cell_unless_forced(tmp_path, store, slnn_train,
                                                                  compose):
    grid = ("seed=range(6)", "update=input,kronecker", "data=iris_petal", "train.epochs=3")
    args = sweep_args(tmp_path, *grid, "hydra.sweeper.chunks=1")  # one Hydra job: ~1 s less per cell
    uri = store
    hashes = expected_hashes(compose, *[ov + ["data=iris_petal", "train.epochs=3"] for ov in grid_cells(
        seed=[str(s) for s in range(6)], update=["input", "kronecker"])])
    assert len(hashes) == 12

    first = check(slnn_train(args, cwd=tmp_path))
    start = one(START, first.stdout)
    assert (start["cells"], start["skipped"], start["to_run"]) == (12, 0, 12)
    assert finished_per_hash(all_runs(uri)) == Counter(hashes)

    again = check(slnn_train(args, cwd=tmp_path))
    start2 = one(START, again.stdout)
    assert (start2["cells"], start2["skipped"], start2["to_run"]) == (12, 12, 0)
    assert "12 cells: 12 reused, 0 new; 0 to run" in again.stdout
    assert start2["parent"] == start["parent"]  # the same grid resumes under the same parent
    assert PROGRESS.search(again.stdout) is None
    summary = one(SUMMARY, again.stdout)
    assert (summary["skipped"], summary["finished"], summary["total"]) == (12, 0, 12)
    runs = all_runs(uri)
    assert finished_per_hash(runs) == Counter(hashes)  # nothing new
    parents, _ = split_runs(runs)
    assert [p.info.run_id for p in parents] == [start["parent"]]
    assert parents[0].info.status == "FINISHED"

    forced = check(slnn_train(args + ["sweep.force=true"], cwd=tmp_path))
    start3 = one(START, forced.stdout)
    assert (start3["skipped"], start3["to_run"]) == (0, 12)
    assert start3["parent"] != start["parent"]
    runs = all_runs(uri)
    assert finished_per_hash(runs) == Counter({h: 2 for h in hashes})
    parents, cells = split_runs(runs)
    assert {p.info.run_id for p in parents} == {start["parent"], start3["parent"]}
    new = [r for r in cells if r.data.tags["mlflow.parentRunId"] == start3["parent"]]
    assert finished_per_hash(new) == Counter(hashes)


# --- 5. interrupted sweeps ------------------------------------------------------------------

KILL_GRID = ("seed=range(6)", "update=input,kronecker", "model.activation=sigmoid,tanh",
             "data=iris_petal", "train.epochs=200")
KILL_CELLS = 24


def assert_finished_runs_are_intact(uri: str) -> None:
    client = client_for(uri)
    for run in all_runs(uri):
        if run.info.status == "FINISHED" and run.data.tags.get("slnn.sweep") != "true":
            outcome = run.data.tags.get("slnn.outcome")
            assert outcome in EXPECTED_OUTCOMES, (run.info.run_name, outcome)
            assert has_final_weights(client, run) or outcome == "shape_mismatch", run.info.run_name
            assert {"curves/val_loss", "final/test_error"} <= set(run.data.metrics), run.info.run_name


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])  # Ctrl-C; and a crash, an OOM kill, kill -9
def test_an_interrupted_sweep_run_again_completes_exactly_what_is_missing(sig, tmp_path, store,
                                                                          slnn_train):
    args = sweep_args(tmp_path, *KILL_GRID)
    uri = store
    proc = start_sweep(args, tmp_path, "first")
    try:
        wait_for(lambda: len(ledger(tmp_path)) >= 5, 240, proc, "5 finished cells", tmp_path, "first")
        os.killpg(proc.pid, getattr(signal, sig))
        proc.wait(timeout=120)
    finally:
        end_group(proc)
    assert proc.returncode != 0
    if sig == "SIGINT":  # a killed process cannot say anything
        assert "interrupted" in (tmp_path / "first.err").read_text()

    # (a) the store is sound and every FINISHED run has all it should
    runs = all_runs(uri)
    assert integrity(tmp_path / "mlflow.db") == "ok"
    assert_finished_runs_are_intact(uri)
    parents, cells = split_runs(runs)
    # Ctrl-C closes the parent; after kill -9 it is left RUNNING for the next sweep to reap
    assert len(parents) == 1
    assert parents[0].info.status == ("KILLED" if sig == "SIGINT" else "RUNNING")
    done_before = finished_per_hash(cells)
    assert 5 <= sum(done_before.values()) < KILL_CELLS, "the signal came too late to test anything"
    assert set(done_before.values()) == {1}
    interrupted_ids = {r.info.run_id for r in cells}

    # (b) the same command finishes the rest: one FINISHED run per cell, nothing left RUNNING
    again = check(slnn_train(args, cwd=tmp_path))
    start = one(START, again.stdout)
    assert (start["cells"], start["skipped"]) == (KILL_CELLS, len(done_before))
    assert start["parent"] == parents[0].info.run_id
    if sig == "SIGKILL":
        assert re.search(r"marked [1-9]\d* dead run\(s\) KILLED", again.stdout)
    runs = all_runs(uri)
    parents, cells = split_runs(runs)
    per_hash = finished_per_hash(cells)
    assert len(per_hash) == KILL_CELLS and set(per_hash.values()) == {1}
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    for r in cells:
        if r.info.run_id in interrupted_ids and r.data.tags["slnn.config_hash"] not in done_before:
            assert r.info.status in ("KILLED", "FAILED"), (r.info.run_name, r.info.status)
            assert r.data.tags.get("slnn.outcome") in ("killed", "failed")
    assert_finished_runs_are_intact(uri)
    [parent] = parents
    assert parent.info.status == "FINISHED"
    # a parent reaped after kill -9 and reopened by the rerun keeps no stale outcome
    assert "slnn.outcome" not in parent.data.tags and "slnn.reason" not in parent.data.tags


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_its_run_killed_and_the_rerun_completes(tmp_path, store,
                                                                               slnn_train):
    grid = sweep_args(tmp_path, "seed=range(2)", "update=input,kronecker",
                      "model.activation=sigmoid,tanh", "data=iris_petal", "train.epochs=200")
    uri = store
    proc = start_sweep(grid + ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path, "first")
    client = client_for(uri)
    try:
        def kill_a_worker_with_an_open_run():
            try:
                exp_ids = [e.experiment_id for e in client.search_experiments()]
                running = client.search_runs(exp_ids, "attributes.status = 'RUNNING'")
            except Exception:  # noqa: BLE001 - the store is busy: try again
                return None
            workers = descendants(proc.pid)
            for run in running:
                pid = int(run.data.tags.get("slnn.pid", "0"))
                if "mlflow.parentRunId" not in run.data.tags or pid not in workers:
                    continue
                os.kill(pid, signal.SIGSTOP)  # freeze it, then look again: no race with its close
                try:
                    still_open = client.get_run(run.info.run_id).info.status == "RUNNING"
                except Exception:  # noqa: BLE001 - stopped while holding the store's lock
                    still_open = False
                if still_open:
                    os.kill(pid, signal.SIGKILL)
                    return run.info.run_id
                os.kill(pid, signal.SIGCONT)
            return None

        victim = wait_for(kill_a_worker_with_an_open_run, 240, proc, "a worker with an open run",
                          tmp_path, "first")
        proc.wait(timeout=120)
    finally:
        end_group(proc)
    assert proc.returncode != 0

    # the same grid again, with the basic launcher (no worker start-up; the cells are the same)
    again = check(slnn_train(grid, cwd=tmp_path))
    assert one(START, again.stdout)["cells"] == 8
    runs = all_runs(uri)
    killed = client_for(uri).get_run(victim)
    assert killed.info.status == "KILLED"
    assert killed.data.tags["slnn.outcome"] == "killed"
    _, cells = split_runs(runs)
    per_hash = finished_per_hash(cells)
    assert len(per_hash) == 8 and set(per_hash.values()) == {1}
    assert killed.data.tags["slnn.config_hash"] in per_hash  # and the rerun did that cell
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]


# --- 6. the studies in experiments/ -----------------------------------------------------------

def compose_study(name: str, *variants: tuple[str, ...]) -> list:
    """``[(cfg, sweeper params)]`` for ``+experiment=name`` plus each variant's overrides (one
    variant, none, by default), composed as ``slnn-train`` does."""
    out = []
    with hydra.initialize_config_module(slnn.app.schema.CONF_PACKAGE, version_base="1.3"):
        for overrides in variants or [()]:
            cfg = hydra.compose("config", overrides=[f"+experiment={name}", *overrides],
                                return_hydra_config=True)
            params = dict(cfg.hydra.sweeper.params or {})
            with open_dict(cfg):
                del cfg["hydra"]
            out.append((cfg, params))
    return out


def swept_values(key: str, values: str) -> list[str]:
    override = OverridesParser.create().parse_override(f"{key}={values}")
    return [str(v) for v in override.sweep_string_iterator()]


def is_group(key: str) -> bool:
    from hydra.core.config_store import ConfigStore

    try:  # one of slnn's YAML groups (the repo's conf/<group>/ or experiments/)
        return slnn.app.schema.conf_group(key).is_dir()
    except ImportError:
        return key in ConfigStore.instance().repo


# what a study needs from the command line: compare trains the user's rule, update.fn=
USER_RULE = "def my_step(x, net, z, t, delta):\n    return x.T @ delta / len(x)\n"
NEEDS = {"compare": ("update.fn=my_rules.py:my_step",)}


def _needs(name: str, key: str | None = None, value: str | None = None) -> tuple[str, ...]:
    """The study's command-line keys, for a cell whose ``key`` group is ``value`` (a built-in
    rule's cell drops update.fn, as the sweeper does)."""
    if key == "update" and value != "custom":
        return ()
    return NEEDS.get(name, ())


def test_there_are_studies():
    assert {"guide_vs_correct", "guide_reproduction", "activation_lr", "mistakes",
            "compare"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_value_of_every_study_composes_and_validates(name):
    [(cfg, params)] = compose_study(name, _needs(name))
    to_config(cfg)
    assert params, f"{name} sweeps nothing"
    groups = [(k, v) for k, vs in params.items() if is_group(k) for v in swept_values(k, vs)]
    hashes: dict[str, set] = {}
    variants = [(f"{k}={v}", *_needs(name, k, v)) for k, v in groups]
    for (key, v), (composed, _) in zip(groups, compose_study(name, *variants)):
        to_config(composed)
        hashes.setdefault(key, set()).add(config_hash(composed))
    for key, found in hashes.items():  # each choice of a group makes a different run
        assert len(found) == len(swept_values(key, params[key])), key
    # a plain value is set on the composed config, as the sweeper does (composing is slow)
    for key, values in params.items():
        if is_group(key):
            continue
        parsed = OverridesParser.create().parse_override(f"{key}={values}")
        for v in parsed.sweep_iterator():
            one_cell = copy.deepcopy(cfg)
            OmegaConf.update(one_cell, key, v)
            got = to_config(one_cell)
            for part in key.split("."):
                got = getattr(got, part)
            assert got == v, (key, v, got)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_study_runs_with_a_tiny_budget(name, tmp_path, store, slnn_train):
    [(_, params)] = compose_study(name)
    # keep the study's choices of config groups, pin every plain value to its first one
    pins = [f"{k}={swept_values(k, v)[0]}" for k, v in params.items() if not is_group(k)]
    n_cells = int(np.prod([len(swept_values(k, v)) for k, v in params.items() if is_group(k)]))
    if name in NEEDS:
        (tmp_path / "my_rules.py").write_text(USER_RULE)
    if name in SEARCHES:  # a search: one trial per arm, confirmed on one seed
        small = ["hydra.sweeper.search.trials=1", "hydra.sweeper.search.batch=1",
                 'hydra.sweeper.search.tune_seeds="[100]"', 'hydra.sweeper.search.confirm_seeds="[0]"']
        proc = check(slnn_train(sweep_args(tmp_path, f"+experiment={name}", "train.epochs=2",
                                           *small), cwd=tmp_path))
        n_arms = int(np.prod([len(swept_values(k, v)) for k, v in params.items()]))
        assert f"a search of {n_arms} arm(s)" in proc.stdout
        parents, cells = split_runs(all_runs(store))
        assert len(parents) == 1 and parents[0].data.tags["slnn.study"] == name
        stages = collections.Counter(r.data.tags["slnn.stage"] for r in cells)
        assert stages == {"tune": n_arms, "confirm": n_arms}
        assert {r.data.tags["slnn.outcome"] for r in cells} <= EXPECTED_OUTCOMES | {"pruned"}
        return
    proc = check(slnn_train(sweep_args(tmp_path, f"+experiment={name}", "train.epochs=2", *pins,
                                       *_needs(name)), cwd=tmp_path))
    start = one(START, proc.stdout)
    assert start["cells"] == n_cells
    parents, cells = split_runs(all_runs(store))
    assert len(parents) == 1 and parents[0].data.tags["slnn.study"] == name
    # the sweep is called by its parent run's name, <study>-<date>-<time>
    assert start["study"] == parents[0].info.run_name and start["study"].startswith(f"{name}-")
    assert len(cells) == n_cells
    assert {r.data.tags["slnn.outcome"] for r in cells} <= EXPECTED_OUTCOMES
    assert {r.data.params["train.epochs"] for r in cells} == {"2"}
    assert one(SUMMARY, proc.stdout)["total"] == n_cells


# --- 7. a real tracking server ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_server(empty_store, tmp_path):
    """``mlflow server`` on 127.0.0.1 with a SQLite store and proxied artifacts in ``tmp_path/server``;
    yields its URL and stops it (and every process it started) at teardown."""
    folder = tmp_path / "server"
    folder.mkdir()
    shutil.copyfile(empty_store, folder / "server.db")  # spares the server the migrations
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # MLflow's background job runner starts a dozen processes that slnn never uses
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/server.db",
         "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # a loaded 2-core machine takes ~30 s
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not come up:\n{(folder / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        log.close()


@pytest.mark.slow
def test_a_parallel_sweep_records_into_a_tracking_server(mlflow_server, tmp_path):
    work = tmp_path / "sweep"
    work.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    args = ["-m", "update=input,kronecker", "data=iris_petal", "train.epochs=3", "sweep.report=false",
            "tracking.plot=false", "tracking.log_model=false", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={work}/multirun"]
    proc = check(subprocess.run([str(SLNN_TRAIN), *args], cwd=work, env=env, capture_output=True,
                                text=True, timeout=600))
    assert one(SUMMARY, proc.stdout)["total"] == 2
    assert f"; browse: {mlflow_server} (the sweep: {mlflow_server}/#/" in proc.stdout  # the server

    client = client_for(mlflow_server)
    parents, cells = split_runs(all_runs(mlflow_server))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(cells) == 2
    assert {r.data.params["update.rule"] for r in cells} == {"input", "kronecker"}
    for run in cells:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["slnn.outcome"] in FINISHED_OUTCOMES  # eta 0.1 for 3 epochs
        assert {"curves/train_loss", "curves/val_loss", "final/test_error",
                "final/epochs_run"} <= set(run.data.metrics)
        assert run.data.metrics["final/epochs_run"] == 3
        local = client.download_artifacts(run.info.run_id, "weights/final.npy", str(tmp_path))
        W = np.load(local, allow_pickle=False)
        assert W.shape == (2 + 1, 3)  # (petal length, width, bias) x 3 species
        assert W.dtype == np.float64 and np.isfinite(W).all()
        # the last weight_norm logged is the norm of these very weights
        norms = client.get_metric_history(run.info.run_id, "curves/weight_norm")
        last = max(norms, key=lambda m: m.step)
        assert last.step == 3
        assert np.isclose(np.linalg.norm(W), last.value, rtol=1e-9)
    # everything went over HTTP: nothing was written next to the sweep
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()
    assert len(list((tmp_path / "server" / "artifacts").rglob("final.npy"))) == 2


def test_jobs_racing_over_a_shared_list_take_each_cell_exactly_once(tmp_path):
    """``worker.take`` in three processes at once over 3000 cells: every cell taken by exactly one
    of them, none missed (the mark is an O_EXCL file create; nothing else orders them)."""
    taken = tmp_path / "taken"
    taken.mkdir()
    go = tmp_path / "go"
    code = ("import sys, time; from pathlib import Path; from slnn.sweep.worker import take\n"
            "go, taken = Path(sys.argv[1]), Path(sys.argv[2])\n"
            "while not go.exists(): time.sleep(0.001)\n"
            "mine = []\n"
            "for i in range(3000):\n"
            "    if take(taken, f'{i:04d}-cell'):\n"
            "        mine.append(i)\n"
            "        time.sleep(0.0002)  # a cell's work: the others catch up and race\n"
            "print(' '.join(map(str, mine)))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(go), str(taken)],
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(1.0)  # each has imported and waits
    go.touch()
    got = [[int(i) for i in p.communicate(timeout=120)[0].split()] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    everyone = Counter(i for g in got for i in g)
    assert sorted(everyone) == list(range(3000)) and set(everyone.values()) == {1}
    assert sum(1 for g in got if g) >= 2, [len(g) for g in got]  # the premise: they raced
    assert sorted(p.name for p in taken.iterdir()) == [f"{i:04d}-cell" for i in range(3000)]


def test_a_job_left_from_an_earlier_session_stops_taking_once_its_marks_are_gone(tmp_path):
    """A joblib worker goes on after its launcher is killed with kill -9 (loky does not watch its
    parent). When the sweep is run again, it writes a new mark folder and removes the old one:
    the old job's next take finds its folder gone and it stops, so it takes none of the new
    session's cells (the cell it was running is covered by that cell's claim)."""
    from types import SimpleNamespace

    from slnn.sweep.worker import _taken_by_this_job

    old, new = tmp_path / "taken-old", tmp_path / "taken-new"
    old.mkdir()
    cells = [SimpleNamespace(folder=f"{i:04d}-cell") for i in range(6)]
    job = _taken_by_this_job(cells, old)
    assert next(job) is cells[0]  # the old session's job is running its first cell
    shutil.rmtree(old)  # the new session replaces the marks ...
    new.mkdir()
    assert list(job) == []  # ... and the old job takes nothing more
    assert list(new.iterdir()) == []
    again = _taken_by_this_job(cells, new)
    assert list(again) == cells  # while the new session's jobs take every cell


@pytest.mark.parametrize("chunks", ["0", "-2"])
def test_a_bad_number_of_jobs_is_one_line_before_anything_runs(tmp_path, slnn_train, chunks):
    proc = slnn_train(["-m", "seed=0,1", "data=iris_petal", f"hydra.sweeper.chunks={chunks}",
                       f"tracking.uri={sqlite_uri(tmp_path)}", f"hydra.sweep.dir={tmp_path}/multirun"],
                      cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "hydra.sweeper.chunks" in lines[0] and "1 or more" in lines[0], lines
    assert not (tmp_path / "mlflow.db").exists()


def test_an_interrupt_mid_transaction_leaves_no_write_lock_once_released(tmp_path):
    """Ctrl-C between a write and its commit leaves the connection, and its SQLite write lock,
    alive in the traceback's frames; the sweep releases them (``release_interrupted``) before
    it closes its parent run. Without the release the store stays locked."""
    from slnn.sweep.orchestrator import release_interrupted

    db = tmp_path / "s.db"
    sqlite3.connect(db).execute("create table t(x)").connection.commit()

    def cell():
        con = sqlite3.connect(db)
        con.execute("insert into t values (1)")  # opens the write transaction, not committed
        raise KeyboardInterrupt

    def can_write() -> bool:
        con = sqlite3.connect(db, timeout=0.2)
        try:
            con.execute("insert into t values (2)")
            con.commit()
            return True
        except sqlite3.OperationalError as e:
            assert "locked" in str(e)
            return False
        finally:
            con.close()

    try:
        cell()
    except KeyboardInterrupt as e:
        assert not can_write()  # the premise: the interrupted frame's connection holds the lock
        release_interrupted(e)
        assert can_write()
