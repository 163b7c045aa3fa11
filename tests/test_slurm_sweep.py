"""A slice of ``guide_vs_correct`` through ``hydra/launcher=submitit_slurm`` on the one-node test
cluster (``scripts/slurm/up``) against a PostgreSQL-backed ``mlflow server`` that proxies
artifacts: every cell once, in a SLURM job whose id is on its run; a cancelled job ends the sweep
with one line and a rerun completes only what is missing; Ctrl-C cancels the sweep's jobs; a job
that cannot reach the server fails its cells with the reason in its log. Skipped, with the reason,
where SLURM or PostgreSQL cannot start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")
# 2 rules x 2 seeds of guide_vs_correct's question, short: 4 cells in 2 chunks (2 SLURM jobs)
SLICE = ["+experiment=guide_vs_correct", "data=iris_petal", "update=input,kronecker",
         "model.activation=sigmoid", "optim.lr=0.1", "seed=range(2)", "train.epochs=2",
         "hydra.sweeper.chunks=2"]
N_CELLS = 4


def sweep_env(cluster, uri: str) -> dict:
    env = {**cluster.env, "MLFLOW_TRACKING_URI": uri}
    # the jobs import this worktree's slnn: sbatch exports the environment, PYTHONPATH included
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def sweep_cmd(cluster, tmp_path: Path, experiment: str, *extra: str, **launcher) -> list[str]:
    return [str(SLNN_TRAIN), "-m", *SLICE, f"tracking.experiment={experiment}",
            f"hydra.sweep.dir={tmp_path}/multirun", *cluster.launcher_overrides(**launcher),
            *extra]


def runs_of(uri: str, experiment: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("slnn.sweep") == "true"]
    cells = [r for r in runs if r.data.tags.get("slnn.sweep") != "true"]
    return client, parents, cells


def sacct_ids(cluster) -> dict[str, str]:
    out = cluster.run("sacct", "-n", "-P", "-X", "-a", "-S", "now-1hour", "-o", "JobID,State").stdout
    return {ln.split("|")[0]: ln.split("|")[1] for ln in out.splitlines() if "|" in ln}


def test_sweep_runs_every_cell_once_in_a_slurm_job_against_the_server(
        slurm_cluster, mlflow_pg_server, tmp_path):
    exp = f"slurm-{uuid.uuid4().hex[:6]}"
    env = sweep_env(slurm_cluster, mlflow_pg_server.url)
    t0 = time.monotonic()
    p = subprocess.run(sweep_cmd(slurm_cluster, tmp_path, exp), cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=240)
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    print(f"sweep of {N_CELLS} cells on SLURM took {took:.1f} s")
    client, parents, cells = runs_of(mlflow_pg_server.url, exp)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert Counter(Counter(r.data.tags["slnn.config_hash"] for r in cells).values()) == {1: N_CELLS}
    assert {r.info.status for r in cells} == {"FINISHED"}
    jobs = {r.data.tags.get("slnn.slurm_job_id") for r in cells}
    assert None not in jobs and len(jobs) == 2, jobs  # two chunks, two array tasks
    known = sacct_ids(slurm_cluster)
    assert all(known.get(j, "").startswith("COMPLETED") for j in jobs), (jobs, known)
    # the jobs imported this worktree (PYTHONPATH reached them) and ran on the cluster's node
    assert all(r.data.tags.get("slnn.pid") for r in cells)
    # the report was built from the server and attached to the parent
    assert "report:" in p.stdout, p.stdout[-2000:]
    arts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert any("report" in a for a in arts), arts


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.3)
    pytest.fail(f"{what}: not within {timeout} s")


def _sweep_jobs(cluster, tmp_path, before: set[str] = frozenset()) -> list[str]:
    """``id|name`` of the sweep jobs in squeue, less the ids in ``before`` (jobs that were there
    before this test's sweep started: an earlier test's, still completing)."""
    out = cluster.run("squeue", "-h", "-o", "%i|%j", check=False).stdout
    return [ln for ln in out.splitlines() if "slnn-" in ln and ln.split("|")[0] not in before]


def _job_ids(cluster, tmp_path) -> set[str]:
    return {ln.split("|")[0] for ln in _sweep_jobs(cluster, tmp_path)}


def test_a_cancelled_job_ends_the_sweep_with_one_line_and_a_rerun_completes_it(
        slurm_cluster, mlflow_pg_server, tmp_path):
    exp = f"slurm-{uuid.uuid4().hex[:6]}"
    env = sweep_env(slurm_cluster, mlflow_pg_server.url)
    # longer cells, so there is a job to cancel while it runs
    cmd = sweep_cmd(slurm_cluster, tmp_path, exp, "sweep.report=false")
    cmd[cmd.index("train.epochs=2")] = "train.epochs=3000"
    t0 = time.monotonic()
    before = _job_ids(slurm_cluster, tmp_path)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = _wait(lambda: [ln for ln in _sweep_jobs(slurm_cluster, tmp_path, before)
                              if ln.split("|")[0].endswith("_0")], 90, "a running sweep job")
        slurm_cluster.run("scancel", line[0].split("|")[0])
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    print(f"cancelled sweep ended in {took:.1f} s")
    assert proc.returncode == 1, out[-2000:] + err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lost = [ln for ln in err.splitlines() if "lost" in ln and "run the same command again" in ln]
    assert len(lost) == 1, err[-3000:]
    client, parents, cells = runs_of(mlflow_pg_server.url, exp)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert "RUNNING" not in {r.info.status for r in cells}  # the reaper closed the dead jobs' runs
    # nothing of the sweep is left on the cluster (a cancelled job may show in squeue for a few
    # seconds more while slurmd cleans it up: COMPLETING)
    _wait(lambda: not _sweep_jobs(slurm_cluster, tmp_path, before), 30, "no job of the sweep left")
    # the same command again runs only what is missing: one FINISHED run per cell in the end
    cmd[cmd.index("train.epochs=3000")] = "train.epochs=3000"
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    _, parents2, cells2 = runs_of(mlflow_pg_server.url, exp)
    assert [r.info.run_id for r in parents2] == [parents[0].info.run_id]
    finished = Counter(r.data.tags["slnn.config_hash"] for r in cells2
                       if r.info.status == "FINISHED")
    assert len(finished) == N_CELLS and set(finished.values()) == {1}, finished
    before = {r.info.run_id for r in cells if r.info.status == "FINISHED"}
    assert before <= {r.info.run_id for r in cells2}  # finished cells were not run again


def test_ctrl_c_cancels_the_sweeps_jobs(slurm_cluster, mlflow_pg_server, tmp_path):
    exp = f"slurm-{uuid.uuid4().hex[:6]}"
    env = sweep_env(slurm_cluster, mlflow_pg_server.url)
    cmd = sweep_cmd(slurm_cluster, tmp_path, exp, "sweep.report=false")
    cmd[cmd.index("train.epochs=2")] = "train.epochs=3000"
    before = _job_ids(slurm_cluster, tmp_path)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _sweep_jobs(slurm_cluster, tmp_path, before), 90,
              "the sweep's jobs in squeue")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "cancelled the sweep's SLURM jobs" in err, err[-3000:]
    _wait(lambda: not _sweep_jobs(slurm_cluster, tmp_path, before), 10, "no job of the sweep left")
    _, parents, _ = runs_of(mlflow_pg_server.url, exp)
    assert len(parents) == 1 and parents[0].info.status == "KILLED"


def test_a_job_that_cannot_reach_the_server_fails_with_the_reason_in_its_log(
        slurm_cluster, mlflow_pg_server, tmp_path):
    from servers import free_port

    exp = f"slurm-{uuid.uuid4().hex[:6]}"
    env = sweep_env(slurm_cluster, mlflow_pg_server.url)
    env["SLNN_OUTAGE_WAIT"] = "5"  # how long a cell waits for a store that does not answer
    dead = f"http://127.0.0.1:{free_port()}"  # nobody answers here
    # the second array task (one chunk) sees the server at an address nobody answers
    setup = (f"hydra.launcher.setup=['[ \"$SLURM_ARRAY_TASK_ID\" = 1 ] && "
             f"export MLFLOW_TRACKING_URI={dead} || true']")
    p = subprocess.run(sweep_cmd(slurm_cluster, tmp_path, exp, "sweep.report=false", setup),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "2 finished, 2 failed" in p.stdout, p.stdout[-2000:]
    # why its cells failed: each cell's run.log (where a cell's lines go, with any launcher)
    # names the address nobody answers
    cell_logs = "".join(f.read_text() for f in (tmp_path / "multirun").rglob("run.log"))
    assert f"no MLflow server answers at {dead}" in cell_logs + p.stderr, (cell_logs[-2000:],
                                                                           p.stderr[-2000:])
    # the other job's cells are in the server, finished, once each; the cut-off job's cells are
    # traced there too (through the sweep's own address), as FAILED runs with the reason
    _, parents, cells = runs_of(mlflow_pg_server.url, exp)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    finished = [r for r in cells if r.info.status == "FINISHED"]
    failed = [r for r in cells if r.info.status != "FINISHED"]
    assert len(finished) == 2 and len(cells) == 4, [(r.info.status, r.data.tags) for r in cells]
    assert {r.data.tags["slnn.slurm_job_id"].split("_")[1] for r in finished} == {"0"}
    assert {r.info.status for r in failed} == {"FAILED"}
    assert {r.data.tags["slnn.slurm_job_id"].split("_")[1] for r in failed} == {"1"}
    assert all(r.data.tags.get("slnn.reason") for r in failed)


def test_a_job_at_its_time_limit_leaves_killed_resumable_cells(
        slurm_cluster, mlflow_pg_server, tmp_path):
    exp = f"slurm-{uuid.uuid4().hex[:6]}"
    env = sweep_env(slurm_cluster, mlflow_pg_server.url)
    cmd = sweep_cmd(slurm_cluster, tmp_path, exp, "sweep.report=false")
    # cells that run until SLURM stops them: as many epochs and as much patience as a run may
    # have (some ten hours here) and a target no run reaches. A million of each took 19 s here: a
    # cell ended (max_epochs, then early_stopped) before the time limit's signal, and its job
    # went on to its next cell
    cmd[cmd.index("train.epochs=2")] = "train.epochs=2147483647"
    cmd += ["train.patience=2147483647", "train.target_val_loss=1e-12"]
    before = _job_ids(slurm_cluster, tmp_path)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = _wait(lambda: [ln for ln in _sweep_jobs(slurm_cluster, tmp_path, before)
                               if ln.split("|")[0].endswith(("_0", "_1"))], 90, "the sweep's jobs")
        jobs = sorted(ln.split("|")[0] for ln in lines)

        def training_in_the_jobs():  # each job's first cell has its run open (not importing)
            try:
                open_runs = {r.data.tags.get("slnn.slurm_job_id")
                             for r in runs_of(mlflow_pg_server.url, exp)[2]
                             if r.info.status == "RUNNING"}
            except Exception:  # noqa: BLE001 - the experiment may not exist yet
                return False
            return set(jobs) <= open_runs

        _wait(training_in_the_jobs, 120, f"a run of each of the jobs {jobs} training")
        # a time limit already passed: slurmctld signals each job at its next check; every job of
        # the sweep, so that none runs its endless cells to the end
        for job in jobs:
            slurm_cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=0:01")
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=300)
        print(f"the sweep ended {time.monotonic() - t0:.0f} s after the time limits were set")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and "Traceback" not in err, out[-2000:] + err[-3000:]
    # each job ended: SLURM stopped it (TIMEOUT), or at the time-limit signal the job ended
    # itself, closing its open run as KILLED on the way out (FAILED, or COMPLETED when submitit's
    # handler exits cleanly; the sweep may read a job's result before SLURM has recorded its
    # end); that its cells were cut off is what the runs show below
    ended = ("TIMEOUT", "FAILED", "COMPLETED")
    _wait(lambda: all(sacct_ids(slurm_cluster).get(job, "").split()[:1] != ["RUNNING"]
                      for job in jobs), 60, f"SLURM recording the end of {jobs}")
    states = sacct_ids(slurm_cluster)
    assert all(states.get(job, "").split()[0] in ended for job in jobs), states
    _, parents, cells = runs_of(mlflow_pg_server.url, exp)
    assert parents[0].info.status == "FAILED"
    assert "RUNNING" not in {r.info.status for r in cells}
    for job in jobs:
        killed = [r for r in cells if r.data.tags.get("slnn.slurm_job_id") == job]
        assert killed and all(r.info.status == "KILLED" for r in killed), [
            (r.info.status, r.data.tags.get("slnn.outcome"), r.data.tags.get("slnn.reason"),
             r.info.start_time, r.info.end_time) for r in killed]
