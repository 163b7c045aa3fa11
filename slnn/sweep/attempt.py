"""One attempt at a sweep cell, as a job makes it (``run_claimed``): claimed
(``slnn.sweep.claims``), ridden through a store outage of up to ``SLNN_OUTAGE_WAIT`` seconds
(after which every job stops: ``store_gone``), and recorded as a FAILED run even when it fails
before its run opened. The outage rules: docs/faults.md ("Servers")."""

from __future__ import annotations

import os
import time
from pathlib import Path

from slnn.sweep.state import SweepState

OUTAGE_WAIT = float(os.environ.get("SLNN_OUTAGE_WAIT", "300"))


def _client(state: SweepState):
    from slnn.tracking.store import client_for

    return client_for(state.uri)


GONE_FILE = "store_gone.txt"  # in a sweep's folder: why its store stopped answering for good


def store_gone(state: SweepState) -> str | None:
    """Why this sweep's store stayed down past the outage wait (a job noted it), or None."""
    try:
        return (Path(state.dir) / GONE_FILE).read_text().strip() or "the store stayed down"
    except OSError:
        return None


def wait_for_store(state: SweepState, why: str, timeout: float = OUTAGE_WAIT) -> bool:
    """Poll until the sweep's store answers healthily again (True), or ``timeout`` passes or
    another job's wait has run out (False; noted in the sweep's folder for every job and the
    launcher: ``store_gone``)."""
    from slnn.app.runlog import to_terminal
    from slnn.tracking.faults import mask
    from slnn.tracking.store import check_reachable

    uri = state.uri
    if store_gone(state):
        return False
    to_terminal(mask(f"slnn: the tracking store {uri} {why}; waiting up to {timeout:.0f} s for it"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not store_gone(state):
        try:
            if uri.startswith(("http://", "https://")):
                check_reachable(uri, timeout=5)
            else:
                from mlflow.tracking import MlflowClient

                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            return True
        except Exception:  # noqa: BLE001 - still down
            time.sleep(min(2.0, timeout / 10))
    if not store_gone(state):
        try:
            (Path(state.dir) / GONE_FILE).write_text(mask(
                f"the tracking store {uri} {why} for more than {timeout:.0f} s "
                "(SLNN_OUTAGE_WAIT)") + "\n")
        except OSError:
            pass
    return False


def _close_left_open(state: SweepState, run_ids: list[str], why: str, failed: bool = False) -> None:
    """The runs this cell opened that are still RUNNING (an outage, or a failure before training
    began): closed as KILLED, or as FAILED with ``why``."""
    from mlflow.entities import RunTag

    from slnn.core.outcomes import Outcome
    from slnn.tracking.liveness import stop
    from slnn.tracking.runs import mark_killed

    client = _client(state)
    for run_id in run_ids:
        stop(run_id)
        try:
            run = client.get_run(run_id)
            if run.info.status != "RUNNING":
                continue
            if not failed:
                mark_killed(client, run, why)
                continue
            client.log_batch(run_id, tags=[RunTag("slnn.outcome", str(Outcome.FAILED)),
                                           RunTag("slnn.reason", why[:5000])])
            client.set_terminated(run_id, "FAILED")
        except Exception:  # noqa: BLE001 - the next command's reaper closes it
            pass


def record_unopened(c, chash: str, state: SweepState, exc: BaseException) -> str | None:
    """A FAILED run, with the reason, for a cell that failed before its run was opened."""
    from dataclasses import asdict

    from slnn.app.run import run_tags
    from slnn.app.schema import flatten, identity, run_name
    from slnn.tracking.recorder import RunRecorder

    try:
        rec = RunRecorder(_client(state), state.experiment_id, run_name(c),
                          flatten(identity(asdict(c))), run_tags(c, chash), state.parent_run_id)
        rec.fail(exc)
        return rec.run_id
    except Exception:  # noqa: BLE001 - the store itself is the problem: the ledger has the cell
        return None


def run_claimed(c, chash: str, state: SweepState, log=None, **extra):
    """Claim the cell, train and record it; see the module's docstring."""
    from slnn.app.run import run_one
    from slnn.sweep.claims import CellTaken, claim_cell
    from slnn.tracking.faults import classify, is_outage

    opened: list[str] = []
    done_after = int(state.start * 1000) if state.force else 0

    def on_open(run_id: str) -> None:
        opened.append(run_id)
        try:
            claim_cell(_client(state), state.experiment_id, chash, run_id,
                       done_after_ms=done_after,
                       reuse_other_code=bool(state.reuse_other_code))
        except CellTaken:
            opened.remove(run_id)  # a claim given up has deleted its run
            raise

    for attempt in (1, 2):
        try:
            return run_one(c, chash=chash, parent_run_id=state.parent_run_id, quiet=True,
                           experiment_id=state.experiment_id, on_open=on_open, log=log,
                           **extra)  # a search's cell: its tags, its pruner (worker._pruning)
        except CellTaken:
            raise
        except Exception as e:  # noqa: BLE001 - classified, then retried, recorded or raised
            uri = state.uri
            if attempt == 1 and is_outage(uri, e):
                cause = classify(uri, e)[0]
                if wait_for_store(state, cause):
                    _close_left_open(state, opened, f"the tracking store {cause} while it ran;"
                                     " the cell was run again")
                    opened.clear()
                    continue
            if store_gone(state):  # nothing more can be written; the next command reaps its run
                raise
            if not opened:
                record_unopened(c, chash, state, e)
            else:  # it failed before training (its claim, say): not left RUNNING
                first = (str(e).strip().splitlines() or [""])[0]
                _close_left_open(state, opened, f"{type(e).__name__}: {first}", failed=True)
            raise
