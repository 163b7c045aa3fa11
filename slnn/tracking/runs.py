"""Store-wide queries that sweeps, runs and reports share: which runs are finished, and which
runs were left RUNNING by a process that no longer exists (``slnn.tracking.liveness`` judges)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from slnn.core.outcomes import Outcome
from slnn.tracking.liveness import is_alive


JOB_TAG = "slnn.slurm_job_id"  # the SLURM job a run ran in (``slnn.sweep.slurm`` reaps by it)
PAGE = 1000  # runs per search_runs page: a sweep of any size is read in pages of this many


def iter_runs(client, experiment_ids: list[str], filter_string: str = "", page: int | None = None):
    """Every run ``search_runs`` finds, page by page: only one page of full ``Run``s is in memory
    at a time (a 10,000-cell sweep read in one call held a gigabyte)."""
    token = None
    while True:
        runs = client.search_runs(experiment_ids, filter_string=filter_string,
                                  max_results=page or PAGE, page_token=token)
        yield from runs
        token = runs.token
        if not token:
            return


def mark_killed(client, run, why: str) -> None:
    """Close a run whose process is gone as KILLED, saying why."""
    from mlflow.entities import RunTag

    client.log_batch(run.info.run_id, tags=[RunTag("slnn.outcome", str(Outcome.KILLED)),
                                            RunTag("slnn.reason", why[:5000])])
    client.set_terminated(run.info.run_id, "KILLED")


def why_dead(run) -> str:
    tags = run.data.tags
    why = (f"process {tags.get('slnn.pid', '?')} on {tags.get('slnn.host', '?')} ended without "
           "closing the run")
    try:
        return why + f" (last heartbeat {time.time() - float(tags['slnn.heartbeat']):.0f} s ago)"
    except (KeyError, ValueError):
        return why


def reap_dead_runs(client, experiment_id: str, parent_run_id: str | None = None) -> int:
    """Mark runs left RUNNING by processes that no longer exist as KILLED (``liveness``: a run
    whose owner cannot be judged, e.g. an old run of another machine, is left alone)."""
    filt = "attributes.status = 'RUNNING'"
    if parent_run_id:
        filt += f" and tags.mlflow.parentRunId = '{parent_run_id}'"
    n = 0
    for run in client.search_runs([experiment_id], filter_string=filt, max_results=5000):
        if is_alive(run.data.tags) is not False:
            continue
        mark_killed(client, run, why_dead(run))
        n += 1
    return n


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    config_hash: str
    code_hash: str | None  # None: made before slnn recorded it
    data_digest: str | None
    parent: str | None
    start_time: int
    rule_digest: str | None = None  # a user's rule (update=custom): its file's sha256
    search: str | None = None  # a search's tuning run: its Optuna study (``slnn.search``)


def finished_runs(client, experiment_id: str) -> dict[str, list[FinishedRun]]:
    """Every FINISHED slnn run of the experiment by config hash, newest first (paged search)."""
    out: dict[str, list[FinishedRun]] = {}
    for r in iter_runs(client, [experiment_id], "attributes.status = 'FINISHED'"):
        t = r.data.tags
        if "slnn.config_hash" in t and "slnn.link_to" not in t:
            out.setdefault(t["slnn.config_hash"], []).append(FinishedRun(
                r.info.run_id, t["slnn.config_hash"], t.get("slnn.code_hash"),
                t.get("slnn.data_digest"), t.get("mlflow.parentRunId"), r.info.start_time,
                t.get("slnn.rule_digest"), t.get("slnn.search")))
    for runs in out.values():
        runs.sort(key=lambda r: r.start_time, reverse=True)
    return out


def link_to_parent(client, experiment_id: str, run_id: str, parent_run_id: str) -> str:
    """Make a finished run, reused by a sweep, count as that sweep's child.

    A run without a parent (a single run) is adopted: it gets ``mlflow.parentRunId``. A run that
    belongs to another sweep keeps its parent, and this sweep gets a link run: a FINISHED child
    with the run's params, final metrics and ``slnn.*`` tags and ``slnn.link_to`` = its id, so the
    UI lists it with its numbers and the report reads the original's history. Returns the id of
    the run that now sits under ``parent_run_id``."""
    from mlflow.entities import Metric, Param

    run = client.get_run(run_id)
    tags = run.data.tags
    if tags.get("mlflow.parentRunId") == parent_run_id:
        return run_id
    if "mlflow.parentRunId" not in tags:
        client.set_tag(run_id, "mlflow.parentRunId", parent_run_id)
        return run_id
    name = tags.get("mlflow.runName", run_id)
    copied = {k: v for k, v in tags.items() if k.startswith("slnn.") or k.startswith("mlflow.source")
              or k == "mlflow.user"}
    link = client.create_run(experiment_id, run_name=name, tags={
        **copied, "mlflow.runName": name, "mlflow.parentRunId": parent_run_id,
        "slnn.link_to": run_id,
        "mlflow.note.content": f"Reused: this cell's run is {run_id} (child of sweep "
                               f"{tags['mlflow.parentRunId']}); its artifacts are there."})
    now = int(time.time() * 1000)
    params = [Param(k, v) for k, v in run.data.params.items()]
    metrics = [Metric(k, v, now, 0) for k, v in run.data.metrics.items()]
    for i in range(0, max(len(params), len(metrics), 1), 100):
        client.log_batch(link.info.run_id, params=params[i:i + 100], metrics=metrics[i:i + 100])
    client.set_terminated(link.info.run_id, "FINISHED")
    return link.info.run_id


def job_id_from_env(env=None) -> str | None:
    """The SLURM job this process runs in (``<array job>_<task>`` for an array task), or None."""
    env = os.environ if env is None else env
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return env.get("SLURM_JOB_ID") or None


def is_launcher_failure(exc: BaseException) -> bool:
    """An error from the launcher about its jobs (a job cancelled or killed by the scheduler),
    not a bug: the sweep ends with one line instead of a traceback."""
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"UncompletedJobError", "FailedJobError", "FailedSubmissionError"})
