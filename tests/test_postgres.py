"""A tracking server a team can share: ``mlflow server`` on a real PostgreSQL, fed by a parallel
sweep over HTTP. Run: ``python -m pytest tests/test_postgres.py`` (about a minute and a half on
2 cores; skipped, with the reason, where PostgreSQL cannot run).

The session's fixtures (``tests/conftest.py``, ``tests/servers.py``) start a throwaway cluster
(initdb into /tmp, 127.0.0.1 only, trust auth) and an ``mlflow server`` on it. What the tests
hold: every cell of a joblib sweep is one FINISHED run, read back over HTTP with its tags, metrics
and weights; the rows really are in PostgreSQL (queried with psycopg2, not through MLflow); the
same sweep again skips every cell and writes no row; and a tracking URI nothing answers at, or
that MLflow cannot use, fails at once with one line.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from servers import closed_port

SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")  # the venv's console script
GRID = {"update": ["input", "kronecker"], "model.activation": ["sigmoid", "tanh"],
        "optim.lr": ["0.1", "1.0"]}
SWEEP = ["-m", *(f"{k}={','.join(v)}" for k, v in GRID.items()), "data=iris_petal",
         "train.epochs=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "sweep.report=false"]
EXPECTED_OUTCOMES = {"converged", "max_epochs", "early_stopped", "diverged"}
START = re.compile(r"^slnn: sweep (?P<study>\S+): (?P<cells>\d+) cells: (?P<skipped>\d+) reused, "
                   r"(?:\d+ rerun because the \w+ changed, )*\d+ new(?:, \d+ rerun \(sweep.force=true\))?; "
                   r"(?P<to_run>\d+) to run \(parent run (?P<parent>\w+)\)", re.M)
SUMMARY = re.compile(r"^slnn: sweep \S+: (?P<finished>\d+) finished, (?P<failed>\d+) failed, "
                     r"(?P<diverged>\d+) diverged, (?P<shape_mismatch>\d+) shape_mismatch, "
                     r"(?P<skipped>\d+) skipped", re.M)

pytestmark = pytest.mark.slow


def slnn_train(args: list[str], cwd: Path, tracking_uri: str | None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """``slnn-train args`` in ``cwd`` with ``MLFLOW_TRACKING_URI`` set to ``tracking_uri`` (or
    unset); ``.seconds`` is its wall time."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    start = time.monotonic()
    proc = subprocess.run([str(SLNN_TRAIN), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    proc.seconds = time.monotonic() - start
    return proc


def pg_runs(postgres) -> dict[str, tuple[str, str]]:
    """Every row of MLflow's ``runs`` table, straight from PostgreSQL: run id -> (status, experiment)."""
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT r.run_uuid, r.status, e.name FROM runs r "
                    "JOIN experiments e ON e.experiment_id = r.experiment_id")
        rows = {run: (status, exp) for run, status, exp in cur.fetchall()}
    conn.close()
    return rows


@pytest.fixture(scope="module")
def team_sweep(mlflow_pg_server, postgres, tmp_path_factory):
    """The grid run once against the server; its output, parent run and child runs (over HTTP)."""
    cwd = tmp_path_factory.mktemp("team_sweep")
    proc = slnn_train(SWEEP, cwd, mlflow_pg_server.url)
    start = START.search(proc.stdout)
    assert proc.returncode == 0 and start, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    client = MlflowClient(mlflow_pg_server.url)
    exp = client.get_experiment_by_name("slnn")
    parent = start["parent"]
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'",
                                  max_results=1000)
    return SimpleNamespace(proc=proc, cwd=cwd, start=start, parent=parent, client=client,
                           experiment=exp, children=children, server=mlflow_pg_server)


