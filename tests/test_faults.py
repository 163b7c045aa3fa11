"""Nothing lost and nothing wrong under concurrency and faults: every case a hostile test found,
run against real processes, a real SQLite store and a real ``mlflow server`` (an erroring server
is a tiny local HTTP server that answers 500 to everything; nothing of MLflow is mocked).

    python -m pytest tests/test_faults.py -m 'not slow'    # in-process: ~30 s
    python -m pytest tests/test_faults.py                  # everything: ~8-10 minutes on 2 cores

Read-only and full disks are made with a private mount (``unshare --mount``: root only), another
pid namespace with ``unshare --pid``; those tests are skipped, with the reason, where that is not
possible. The chaos test is ``tests/test_chaos.py``.
"""

from __future__ import annotations

import http.server
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra

import slnn.app.cli
from slnn.core.data import load_dataset
from slnn.core.errors import DataError
from slnn.tracking import liveness
from slnn.tracking.faults import TrackingError, describe, mask

from servers import free_port, start_process, stop_process, wait_http

BIN = Path(sys.executable).parent
SLNN_TRAIN, SLNN_REPORT = BIN / "slnn-train", BIN / "slnn-report"
FAST = ["tracking.plot=false", "tracking.log_model=false"]
START = re.compile(r"^slnn: sweep \S+: (?P<cells>\d+) cells: (?P<skipped>\d+) reused, .*?; "
                   r"(?P<to_run>\d+) to run \(parent run (?P<parent>\w+)\)(?P<note>.*)$", re.M)
SUMMARY = re.compile(r"^slnn: sweep \S+: (?P<finished>\d+) finished, (?P<failed>\d+) failed", re.M)


# --- helpers ------------------------------------------------------------------------------------

def run(cmd: list, cwd: Path, *, env: dict | None = None, timeout: float = 300,
        prefix: list | None = None) -> subprocess.CompletedProcess:
    """A command in ``cwd`` without an inherited MLFLOW_TRACKING_URI; ``.seconds`` is its time."""
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    e.update(env or {})
    start = time.monotonic()
    proc = subprocess.run([*(prefix or []), *map(str, cmd)], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout)
    proc.seconds = time.monotonic() - start
    return proc


def error_lines(proc) -> list[str]:
    """stderr without Hydra's own log lines (``[...][HYDRA] ...``)."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and "][HYDRA]" not in ln]


def one_line(proc, code: int = 2, prog: str = "slnn-train") -> str:
    lines = error_lines(proc)
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def runs_of(uri: str) -> list:
    c = client(uri)
    ids = [e.experiment_id for e in c.search_experiments()]
    return list(c.search_runs(ids, max_results=5000)) if ids else []


def cells_and_parents(uri: str) -> tuple[list, list]:
    runs = runs_of(uri)
    return ([r for r in runs if r.data.tags.get("slnn.sweep") != "true"],
            [r for r in runs if r.data.tags.get("slnn.sweep") == "true"])


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def tables(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


@pytest.fixture(scope="session")
def migrated(tmp_path_factory) -> Path:
    """An empty store MLflow has created and migrated (~10 s); tests copy it."""
    from slnn.tracking.store import client_for

    folder = tmp_path_factory.mktemp("migrated")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        client_for(f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def store(migrated, tmp_path) -> str:
    shutil.copyfile(migrated, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path}/mlflow.db"


def can_unshare(*flags: str) -> str | None:
    """Why ``unshare flags`` cannot run here, or None."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "needs root and unshare (private mounts, pid namespaces)"
    p = subprocess.run(["unshare", *flags, "true"], capture_output=True, text=True)
    return None if p.returncode == 0 else f"unshare {' '.join(flags)} fails here: {p.stderr.strip()}"


