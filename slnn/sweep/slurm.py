"""SLURM around a sweep: which job a run ran in, whether that job still runs, and cancelling the
sweep's jobs. Used by ``slnn.sweep.orchestrator`` (the reaper)
and the ``slnn`` sweeper (a unique job name; ``scancel`` on Ctrl-C/SIGTERM).

Liveness by host and pid does not work across nodes; a run made in a SLURM job carries
``slnn.slurm_job_id``, and the job's state in ``squeue``/``sacct`` says whether it can still close
its run. Every function here is a no-op where SLURM's commands are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

# which SLURM job a run ran in, and a job's end seen as an error: a run's own record
from slnn.tracking.runs import JOB_TAG, is_launcher_failure, job_id_from_env  # noqa: F401

# sacct states of a job that can still write its runs
_ALIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING"}


def _run(cmd: list[str], timeout: float = 20) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def job_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: SLURM state}`` from ``sacct`` (the allocation's line, not its steps); ids sacct
    does not know are left out."""
    if not job_ids:
        return {}
    out = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)])
    states: dict[str, str] = {}
    for line in (out or "").splitlines():
        jid, _, state = line.partition("|")
        if jid:
            states[jid.strip()] = state.split()[0] if state.strip() else ""
    return states


def dead_jobs(job_ids: list[str]) -> dict[str, str]:
    """The jobs among ``job_ids`` that SLURM says have ended (``{id: state}``); a job SLURM
    cannot be asked about is not called dead."""
    states = job_states(sorted(set(job_ids)))
    return {j: s for j, s in states.items() if s and s not in _ALIVE}


def reap_slurm_runs(client, experiment_id: str, parent_run_id: str) -> int:
    """Mark RUNNING children of ``parent_run_id`` whose SLURM job has ended as KILLED (a job
    SLURM killed, at its time limit or by ``scancel``, cannot close its own runs)."""
    from mlflow.entities import RunTag

    from slnn.core.outcomes import Outcome

    filt = f"attributes.status = 'RUNNING' and tags.mlflow.parentRunId = '{parent_run_id}'"
    runs = [r for r in client.search_runs([experiment_id], filter_string=filt, max_results=5000)
            if r.data.tags.get(JOB_TAG)]
    dead = dead_jobs([r.data.tags[JOB_TAG] for r in runs])
    n = 0
    for r in runs:
        state = dead.get(r.data.tags[JOB_TAG])
        if state is None:
            continue
        client.log_batch(r.info.run_id, tags=[
            RunTag("slnn.outcome", str(Outcome.KILLED)),
            RunTag("slnn.reason", f"SLURM job {r.data.tags[JOB_TAG]} ended ({state}) without "
                                  "closing the run"),
        ])
        client.set_terminated(r.info.run_id, "KILLED")
        n += 1
    return n


def unique_job_name(base: str) -> str:
    """A job name no other sweep uses, so ``scancel --name`` cancels this sweep's jobs only."""
    return f"{base}-{uuid.uuid4().hex[:8]}"


def cancel_jobs(name: str) -> bool:
    """``scancel`` every job of this user named ``name``; True if scancel ran."""
    user = os.environ.get("USER") or ""
    cmd = ["scancel", f"--name={name}"] + ([f"--user={user}"] if user else [])
    return _run(cmd) is not None


def wait_gone(name: str, timeout: float = 30) -> bool:
    """Wait until ``squeue`` lists no job named ``name`` (cancelled jobs take KillWait seconds to
    end); True if none is left within ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        out = _run(["squeue", "-h", f"--name={name}", "-o", "%i"])
        if out is None or not out.strip():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
