"""A sweep never claims what did not happen: a store deleted under it, or a server that stops
answering for good, ends it with one line and a non-zero exit code, soon.

The faults are driven by the sweep's own progress: the test waits for the ledger
(``progress.jsonl``) to show a finished cell, then deletes the store, or turns the server (a tiny
proxy in front of a real ``mlflow server``) into one that answers 500 to everything.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from servers import free_port, stop_process

BIN = Path(sys.executable).parent
FAST = ["data=iris_petal", "tracking.plot=false", "tracking.log_model=false"]


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    e.update(extra)
    return e


def wait_for_finished_cell(ledger: Path, proc: subprocess.Popen) -> None:
    """Poll the sweep's ledger until it records a cell that trained (the event that drives the
    fault); fails if the sweep ends first."""
    while proc.poll() is None:
        if ledger.exists() and '"outcome": "max_epochs"' in ledger.read_text().replace(
                '"outcome":"', '"outcome": "'):
            return
        time.sleep(0.05)
    pytest.fail(f"the sweep ended before a cell finished: {proc.stderr.read()[-2000:]}")


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and "][HYDRA]" not in ln]


@pytest.mark.slow
def test_a_store_deleted_mid_sweep_is_not_reported_as_success(tmp_path):
    db = tmp_path / "mlflow.db"
    proc = subprocess.Popen(
        [BIN / "slnn-train", "-m", "seed=range(6)", "train.epochs=30", *FAST,
         f"hydra.sweep.dir={tmp_path}/m", "sweep.report=false"], cwd=tmp_path, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_finished_cell(tmp_path / "m" / "progress.jsonl", proc)
        for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            f.unlink(missing_ok=True)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out[-2000:], err[-2000:])
    assert "Traceback" not in err
    ends = [ln for ln in lines(err) if ln.startswith("slnn: sweep ")]
    assert len(ends) == 1 and f"the tracking store {db} was deleted while the sweep ran" in ends[0]
    assert not [ln for ln in out.splitlines() if ln.startswith("slnn: sweep ") and "finished," in ln
                and " in " in ln and "parent run" in ln]  # no summary claiming the cells


class Proxy:
    """Forwards every request to ``target`` until ``broken`` is set; then answers 500."""

    def __init__(self, target: str):
        proxy = self
        self.broken = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.broken.is_set():
                    self.send_response(500)
                    self.send_header("Content-Length", "14")
                    self.end_headers()
                    self.wfile.write(b"internal error")
                    return
                req = urllib.request.Request(target + self.path, data=body or None,
                                             method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() not in ("host", "connection")})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        code, data, ctype = r.status, r.read(), r.headers.get("Content-Type")
                except urllib.error.HTTPError as e:
                    code, data, ctype = e.code, e.read(), e.headers.get("Content-Type")
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.mark.slow
def test_a_server_failing_for_good_ends_the_sweep_after_the_outage_wait(tmp_path):
    from test_faults import serve_mlflow
    from slnn.tracking.store import client_for

    folder = tmp_path / "server"
    folder.mkdir()
    client_for(f"sqlite:///{folder}/server.db")  # created here: the server starts in seconds
    port = free_port()
    server = serve_mlflow(folder / "server.db", folder / "artifacts", folder / "server.log", port)
    proxy = Proxy(f"http://127.0.0.1:{port}")
    wait = 10
    try:
        proc = subprocess.Popen(
            [BIN / "slnn-train", "-m", "seed=range(12)", "train.epochs=30", *FAST,
             f"hydra.sweep.dir={tmp_path}/m", "sweep.report=false", "hydra/launcher=joblib",
             "hydra.launcher.n_jobs=2"], cwd=tmp_path,
            env=env(MLFLOW_TRACKING_URI=proxy.url, SLNN_OUTAGE_WAIT=str(wait)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_finished_cell(tmp_path / "m" / "progress.jsonl", proc)
            proxy.broken.set()
            broke = time.monotonic()
            out, err = proc.communicate(timeout=600)
            took = time.monotonic() - broke
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        proxy.close()
        stop_process(server)
    assert proc.returncode == 1, (out[-2000:], err[-3000:])
    assert "Traceback" not in err
    ends = [ln for ln in lines(err) if ln.startswith("slnn: sweep ")]
    assert len(ends) == 1, err[-3000:]
    assert "stopped: the tracking store" in ends[0] and "answers with server errors" in ends[0]
    assert "not run" in ends[0]  # the cells left were not each failed in turn
    assert took < wait + 30, (took, err[-3000:])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_workers_whose_launcher_died_stop_and_the_next_command_reaps_the_parent(tmp_path):
    """Only the launcher is killed (-9): its joblib workers take no further cell and exit, and
    the next command closes the dead sweep's parent run and finishes the grid."""
    import json

    args = [BIN / "slnn-train", "-m", "seed=range(30)", "train.epochs=300", *FAST,
            f"hydra.sweep.dir={tmp_path}/m", "sweep.report=false", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2"]
    ledger = tmp_path / "m" / "progress.jsonl"
    proc = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_finished_cell(ledger, proc)
        os.kill(proc.pid, 9)
    finally:
        proc.kill()
        proc.wait()
    workers = {json.loads(ln)["pid"] for ln in ledger.read_text().splitlines()}
    deadline = time.monotonic() + 120
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling for the workers' exit
    assert not any(_alive(p) for p in workers), "the workers outlived their launcher"
    assert len(ledger.read_text().splitlines()) < 30  # they stopped, not ran the whole grid

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ids = [e.experiment_id for e in MlflowClient(uri).search_experiments()]
    killed_parent = [r for r in MlflowClient(uri).search_runs(ids) if
                     r.data.tags.get("slnn.sweep") == "true"]
    again = subprocess.run(args, cwd=tmp_path, env=env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs(ids, max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    finished = {r.data.params.get("seed") for r in runs if r.info.status == "FINISHED"
                and r.data.tags.get("slnn.sweep") != "true"}
    assert finished == {str(s) for s in range(30)}
    assert killed_parent and client.get_run(killed_parent[0].info.run_id).info.status != "RUNNING"


@pytest.mark.slow
def test_a_corrupt_history_is_named_in_the_report_and_left_out(tmp_path):
    """One run's history.csv broken three ways: the report still comes, naming each run."""
    from mlflow.tracking import MlflowClient

    sweep = subprocess.run([BIN / "slnn-train", "-m", "seed=range(4)", "train.epochs=5", *FAST,
                            f"hydra.sweep.dir={tmp_path}/m", "sweep.report=false"], cwd=tmp_path,
                           env=env(), capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    cells = [r for r in client.search_runs(ids) if r.data.tags.get("slnn.sweep") != "true"]
    breakages = [lambda t: t + "1,2,3,4,5,6,7,8,9,10,11\n",       # a row with too many fields
                 lambda t: t.replace("\n1,", "\nnot-an-epoch,", 1),  # a cell that is no number
                 lambda t: t + '2,"unterminated\n']                   # a quote never closed
    broken = {}
    for run, breakage in zip(sorted(cells, key=lambda r: r.info.run_id), breakages):
        path = Path(run.info.artifact_uri.removeprefix("file://")) / "history.csv"
        path.write_text(breakage(path.read_text()))
        broken[run.info.run_id] = path
    report = subprocess.run([BIN / "slnn-report", "--tracking-uri", uri, "--out", tmp_path / "r"],
                            cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "r" / "report.md").read_text()
    for run_id in broken:
        assert run_id in text, run_id
    assert text.count("readable table (") >= len(broken)


EXITING_RULE = '''\
import os, sys
calls = 0
def step(x, net, z, t, delta):
    global calls
    calls += 1
    if calls > 200:  # past the command line's check of the rule: mid-training
        {exit}
    return x.T @ delta / len(x)
'''


@pytest.mark.slow
def test_a_rule_that_exits_the_process_is_a_failed_run_with_the_reason(tmp_path):
    from mlflow.tracking import MlflowClient

    (tmp_path / "quits.py").write_text(EXITING_RULE.format(exit="os._exit(0)"))
    (tmp_path / "exits.py").write_text(EXITING_RULE.format(exit="sys.exit(3)"))
    rule = ["update=custom", "train.epochs=5", *FAST]
    single = subprocess.run([BIN / "slnn-train", *rule, "update.fn=quits.py:step"], cwd=tmp_path,
                            env=env(), capture_output=True, text=True, timeout=300)
    assert single.returncode != 0  # os._exit(0) made it exit 0, silently
    assert "os._exit(0) called" in single.stderr
    sweep = subprocess.run([BIN / "slnn-train", "-m", "seed=0,1", *rule, "update.fn=exits.py:step",
                            f"hydra.sweep.dir={tmp_path}/m", "sweep.report=false"], cwd=tmp_path,
                           env=env(), capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 1, sweep.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.status for r in runs} == {"FAILED"}  # the sweep's parent too: not RUNNING
    reasons = sorted(r.data.tags.get("slnn.reason", "") for r in runs
                     if r.data.tags.get("slnn.sweep") != "true")
    assert len(reasons) == 3
    assert "SystemExit: os._exit(0) called (line 7)" in reasons[0] + reasons[1] + reasons[2]
    assert sum("the function raised SystemExit: 3 (line 7)" in r for r in reasons) == 2


@pytest.mark.slow
def test_sigterm_right_after_the_last_cell_closes_the_parent_without_a_traceback(tmp_path):
    import json
    import signal

    from mlflow.tracking import MlflowClient

    ledger = tmp_path / "m" / "progress.jsonl"
    proc = subprocess.Popen([BIN / "slnn-train", "-m", "seed=range(4)", "train.epochs=5", *FAST,
                             f"hydra.sweep.dir={tmp_path}/m", "hydra/launcher=joblib",
                             "hydra.launcher.n_jobs=2"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        while proc.poll() is None and not (
                ledger.exists() and len(ledger.read_text().splitlines()) == 4):
            time.sleep(0.02)  # polling for the last cell's line, the event the signal follows
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in err, err[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [json.loads(ln)["outcome"] for ln in ledger.read_text().splitlines()] == ["max_epochs"] * 4
    assert proc.returncode in (0, 143), (proc.returncode, err[-2000:])


def test_a_fault_in_a_step_of_the_sweeps_end_is_a_note_not_a_traceback():
    """Logging the best model or registering it on a full disk, a read-only folder or a store
    answering 500 for good: the summary line gets a note naming the cause, and the end goes on."""
    import errno

    from slnn.sweep.orchestrator import Orchestrator
    from slnn.sweep.state import SweepState

    run = object.__new__(Orchestrator)  # only the state the end's steps read
    run.state = SweepState(dir="/tmp/nowhere", uri="sqlite:////tmp/nowhere/mlflow.db")

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    def read_only():
        raise PermissionError(errno.EACCES, "Permission denied")

    assert run._step(full, "no model logged").startswith(
        "; no model logged (the tracking store sqlite:////tmp/nowhere/mlflow.db is on a full disk")
    assert "is read-only or cannot be opened for writing" in run._step(read_only, "nothing registered")
    assert run._step(lambda: "; best run r logged as model m", "no model logged") == \
        "; best run r logged as model m"