def read_only(folder: Path) -> list[str]:
    """A command prefix that runs with ``folder`` mounted read-only (a private mount)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"',
            "sh"]


def full_disk(folder: Path, store: Path) -> list[str]:
    """A command prefix that runs with ``folder`` a 2 MB tmpfs holding a copy of ``store`` and
    filled up to its last few kilobytes."""
    fill = (f'mount -t tmpfs -o size=2m tmpfs "{folder}" && cp "{store}" "{folder}/mlflow.db" && '
            f'(dd if=/dev/zero of="{folder}/fill" bs=1k count=100000 2>/dev/null; true) && '
            f'rm -f "{folder}/fill" && avail=$(df -k "{folder}" | tail -1 | awk \'{{print $4}}\') && '
            f'dd if=/dev/zero of="{folder}/fill" bs=1k count=$((avail - 24)) 2>/dev/null; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", fill, "sh"]


# --- fast: the pieces, in-process ---------------------------------------------------------------

@pytest.mark.parametrize("text, masked", [
    ("http://ann:s3cret@127.0.0.1:5000", "http://ann:***@127.0.0.1:5000"),
    ("postgresql+psycopg2://ann:p%40ss@db:5432/mlflow", "postgresql+psycopg2://ann:***@db:5432/mlflow"),
    ("no MLflow server answers at https://u:x@h/ (x)", "no MLflow server answers at https://u:***@h/ (x)"),
    ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
])
def test_mask_hides_every_password(text, masked):
    assert mask(text) == masked


def test_describe_names_the_real_cause(tmp_path):
    bad = tmp_path / "mlflow.db"
    bad.write_bytes(os.urandom(4096))
    try:
        sqlite3.connect(bad).execute("SELECT * FROM sqlite_master").fetchall()
    except sqlite3.DatabaseError as e:
        corrupt = e
    uri = f"sqlite:///{bad}"
    assert "is corrupt" in describe(uri, corrupt)
    try:
        import psycopg  # noqa: F401
        missing = None
    except ModuleNotFoundError as e:
        missing = e
    if missing is not None:
        line = describe("postgresql://ann:pw@db/x", missing)
        assert "driver" in line and "psycopg" in line and "pw" not in line
    assert "read-only" in describe(uri, sqlite3.OperationalError("attempt to write a readonly database"))
    assert "full disk" in describe(uri, OSError(28, "No space left on device"))
    assert "refused the credentials" in describe("http://h", RuntimeError("HTTP 401 Unauthorized"))
    assert "does not answer" in describe("http://h", ConnectionError("Connection refused"))
    for line in [describe(uri, corrupt), describe(uri, OSError(28, "No space left on device"))]:
        assert "\n" not in line


def test_liveness_judges_by_pid_namespace_start_time_and_heartbeat():
    mine = liveness.owner_tags()
    assert liveness.is_alive(mine) is True
    gone = subprocess.Popen(["true"])
    gone.wait()
    host, boot, ns, _, _ = mine["slnn.owner"].split("/")
    dead = {**mine, "slnn.pid": str(gone.pid),
            "slnn.owner": "/".join((host, boot, ns, str(gone.pid), "123"))}
    assert liveness.is_alive(dead) is False
    # the same pid, but another process (started at another time): not the owner
    reused = {**mine, "slnn.owner": "/".join((host, boot, ns, str(os.getpid()), "1"))}
    assert liveness.is_alive(reused) is False
    # another pid namespace with the same hostname: only the heartbeat tells
    elsewhere = "/".join((host, boot, "4026500000", str(gone.pid), "123"))
    fresh = {"slnn.owner": elsewhere, "slnn.heartbeat": str(int(time.time()))}
    stale = {"slnn.owner": elsewhere, "slnn.heartbeat": str(int(time.time() - 10 * liveness.LEASE_SECONDS))}
    assert liveness.is_alive(fresh) is True and liveness.is_alive(stale) is False
    # a run from before slnn.owner: host and pid, as before; another machine's: cannot tell
    assert liveness.is_alive({"slnn.host": host, "slnn.pid": str(gone.pid)}) is False
    assert liveness.is_alive({"slnn.host": "elsewhere", "slnn.pid": "1"}) is None


def half_migrate(db: Path, *, with_runs: bool) -> None:
    """What an interrupted MLflow schema upgrade leaves: an older schema version and a leftover
    copy of a table; ``with_runs``: a store somebody used (an experiment of theirs)."""
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE _alembic_tmp_runs (x INTEGER)")
    con.execute("UPDATE alembic_version SET version_num = '451aebb31d03'")
    if with_runs:
        con.execute("INSERT INTO experiments (experiment_id, name, lifecycle_stage, workspace) "
                    "VALUES (7, 'kept', 'active', 'default')")
    con.commit()
    con.close()


def test_a_half_migrated_store_with_runs_is_named_with_its_repair(migrated, tmp_path):
    from slnn.tracking.store import client_for

    db = tmp_path / "mlflow.db"
    shutil.copyfile(migrated, db)
    half_migrate(db, with_runs=True)
    with pytest.raises(TrackingError) as e:
        client_for(f"sqlite:///{db}")
    msg = str(e.value)
    assert "half-migrated" in msg and "_alembic_tmp_runs" in msg and "\n" not in msg
    assert "DROP TABLE _alembic_tmp_runs;" in msg and f"mlflow db upgrade 'sqlite:///{db}'" in msg
    assert db.exists() and "_alembic_tmp_runs" in tables(db)  # nothing of the user's touched


def test_an_empty_half_made_store_is_moved_aside_and_made_again(migrated, tmp_path, capsys):
    from slnn.tracking.store import client_for

    db = tmp_path / "mlflow.db"
    shutil.copyfile(migrated, db)
    half_migrate(db, with_runs=False)
    client = client_for(f"sqlite:///{db}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert "_alembic_tmp_runs" not in tables(db) and integrity(db) == "ok"
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("mlflow.db.half-migrated-")]
    assert len(aside) == 1 and "_alembic_tmp_runs" in tables(aside[0])
    err = capsys.readouterr().err
    assert f"moved it to {aside[0].name}" in err and len(err.strip().splitlines()) == 1


def test_a_store_mlflow_accepts_is_used_despite_leftover_tables(migrated, tmp_path):
    """A plain MLflow client that raced a creation can leave a ``_alembic_tmp_*`` table in a
    store whose schema is complete and current: MLflow uses it, and so does slnn."""
    from slnn.tracking.store import client_for

    db = tmp_path / "mlflow.db"
    shutil.copyfile(migrated, db)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE _alembic_tmp_latest_metrics (x INTEGER)")
    con.commit()
    con.close()
    client = client_for(f"sqlite:///{db}")
    assert client.create_experiment("used")
    assert "_alembic_tmp_latest_metrics" in tables(db)


def test_claims_keep_a_cell_for_one_live_run(store):
    from slnn.sweep.claims import CellTaken, claim_cell

    c = client(store)
    exp = c.create_experiment("claims")

    def open_run(tags):
        return c.create_run(exp, tags={"slnn.config_hash": "h1", **tags}).info.run_id

    holder = open_run(liveness.owner_tags())
    claim_cell(c, exp, "h1", holder)  # alone: it keeps the cell
    second = open_run(liveness.owner_tags())
    with pytest.raises(CellTaken) as e:
        claim_cell(c, exp, "h1", second)
    assert not e.value.done and e.value.holder == holder
    assert c.get_run(second).info.lifecycle_stage == "deleted"  # the claim given up
    c.set_terminated(holder, "FINISHED")
    third = open_run(liveness.owner_tags())
    with pytest.raises(CellTaken) as e:
        claim_cell(c, exp, "h1", third)
    assert e.value.done
    # a claim whose owner died has expired: it is closed as KILLED and the cell is taken
    gone = subprocess.Popen(["true"])
    gone.wait()
    host, boot, ns, _, _ = liveness.owner_tags()["slnn.owner"].split("/")
    dead = open_run({"slnn.owner": "/".join((host, boot, ns, str(gone.pid), "5"))})
    c2 = c.create_run(exp, tags={"slnn.config_hash": "h2", **liveness.owner_tags()}).info.run_id
    c.set_tag(dead, "slnn.config_hash", "h2")
    claim_cell(c, exp, "h2", c2)
    assert c.get_run(dead).info.status == "KILLED"
    assert c.get_run(dead).data.tags["slnn.outcome"] == "killed"


def test_csv_edge_cases_each_get_one_clear_line(tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("x1,x2,label\n" + "".join(f"{i},{'1e308' if i % 2 else '-1e308'},{'ab'[i % 2]}\n"
                                               for i in range(12)))
    with pytest.raises(DataError, match=r"feature 'x2' has values too large .* rescale"):
        load_dataset("csv", path=str(big), target="label")
    # without standardizing the values are used as they are (training diverges, which is said)
    assert np.isfinite(load_dataset("csv", path=str(big), target="label", standardize=False).x_train).all()
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("x1,label\n1,a\n2,b\n3,a\n")
    with pytest.raises(DataError, match=r"empty validation split.*data\.split=\[0\.5,0,0\.5\]"):
        load_dataset("csv", path=str(tiny), target="label")
    assert load_dataset("csv", path=str(tiny), target="label", split=[0.5, 0, 0.5]).n_val == 0
    dup = tmp_path / "dup.csv"
    dup.write_text("x1,x1,label,label\n1,2,a,a\n2,3,b,b\n3,4,a,a\n4,5,b,b\n")
    with pytest.raises(DataError, match=r"header repeats 'label' \(columns 3, 4\), 'x1' \(columns 1, 2\)"):
        load_dataset("csv", path=str(dup), target="label")


def test_an_unquoted_non_ascii_value_gets_the_quoting_hint(capsys):
    with pytest.raises(SystemExit) as e:
        slnn.app.cli.precheck(["data=csv", "data.path=x.csv", "data.target=étiquette"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "quote it: 'data.target=\"étiquette\"'" in err


# --- a cell that fails before its run opens -----------------------------------------------------

@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """``slnn-train`` run in this process (as tests/test_sweep.py does), undone afterwards."""
    environ = dict(os.environ)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def go(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["slnn-train", *args])
        GlobalHydra.instance().clear()
        try:
            slnn.app.cli.main()
        except SystemExit as e:
            return 0 if e.code is None else e.code
        return 0

    yield go
    os.environ.clear()
    os.environ.update(environ)
    GlobalHydra.instance().clear()
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def test_a_cell_that_fails_before_its_run_opens_still_leaves_a_failed_run(
        in_process, store, tmp_path, monkeypatch, capsys):
    from slnn.sweep.orchestrator import Orchestrator

    data = tmp_path / "data.csv"
    data.write_text("x1,x2,label\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(40)))
    real = Orchestrator.write_chunks

    def write_chunks(self, *args):  # the CSV disappears after validation, before any cell
        jobs = real(self, *args)
        data.unlink()
        return jobs

    monkeypatch.setattr(Orchestrator, "write_chunks", write_chunks)
    code = in_process("-m", "seed=0,1,2", "data=csv", f"data.path={data}", "data.target=label",
                      "train.epochs=2", f"tracking.uri={store}", "sweep.report=false",
                      f"hydra.sweep.dir={tmp_path}/multirun", *FAST)
    assert code != 0
    summary = SUMMARY.search(capsys.readouterr().out)
    cells, [parent] = cells_and_parents(store)
    assert len(cells) == 3 and {r.info.status for r in cells} == {"FAILED"}
    for r in cells:  # each cell is in MLflow, with why, under the sweep's parent
        assert r.data.tags["slnn.outcome"] == "failed"
        assert "file not found" in r.data.tags["slnn.reason"]
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert int(summary["failed"]) == 3  # the summary line and MLflow agree
    from slnn.report import read_sweep

    assert Counter(read_sweep(store, parent.info.run_id).runs["outcome"]) == {"failed": 3}


# --- slow: real processes -----------------------------------------------------------------------

@pytest.mark.slow
def test_sweeps_and_runs_started_together_on_a_fresh_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"  # does not exist yet: the first one creates it
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmds = [[SLNN_TRAIN, "-m", f"seed={a},{a + 1}", "data=iris_petal", "train.epochs=2",
             f"tracking.uri={uri}", "sweep.report=false", f"hydra.sweep.dir={tmp_path}/m{a}", *FAST]
            for a in (0, 10)]
    cmds += [[SLNN_TRAIN, f"seed={s}", "data=iris_petal", "train.epochs=2", f"tracking.uri={uri}",
              *FAST] for s in (20, 21)]
    procs = [subprocess.Popen(list(map(str, c)), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in cmds]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    db = tmp_path / "mlflow.db"
    assert integrity(db) == "ok"
    assert not [t for t in tables(db) if t.startswith("_alembic_tmp_")]
    cells, parents = cells_and_parents(uri)
    assert len(parents) == 2
    assert sorted(int(r.data.params["seed"]) for r in cells) == [0, 1, 10, 11, 20, 21]
    assert {r.info.status for r in cells} == {"FINISHED"}
    # and every later command works
    one_more = run([SLNN_TRAIN, "data=iris_petal", "train.epochs=1", f"tracking.uri={uri}", *FAST],
                   tmp_path)
    assert one_more.returncode == 0, one_more.stderr[-2000:]


@pytest.mark.slow
def test_two_identical_sweeps_at_once_train_every_cell_once(store, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = ["-m", "+experiment=guide_reproduction", "optim.lr=0.1", "seed=range(3)", "train.epochs=40",
            f"tracking.uri={store}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST]
    first_out = tmp_path / "first.out"
    with open(first_out, "w") as fh:
        first = subprocess.Popen([str(SLNN_TRAIN), *args, f"hydra.sweep.dir={tmp_path}/a"],
                                 cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.PIPE,
                                 text=True)
    # driven by events, not by the first being slow: once a cell of the first has ended (its
    # launcher then only waits for its workers), the launcher is paused, so it cannot close its
    # parent run before the second has planned; its workers go on with the cells they take
    done = tmp_path / "a" / "progress.jsonl"
    deadline = time.monotonic() + 300
    while not (done.exists() and done.read_text().count("\n") >= 1):
        assert first.poll() is None and time.monotonic() < deadline, first_out.read_text()
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = run([SLNN_TRAIN, *args, f"hydra.sweep.dir={tmp_path}/b"], tmp_path, timeout=900)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=900)
    out = first_out.read_text()
    assert first.returncode == 0, err[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    a, b = START.search(out), START.search(second.stdout)
    assert a["parent"] != b["parent"]  # each has its own parent
    assert "another sweep of the same grid is running" in b["note"] + a["note"]
    cells, parents = cells_and_parents(store)
    assert len(parents) == 2
    # a cell the first sweep had finished before the second one planned is reused by the second
    # as a link run (slnn.link_to, no training of its own): only the other runs trained
    trained = [r for r in cells if r.info.status == "FINISHED" and "slnn.link_to" not in r.data.tags]
    per_cell = Counter(r.data.tags["slnn.config_hash"] for r in trained)
    assert len(per_cell) == 12 and set(per_cell.values()) == {1}  # every cell trained once
    by_id = {r.info.run_id: r for r in trained}
    for link in (r for r in cells if "slnn.link_to" in r.data.tags):
        assert link.data.tags["mlflow.parentRunId"] != by_id[link.data.tags["slnn.link_to"]].data.tags[
            "mlflow.parentRunId"]  # a link stands, under one sweep, for the other sweep's run
        assert link.data.tags["slnn.config_hash"] == by_id[link.data.tags["slnn.link_to"]].data.tags[
            "slnn.config_hash"]
    assert not [r for r in cells if r.info.status == "RUNNING"]
    # two reports, each in its own sweep's folder, neither written over the other, each counting
    # all 12 cells
    reports = sorted(tmp_path.glob("[ab]/**/report/report.md"))
    assert len(reports) == 2, reports
    assert not (tmp_path / "reports").exists()
    for rep in reports:
        assert "runs.csv" in {p.name for p in rep.parent.iterdir()}
        import pandas as pd

        assert len(pd.read_csv(rep.parent / "runs.csv")) == 12


class _Answer500(http.server.BaseHTTPRequestHandler):
    def _error(self):
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"internal error")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _error

    def log_message(self, *args):
        pass


@pytest.fixture
def erroring_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://ann:s3cret@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "sweep", "report"])
def test_a_server_that_answers_errors_fails_every_command_within_30_s(erroring_server, tmp_path,
                                                                       command):
    cmd = {"run": [SLNN_TRAIN, "data=iris_petal", "train.epochs=1", *FAST],
           "sweep": [SLNN_TRAIN, "-m", "seed=0,1", "data=iris_petal", "train.epochs=1", *FAST,
                     f"hydra.sweep.dir={tmp_path}/m"],
           "report": [SLNN_REPORT]}[command]
    proc = run(cmd, tmp_path, env={"MLFLOW_TRACKING_URI": erroring_server}, timeout=120)
    print(f"{command}: failed after {proc.seconds:.1f} s")
    assert proc.seconds < 30
    line = one_line(proc, 2, "slnn-report" if command == "report" else "slnn-train")
    assert "HTTP 500" in line and "not healthy" in line
    assert "s3cret" not in proc.stdout + proc.stderr and "ann:***@" in line


def serve_mlflow(db: Path, artifacts: Path, log: Path, port: int):
    """``mlflow server`` on a SQLite store at ``port`` (so it can be restarted on the same one)."""
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
           "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    proc = start_process(cmd, log, env=env, cwd=db.parent)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 180, proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc


@pytest.fixture
def mlflow_server(migrated, tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    shutil.copyfile(migrated, folder / "server.db")
    port = free_port()
    state = {"proc": serve_mlflow(folder / "server.db", folder / "artifacts", folder / "server.log",
                                  port), "port": port, "folder": folder}
    try:
        yield state
    finally:
        stop_process(state["proc"])


@pytest.mark.slow
def test_credentials_in_the_uri_work_and_are_never_printed(mlflow_server, tmp_path):
    uri = f"http://ann:s3cret@127.0.0.1:{mlflow_server['port']}"
    single = run([SLNN_TRAIN, "data=iris_petal", "train.epochs=2", *FAST], tmp_path,
                 env={"MLFLOW_TRACKING_URI": uri})
    assert single.returncode == 0, single.stderr[-3000:]
    sweep = run([SLNN_TRAIN, "-m", "seed=0,1", "data=iris_petal", "train.epochs=2", *FAST,
                 f"hydra.sweep.dir={tmp_path}/m"], tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = run([SLNN_REPORT, "--tracking-uri", uri, "--out", tmp_path / "rep"], tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    for proc in (single, sweep, report):
        assert "s3cret" not in proc.stdout + proc.stderr
    assert "ann:***@" in sweep.stdout  # the summary names the server, masked
    bad = run([SLNN_TRAIN, "data=iris_petal", "train.epochs=1", *FAST], tmp_path,
              env={"MLFLOW_TRACKING_URI": f"http://ann:s3cret@127.0.0.1:{free_port()}"})
    line = one_line(bad)
    assert "no MLflow server answers" in line and "s3cret" not in bad.stderr


@pytest.mark.slow
def test_a_server_outage_mid_sweep_is_ridden_out(mlflow_server, tmp_path):
    """The server goes away while cells run and comes back ~20-40 s later on the same port:
    every cell still ends FINISHED, once, and nothing is left RUNNING."""
    url = f"http://127.0.0.1:{mlflow_server['port']}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_TRACKING_URI"] = url
    out = tmp_path / "sweep.out"
    with open(out, "w") as fh, open(tmp_path / "sweep.err", "w") as err:
        sweep = subprocess.Popen([str(SLNN_TRAIN), "-m", "seed=range(8)", "data=iris_petal",
                                  "train.epochs=4000", "sweep.report=false", *FAST,
                                  f"hydra.sweep.dir={tmp_path}/m"], cwd=tmp_path, env=env,
                                 stdout=fh, stderr=err, start_new_session=True)
    done = tmp_path / "m" / "progress.jsonl"  # a line per ended cell, as the workers write it
    try:
        deadline = time.monotonic() + 300
        while not (done.exists() and done.read_text().count("\n") >= 1):  # the first cell
            assert sweep.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "sweep.err").read_text()[-3000:]
            time.sleep(0.05)
        stop_process(mlflow_server["proc"])  # the outage
        down = time.monotonic()
        time.sleep(15)
        f = mlflow_server["folder"]
        mlflow_server["proc"] = serve_mlflow(f / "server.db", f / "artifacts", f / "server2.log",
                                             mlflow_server["port"])
        outage = time.monotonic() - down
        sweep.wait(timeout=600)
    finally:
        try:
            os.killpg(sweep.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sweep.wait()
    print(f"outage of {outage:.0f} s ridden out")
    err = (tmp_path / "sweep.err").read_text()
    assert sweep.returncode == 0, err[-3000:]
    assert "does not answer; waiting up to" in err  # the premise: cells met the outage
    cells, _ = cells_and_parents(url)
    per_cell = Counter(r.data.tags["slnn.config_hash"] for r in cells if r.info.status == "FINISHED")
    assert len(per_cell) == 8 and set(per_cell.values()) == {1}
    assert not [r for r in runs_of(url) if r.info.status == "RUNNING"]


FAULTS = ["corrupt", "missing driver", "half-migrated", "read-only", "disk full"]


def _make_fault(fault: str, migrated: Path, tmp_path: Path):
    """(tracking URI, command prefix, what the line must say) for a store with ``fault``."""
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "mlflow.db"
    if fault == "corrupt":
        db.write_bytes(os.urandom(50_000))
        return f"sqlite:///{db}", [], "is corrupt"
    if fault == "missing driver":
        pytest.importorskip("psycopg2")
        try:
            import psycopg  # noqa: F401
            pytest.skip("psycopg 3 is installed: postgresql:// has its driver")
        except ModuleNotFoundError:
            pass
        return "postgresql://ann:s3cret@127.0.0.1:9/mlflow", [], "needs a database driver"
    shutil.copyfile(migrated, db)
    if fault == "half-migrated":
        half_migrate(db, with_runs=True)
        return f"sqlite:///{db}", [], "half-migrated"
    if fault == "read-only":
        why = can_unshare("--mount")
        if why:
            pytest.skip(why)
        return f"sqlite:///{db}", read_only(folder), "read-only"
    why = can_unshare("--mount")
    if why:
        pytest.skip(why)
    return f"sqlite:///{db}", full_disk(folder, migrated), "full disk"


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", ["run", "sweep", "report"])
def test_every_store_fault_is_one_line_naming_its_cause(fault, command, migrated, tmp_path):
    uri, prefix, cause = _make_fault(fault, migrated, tmp_path)
    if command == "report":
        if fault in ("read-only", "disk full"):
            pytest.skip("a report only reads the store")
        proc = run([SLNN_REPORT, "--tracking-uri", uri, "--out", tmp_path / "rep"], tmp_path,
                   prefix=prefix)
        line = one_line(proc, 2, "slnn-report")
    else:
        args = (["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path}/m"] if command == "sweep" else [])
        proc = run([SLNN_TRAIN, *args, "data=iris_petal", "train.epochs=1", f"tracking.uri={uri}",
                    *FAST], tmp_path, prefix=prefix)
        line = one_line(proc, 2)
    assert cause in line, line
    assert "s3cret" not in proc.stderr


@pytest.mark.slow
def test_report_out_a_file_or_a_read_only_folder_is_one_line(store, tmp_path):
    sweep = run([SLNN_TRAIN, "-m", "seed=0,1", "data=iris_petal", "train.epochs=1", *FAST,
                 f"tracking.uri={store}", "sweep.report=false", f"hydra.sweep.dir={tmp_path}/m"],
                tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    line = one_line(run([SLNN_REPORT, "--tracking-uri", store, "--out", a_file], tmp_path), 2,
                    "slnn-report")
    assert "is a file, not a folder" in line
    why = can_unshare("--mount")
    if why:
        pytest.skip(why)
    locked = tmp_path / "locked"
    locked.mkdir()
    proc = run([SLNN_REPORT, "--tracking-uri", store, "--out", locked / "rep"], tmp_path,
               prefix=read_only(locked))
    assert "cannot write the report into" in one_line(proc, 2, "slnn-report")


@pytest.mark.slow
def test_an_unknown_study_in_a_sweep_is_one_line(tmp_path):
    line = one_line(run([SLNN_TRAIN, "-m", "+experiment=nope"], tmp_path))
    assert "experiment=nope is not valid" in line and "guide_vs_correct" in line


def _sweep_in_background(tmp_path: Path, store: str, *grid: str, name: str = "sweep",
                         prefix: list | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
        return subprocess.Popen([*(prefix or []), str(SLNN_TRAIN), "-m", *grid,
                                 f"tracking.uri={store}", "sweep.report=false", *FAST,
                                 f"hydra.sweep.dir={tmp_path}/{name}"], cwd=tmp_path, env=env,
                                stdout=out, stderr=err, start_new_session=True)


def _wait_for_text(path: Path, pattern: str, proc, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, path.read_text(), re.M):
        assert proc.poll() is None, path.with_suffix(".err").read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {pattern!r} in {path} after {timeout} s"
        time.sleep(0.1)


def _wait_for_running_cell(store: str, proc, err: Path, timeout: float = 300) -> None:
    """Until a cell's run is open (RUNNING) in the store."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if [r for r in runs_of(store) if r.info.status == "RUNNING"
                    and r.data.tags.get("slnn.sweep") != "true"]:
                return
        except Exception:  # noqa: BLE001 - the store is busy: look again
            pass
        assert proc.poll() is None, err.read_text()[-3000:]
        assert time.monotonic() < deadline, "no cell started"
        time.sleep(0.2)


