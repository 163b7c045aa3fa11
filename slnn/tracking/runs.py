"""Store-wide queries that sweeps, runs and reports share: which runs are finished, and which
runs were left RUNNING by a process that no longer exists (``slnn.tracking.liveness`` judges)."""

from __future__ import annotations

import time

from slnn.core.outcomes import Outcome
from slnn.tracking.liveness import is_alive


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


def finished_hashes(client, experiment_id: str) -> set[str]:
    """Config hashes of every FINISHED slnn run in the experiment (one paged search)."""
    done: set[str] = set()
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string="attributes.status = 'FINISHED'",
                                  max_results=50000, page_token=token)
        done.update(r.data.tags["slnn.config_hash"] for r in page
                    if "slnn.config_hash" in r.data.tags)
        token = page.token
        if not token:
            return done
