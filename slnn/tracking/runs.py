"""Store-wide queries that sweeps (and later reports) share: which runs are finished, and which
runs were left RUNNING by a process that no longer exists."""

from __future__ import annotations

import os
import socket

from slnn.core.outcomes import Outcome


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_runs(client, experiment_id: str, parent_run_id: str | None = None) -> int:
    """Mark runs left RUNNING by processes of this host that no longer exist as KILLED."""
    from mlflow.entities import RunTag

    host = socket.gethostname()
    filt = "attributes.status = 'RUNNING'"
    if parent_run_id:
        filt += f" and tags.mlflow.parentRunId = '{parent_run_id}'"
    n = 0
    for run in client.search_runs([experiment_id], filter_string=filt, max_results=5000):
        tags = run.data.tags
        pid = tags.get("slnn.pid")
        if tags.get("slnn.host") != host or not pid or not pid.isdigit():
            continue  # another machine's run: slnn cannot tell whether it is alive
        if int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        client.log_batch(run.info.run_id, tags=[
            RunTag("slnn.outcome", str(Outcome.KILLED)),
            RunTag("slnn.reason", f"process {pid} on {host} ended without closing the run"),
        ])
        client.set_terminated(run.info.run_id, "KILLED")
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