def _end(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


@pytest.mark.slow
def test_sigterm_to_a_sweep_closes_it_as_ctrl_c_does(store, tmp_path):
    """What ``timeout`` and schedulers do: SIGTERM to the launching process only."""
    sweep = _sweep_in_background(tmp_path, store, "seed=range(12)", "data=digits",
                                 "train.epochs=3000", "hydra/launcher=joblib",
                                 "hydra.launcher.n_jobs=2")
    try:
        _wait_for_running_cell(store, sweep, tmp_path / "sweep.err")
        os.kill(sweep.pid, signal.SIGTERM)
        sweep.wait(timeout=120)
    finally:
        _end(sweep)
    assert sweep.returncode == 143
    err = (tmp_path / "sweep.err").read_text()
    lines = [ln for ln in err.splitlines() if ln.strip() and "][HYDRA]" not in ln]
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert "terminated (SIGTERM)" in lines[0] and "run the same command again" in lines[0]
    cells, [parent] = cells_and_parents(store)
    assert parent.info.status == "KILLED"
    assert not [r for r in cells if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for r in cells)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_single_run_interrupted_or_terminated_closes_its_run_with_one_line(sig, store, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with open(tmp_path / "run.out", "w") as out, open(tmp_path / "run.err", "w") as err:
        proc = subprocess.Popen([str(SLNN_TRAIN), "data=digits", "train.epochs=100000",
                                 f"tracking.uri={store}", *FAST], cwd=tmp_path, env=env,
                                stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not [r for r in runs_of(store) if r.info.status == "RUNNING"]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
        os.killpg(proc.pid, getattr(signal, sig))  # Ctrl-C reaches the whole group
        proc.wait(timeout=120)
    finally:
        _end(proc)
    assert proc.returncode == (143 if sig == "SIGTERM" else 130)
    err = (tmp_path / "run.err").read_text()
    lines = [ln for ln in err.splitlines() if ln.strip() and "epoch" not in ln]
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    [r] = runs_of(store)
    assert r.info.status == "KILLED" and r.data.tags["slnn.outcome"] == "killed"


@pytest.mark.slow
def test_a_run_killed_with_minus_9_is_reaped_by_the_next_command(store, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([str(SLNN_TRAIN), "data=digits", "train.epochs=100000",
                             f"tracking.uri={store}", *FAST], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not [r for r in runs_of(store) if r.info.status == "RUNNING"]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        proc.kill()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    [orphan] = runs_of(store)
    assert orphan.info.status == "RUNNING"  # the premise
    again = run([SLNN_TRAIN, "data=iris_petal", "train.epochs=1", f"tracking.uri={store}", *FAST],
                tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "marked 1 run(s) of dead processes KILLED" in again.stderr
    reaped = client(store).get_run(orphan.info.run_id)
    assert reaped.info.status == "KILLED" and "ended without closing the run" in \
        reaped.data.tags["slnn.reason"]


@pytest.mark.slow
def test_a_sweep_in_another_pid_namespace_never_reaps_a_live_sweeps_runs(store, tmp_path):
    why = can_unshare("--pid", "--fork", "--mount-proc")
    if why:
        pytest.skip(why)
    live = _sweep_in_background(tmp_path, store, "seed=range(4)", "data=digits", "train.epochs=400",
                                name="live")
    try:
        _wait_for_running_cell(store, live, tmp_path / "live.err")
        # the same hostname, another pid namespace: the live sweep's pids mean nothing there
        other = run([SLNN_TRAIN, "-m", "seed=50,51", "data=iris_petal", "train.epochs=1",
                     f"tracking.uri={store}", "sweep.report=false", *FAST,
                     f"hydra.sweep.dir={tmp_path}/other"], tmp_path,
                    prefix=["unshare", "--pid", "--fork", "--mount-proc"])
        assert other.returncode == 0, other.stderr[-3000:]
        assert "dead run(s) KILLED" not in other.stdout
        live.wait(timeout=900)
    finally:
        _end(live)
    assert live.returncode == 0, (tmp_path / "live.err").read_text()[-3000:]
    runs = runs_of(store)
    assert not [r.info.run_name for r in runs if r.info.status == "KILLED"]
    assert len([r for r in runs if r.info.status == "FINISHED"]) == 4 + 2 + 2  # cells and parents


# --- bad inputs: one line, exit code 2, each (issue 22's "smaller" findings) --------------------

def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def _bad_input(case: str, tmp_path: Path) -> tuple[list, str]:
    """(slnn-train's arguments, what its one line must say) for a bad input."""
    csv_args = lambda p: ["data=csv", f"data.path={p}", "data.target=y"]  # noqa: E731
    if case == "huge header field":
        return csv_args(_csv(tmp_path, "a" * 200_000 + ",b,y\n1,2,0\n3,4,1\n")), \
            "line 1: the header cannot be read (field larger than field limit (131072))"
    if case == "45 MB line":
        return csv_args(_csv(tmp_path, "a,b,y\n1," + "9" * 45_000_000 + "x,0\n3,4,1\n")), \
            "line 2, column 'b': value '9999"
    if case == "continuous target":
        rng = np.random.default_rng(0)
        rows = "".join(f"{a:.3f},{b:.3f},{c:.3f}\n" for a, b, c in rng.random((150, 3)) * 10)
        return csv_args(_csv(tmp_path, "a,b,y\n" + rows)), \
            "column 'y' looks like a measurement, not class labels (150 distinct values among 150"
    if case == "folder":
        (tmp_path / "folder.csv").mkdir()
        return csv_args(tmp_path / "folder.csv"), "is a folder, not a file"
    if case == "fifo":
        os.mkfifo(tmp_path / "pipe.csv")
        return csv_args(tmp_path / "pipe.csv"), "is not a regular file (a FIFO, socket or device)"
    if case == "huge epochs":
        return ["data=iris_petal", "train.epochs=99999999999999999999"], \
            "train.epochs=99999999999999999999 is too large (at most 2,147,483,647)"
    if case == "long experiment name":
        return ["data=iris_petal", "tracking.experiment=" + "x" * 300], \
            "tracking.experiment is 300 characters long, over 200"
    if case == "interval in a grid":
        return ["-m", "data=iris_petal", "optim.lr=interval(0,1)"], \
            "optim.lr=interval(0,1): interval() is a range for samplers to draw from, not a grid"
    raise AssertionError(case)


BAD_INPUTS = ["huge header field", "45 MB line", "continuous target", "folder", "fifo",
              "huge epochs", "long experiment name", "interval in a grid"]


@pytest.mark.slow
@pytest.mark.parametrize("case", BAD_INPUTS)
def test_each_bad_input_is_one_short_line_and_exit_2(case, tmp_path):
    args, says = _bad_input(case, tmp_path)
    epochs = [] if "epochs" in case else ["train.epochs=1"]
    proc = run([SLNN_TRAIN, *args, *FAST, *epochs], tmp_path, timeout=120)
    line = one_line(proc, 2)
    assert says in line, line
    assert len(line) < 400, len(line)
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was touched


@pytest.mark.slow
def test_artifacts_stay_in_the_store_and_a_deleted_experiment_is_not_restored(tmp_path):
    dots = run([SLNN_TRAIN, "data=iris_petal", "train.epochs=1", "tracking.experiment=..", *FAST],
               tmp_path)
    assert dots.returncode == 0, dots.stderr[-2000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = client(uri)
    exp = c.get_experiment_by_name("..")
    (r,) = c.search_runs([exp.experiment_id])
    root = (tmp_path / "mlruns").resolve()
    where = Path(r.info.artifact_uri.removeprefix("file://")).resolve()
    assert where.is_relative_to(root) and where.is_dir(), where
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith("mlflow.db")} == {
        "mlruns", "outputs"}  # nothing written beside the store, as ".." put it
    c.delete_experiment(exp.experiment_id)
    again = run([SLNN_TRAIN, "data=iris_petal", "train.epochs=1", "tracking.experiment=..", *FAST],
                tmp_path)
    line = one_line(again, 2)
    assert (f"experiment '..' (id {exp.experiment_id}) in {uri} was deleted: restore it (mlflow "
            f"experiments restore --experiment-id {exp.experiment_id})") in line
    assert c.get_experiment(exp.experiment_id).lifecycle_stage == "deleted"


def test_a_sqlite_error_is_never_called_a_server_error():
    """A number like 500 in a SQLite error (a table, a revision id, a URL of SQLAlchemy's) once
    made a store left half-made by SIGKILL read 'answers with server errors'."""
    err = sqlite3.OperationalError("no such table: latest_metrics (https://sqlalche.me/e/20/e3q8) 500")
    line = describe("sqlite:////tmp/x/mlflow.db", err)
    assert "server errors" not in line and "no such table: latest_metrics" in line
    assert "answers with server errors" in describe("http://127.0.0.1:5000",
                                                    RuntimeError("too many 500 error responses"))