def test_parallel_sweep_records_every_cell_once_readable_over_http(team_sweep, tmp_path):
    s = team_sweep
    assert (s.start["cells"], s.start["skipped"], s.start["to_run"]) == ("8", "0", "8")
    summary = SUMMARY.search(s.proc.stdout)
    assert summary and summary["failed"] == "0" and summary["skipped"] == "0"
    assert s.client.get_run(s.parent).info.status == "FINISHED"
    cells = Counter((r.data.tags["slnn.update"], r.data.tags["slnn.activation"],
                     r.data.params["optim.lr"]) for r in s.children)
    assert cells == Counter(itertools.product(*GRID.values()))  # every cell, exactly once
    for run in s.children:
        tags, metrics = run.data.tags, run.data.metrics
        assert run.info.status == "FINISHED", run.info.run_name
        assert tags["slnn.outcome"] in EXPECTED_OUTCOMES, (run.info.run_name, tags["slnn.reason"])
        assert tags["slnn.data"] == "iris_petal" and run.data.params["train.epochs"] == "3"
        assert 1 <= metrics["final/epochs_run"] <= 3
        if tags["slnn.outcome"] != "diverged":
            assert 0.0 <= metrics["final/test_error"] <= 1.0
        # the weights come back over HTTP, as plain .npy
        local = Path(s.client.download_artifacts(run.info.run_id, "weights/final.npy",
                                                 str(tmp_path)))
        W = np.load(local, allow_pickle=False)
        assert W.shape == (3, 3) and W.dtype == np.float64
        W0 = np.load(s.client.download_artifacts(run.info.run_id, "weights/initial.npy",
                                                 str(tmp_path)), allow_pickle=False)
        assert not np.array_equal(W, W0)  # it trained
        # ... and were stored by the server, in its --artifacts-destination
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        on_server = s.server.artifacts / run.info.artifact_uri[len("mlflow-artifacts:/"):]
        assert (on_server / "weights" / "final.npy").read_bytes() == local.read_bytes()


def test_the_runs_are_rows_in_postgresql(team_sweep, postgres):
    s = team_sweep
    rows = pg_runs(postgres)
    # what the server says, over HTTP, about every run of every experiment
    via_http = {r.info.run_id: (r.info.status, e.name)
                for e in s.client.search_experiments()
                for r in s.client.search_runs([e.experiment_id], max_results=1000)}
    assert rows == via_http
    # the sweep's own experiment (the SLURM tests, on the same worker, record into this server too)
    ours = Counter(v for v in rows.values() if v[1] == "slnn")
    assert ours == Counter({("FINISHED", "slnn"): 9})  # 8 cells + the parent
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = %s",
                    (s.parent,))
        assert {r for (r,) in cur.fetchall()} == {r.info.run_id for r in s.children}
        # only this sweep's runs: other tests on this xdist worker record into the same server
        cur.execute("SELECT run_uuid, value FROM latest_metrics WHERE key = 'final/test_error'"
                    " AND run_uuid = ANY(%s)", ([r.info.run_id for r in s.children],))
        test_error = dict(cur.fetchall())
    conn.close()
    assert test_error == {r.info.run_id: r.data.metrics["final/test_error"] for r in s.children
                          if "final/test_error" in r.data.metrics}


def test_the_same_sweep_again_skips_every_cell_and_writes_no_row(team_sweep, postgres):
    s = team_sweep
    before = pg_runs(postgres)
    proc = slnn_train(SWEEP, s.cwd, s.server.url)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    start = START.search(proc.stdout)
    assert start, proc.stdout[-3000:]
    assert (start["cells"], start["skipped"], start["to_run"]) == ("8", "8", "0")
    assert start["parent"] == s.parent  # the same grid reopens the same parent run
    summary = SUMMARY.search(proc.stdout)
    assert summary and (summary["finished"], summary["skipped"]) == ("0", "8")
    assert not re.search(r"^\[\d+/\d+\]", proc.stdout, re.M)  # no cell ran
    after = pg_runs(postgres)
    assert after == before  # no new row, and the reopened parent is FINISHED again


def _report_available() -> bool:
    try:
        from slnn.report import report_for_parent  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _report_available(), reason="slnn.report not available")
def test_report_from_the_team_server_names_the_sweep(team_sweep, tmp_path):
    from slnn.report import report_for_parent

    s = team_sweep
    folder = Path(report_for_parent(s.server.url, s.parent, attach=True, out=tmp_path / "report"))
    html = folder / "report.html"
    assert html.is_file()
    assert s.parent in html.read_text()
    attached = {f.path for f in s.client.list_artifacts(s.parent, "report")}
    assert "report/report.html" in attached


# --- tracking URIs that cannot work ---

def test_no_server_at_the_tracking_uri_fails_fast_with_one_line(tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    proc = slnn_train(["data=iris_petal", "train.epochs=1"], tmp_path, uri, timeout=90)
    assert proc.seconds < 60
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("slnn-train: error: ")
    assert f"no MLflow server answers at {uri}" in lines[0]
    assert "mlflow server" in lines[0] and "MLFLOW_TRACKING_URI" in lines[0]  # what to do
    assert not (tmp_path / "mlflow.db").exists()  # no store was made anywhere else instead


def test_a_tracking_uri_mlflow_cannot_use_is_one_line(tmp_path):
    proc = slnn_train(["data=iris_petal", "train.epochs=1", "tracking.uri=foo://bar"], tmp_path,
                      None, timeout=90)
    assert proc.seconds < 60
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("slnn-train: error: ") and "foo://bar" in lines[0]
    assert "Traceback" not in proc.stderr
